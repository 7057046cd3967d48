"""The search loop: an Optuna TPE study in an RDB storage (SQLite by default), resumable and shared.

Resuming. Each worker counts the COMPLETE trials in the storage and runs trials until there are
``n_trials`` of them, so the same command run again continues a killed search. A trial that was
running when its process was killed stays RUNNING in the database. The storage's heartbeat covers
that case: a thread stamps each running trial every HEARTBEAT_S seconds, and before each new trial
(and while a worker waits) Optuna marks FAIL every RUNNING trial whose last stamp is older than
GRACE_S. FAIL trials never count toward ``n_trials`` and TPE ignores them.

Workers. Any number of processes may run the same command with the same ``--storage`` and
``--study-name``. A worker starts a trial only while COMPLETE + RUNNING < n_trials; when the last
slots are held by other workers it waits for them (a killed worker's trial frees its slot once its
heartbeat is stale), so a failed trial of another worker is still made up for. Two workers that
take the last slot at the same instant are settled by trial number: the later one records its trial
as a surplus FAIL and stops.
"""
from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np
import optuna
from optuna.trial import TrialState

from ..config import ConfigError
from ..data import Columns
from .objectives import get_objective
from .output import final_table, write_param_file, write_summary
from .space import load_space, tidy

HEARTBEAT_S = 10  # how often a running trial is stamped as alive
GRACE_S = 60      # a RUNNING trial this long without a stamp belongs to a dead worker
POLL_S = 5        # how often a worker waiting for other workers' last trials looks again
MAX_FAILED = 10   # give up after max(n_trials, this) failed trials: the space itself is broken


class _Surplus(Exception):
    """This trial would go beyond n_trials (another worker took the last slot first)."""


def open_storage(url: str):
    if "://" not in url:
        raise ConfigError(f"--storage {url!r} is not a database URL; use e.g. sqlite:///search.db "
                          "(a relative path) or sqlite:////abs/path/search.db.")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # workers wait for each other's writes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as e:  # SQLAlchemy's errors for a bad URL, driver or path are many and unrelated
        raise ConfigError(f"--storage {url!r}: cannot open it ({type(e).__name__}: {e}). "
                          "For SQLite the folder must exist: sqlite:///relative/path.db or sqlite:////abs/path.db.") from None


def _sampler(seed: int, number: int) -> optuna.samplers.TPESampler:
    # one stream per trial number: a lone worker is reproducible, and a resumed or parallel worker
    # does not repeat the random start-up draws of the trials before it
    trial_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True)  # the liar spreads parallel workers apart


def _fmt(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _check_setup(study: optuna.Study, setup: dict, url: str) -> None:
    """A study resumed with other data, space or fixed parameters would mix incomparable trials."""
    setup = json.loads(json.dumps(setup))
    old = study.user_attrs.get("setup")
    if old is None:
        study.set_user_attr("setup", setup)
        return
    for key in setup:
        if old.get(key) != setup[key]:
            raise ConfigError(
                f"study {study.study_name!r} in {url} was started with {key} = {json.dumps(old.get(key))}, now "
                f"{json.dumps(setup[key])}; resume it with the same settings, or start another with --study-name or --storage.")


def tune(model: str, train_path, valid_path, space_path, fixed: dict, *, cutoff: int = 20, final_cutoffs=(1, 5, 10, 20),
         primary: str = "recall", n_trials: int = 20, mode: str = "standard", device: str = "cpu",
         columns: Columns = Columns(), storage: str | None = None, study_name: str | None = None, out: str = "tune",
         seed: int = 42, options: dict | None = None, verbose: bool = True, echo=print) -> dict | None:
    """Run (or resume) the search and the final evaluation; returns the summary (None if interrupted)."""
    started = time.perf_counter()
    objective = get_objective(model)
    options = options or {}
    if n_trials < 1:
        raise ConfigError(f"-nt {n_trials}: the number of trials must be at least 1.")
    space = load_space(space_path, objective.parameters, model)
    fixed = objective.check(fixed, "fixed parameters")
    both = [p.name for p in space if p.name in fixed]
    if both:
        raise ConfigError(f"{', '.join(both)}: both fixed (-fp) and tuned (in {space_path}); remove it from one of them.")
    metric = f"{primary}@{cutoff}"
    study_name = study_name or os.path.splitext(os.path.basename(space_path))[0]
    os.makedirs(out, exist_ok=True)
    url = storage or f"sqlite:///{os.path.abspath(os.path.join(out, 'study.db'))}"
    echo("PARAMETER SPACE")
    for p in space:
        echo(f"  {p.describe()}")
    echo(f"FIXED  {_fmt(fixed) or '(none)'}")
    train, valid = objective.load(train_path, valid_path, columns, echo)

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial gets our own line, failures included
    try:
        study = optuna.create_study(storage=open_storage(url), study_name=study_name, direction="maximize",
                                    load_if_exists=True, sampler=_sampler(seed, 0))
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(f"study {study_name!r} in {url} minimizes; nextitem tune maximizes {metric}. Use another --study-name.")
        _check_setup(study, {"model": model, "metric": metric, "tie_mode": mode, "space": [p.as_dict() for p in space],
                             "fixed": fixed, "train": [os.path.basename(train_path), os.path.getsize(train_path)],
                             "valid": [os.path.basename(valid_path), os.path.getsize(valid_path)]}, url)

        def run_trial(trial: optuna.Trial) -> float:
            alive = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            if sum(t.number < trial.number for t in alive) >= n_trials:
                trial.set_user_attr("surplus", True)
                echo(f"trial {trial.number:>3}  not run: another worker took the last of the {n_trials} trials")
                raise _Surplus()
            tuned = {p.name: p.suggest(trial) for p in space}
            t0 = time.perf_counter()
            try:
                metrics = objective.run({**fixed, **tuned}, train, valid, cutoffs=[cutoff], mode=mode, primary=primary,
                                        device=device, seed=seed, log=(lambda m: echo(f"    {m}")) if verbose else None, **options)
            except objective.failures as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                echo(f"trial {trial.number:>3}  FAILED ({type(e).__name__}: {e})  {time.perf_counter() - t0:.1f}s  {_fmt(tuned)}")
                raise
            seconds = time.perf_counter() - t0
            trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("seconds", seconds)
            echo(f"trial {trial.number:>3}  {metric}={metrics[metric]:.6f}  {seconds:.1f}s  {_fmt(tuned)}")
            return metrics[metric]

        trials = study.get_trials(deepcopy=False)
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        echo(f"{'Resuming' if trials else 'Starting'} study {study_name!r} in {url}: {done} of {n_trials} trials complete"
             + (f", {len(trials) - done} failed, stopped or running." if trials else "."))
        waiting = False
        while True:
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
            if done >= n_trials:
                break
            if failed >= max(n_trials, MAX_FAILED):
                echo(f"Stopping: {failed} trials failed; the space or the fixed parameters do not train, see the errors above.")
                break
            if done + running >= n_trials:  # the last slots are other workers' (or a killed worker's, until it goes stale)
                if not waiting:
                    echo(f"{done} trials complete, {running} running elsewhere: waiting for them to finish.")
                    waiting = True
                time.sleep(POLL_S)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                continue
            waiting = False
            study.sampler = _sampler(seed, len(trials))  # len(trials) is the number the next trial gets
            study.optimize(run_trial, n_trials=1, catch=objective.failures + (_Surplus,))
    except KeyboardInterrupt:
        echo("Interrupted; the study is saved: run the same command again to resume it.")
        return None
    finally:
        optuna.logging.set_verbosity(level)

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {study_name!r}: no trial completed, so there are no best parameters; see the errors above.")
    best = study.best_trial
    best_params = {**fixed, **{k: tidy(v) for k, v in best.params.items()}}
    if "seed" not in best_params:
        best_params["seed"] = seed  # the model seed of every trial: rerunning the file gives the trial's model
    best_params = objective.check(best_params, "best parameters")
    echo(f"Best trial {best.number}: {metric}={best.value:.6f}  {_fmt({k: tidy(v) for k, v in best.params.items()})}")

    echo(f"Running final eval @{' '.join(map(str, final_cutoffs))} ({mode} ties):")
    t0 = time.perf_counter()
    final = objective.run(best_params, train, valid, cutoffs=list(final_cutoffs), mode=mode, primary=primary, device=device,
                          seed=seed, log=None, **options)
    for line in final_table(final, final_cutoffs):
        echo(line)
    counts = {"complete": len(complete), "failed": sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials),
              "killed": sum(t.state == TrialState.FAIL and not t.user_attrs for t in trials),
              "surplus": sum(bool(t.user_attrs.get("surplus")) for t in trials),
              "running": sum(t.state == TrialState.RUNNING for t in trials)}
    summary = {
        "model": model, "study": study_name, "storage": url, "metric": metric, "tie_mode": mode,
        "best": {"trial": best.number, "value": best.value, "params": best_params,
                 "metrics": best.user_attrs.get("metrics"), "seconds": best.user_attrs.get("seconds")},
        "trials": counts,
        "trial_seconds": sum(t.user_attrs.get("seconds", 0.0) for t in complete),
        "final": {"cutoffs": list(final_cutoffs), "metrics": final, "seconds": time.perf_counter() - t0},
        "seconds": time.perf_counter() - started,
    }
    param_path = os.path.join(out, "best_params.py")
    header = [f"Best parameters found by `nextitem tune {model}` (study {study_name!r}, trial {best.number} of "
              f"{len(complete)} complete): {metric} = {best.value:.6f} on {os.path.basename(valid_path)}."]
    write_param_file(param_path, best_params, objective.variable, header)
    write_summary(os.path.join(out, "summary.json"), summary)
    echo(f"Trials: {counts['complete']} complete, {counts['failed']} failed, {counts['killed']} killed, "
         f"{counts['surplus']} surplus. Wrote {param_path} and {os.path.join(out, 'summary.json')}")
    return summary
