"""nextitem tune: space files, trials, resuming, failures, workers, outputs and errors.

Most study mechanics run on a toy objective (no training: a formula of the parameters), so that a
test of resuming or of parallel workers takes seconds; GRU4Rec trials run on tiny session files.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from nextitem.cli import main
from nextitem.config import ConfigError, load_param_file
from nextitem.models.gru4rec import GRU4RecConfig
from nextitem.training.gru4rec import TrainingDiverged
from nextitem.tuning import OBJECTIVES, Objective, load_space, resolve_space, shipped_spaces, study, tune
from nextitem.tuning.objectives import get_objective

from .toy_sessions import sessions

GRU4REC_PARAMS = get_objective("gru4rec").parameters
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    train, valid = d / "train_tr.tsv", d / "train_valid.tsv"
    sessions(80, 0).to_csv(train, sep="\t", index=False)
    sessions(20, 1, first=1000).to_csv(valid, sep="\t", index=False)
    return train, valid


def write_space(path, *lines):
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------ spaces
def test_shipped_spaces_have_the_reference_ranges():
    assert {"gru4rec_xe", "gru4rec_bprmax"} <= set(shipped_spaces())
    xe = {p.name: p for p in load_space(resolve_space("gru4rec_xe"), GRU4REC_PARAMS)}
    bpr = {p.name: p for p in load_space(resolve_space("gru4rec_bprmax.json"), GRU4REC_PARAMS)}
    assert list(xe) == ["layers", "batch_size", "learning_rate", "dropout_p_embed", "dropout_p_hidden", "momentum", "sample_alpha"]
    assert (xe["layers"].values, xe["layers"].step) == ((64, 512), 32)
    assert (xe["batch_size"].values, xe["batch_size"].step) == ((32, 256), 16)
    assert (xe["learning_rate"].values, xe["learning_rate"].step) == ((0.01, 0.25), 0.005)
    assert (xe["dropout_p_hidden"].values, xe["momentum"].values, xe["sample_alpha"].step) == ((0.0, 0.7), (0.0, 0.9), 0.1)
    assert set(bpr) - set(xe) == {"bpreg", "elu_param"}
    assert bpr["elu_param"].values == (0.5, 1.0, 0.0) and bpr["bpreg"].values == (0.0, 2.0)


def test_space_accepts_log_range_comments_and_default_int_step(tmp_path):
    path = write_space(tmp_path / "s.json", "# a comment", "",
                       {"name": "learning_rate", "dtype": "float", "range": [0.001, 0.5], "log": True},
                       {"name": "n_epochs", "dtype": "int", "values": [1, 3]})
    lr, ep = load_space(path, GRU4REC_PARAMS)
    assert lr.log and lr.values == (0.001, 0.5) and lr.step is None
    assert ep.values == (1, 3) and ep.describe().endswith("step 1")


@pytest.mark.parametrize("line, expect", [
    ({"name": "layers", "dtype": "integer", "values": [1, 2]}, "dtype 'integer' is not one of int, float, categorical. Did you mean 'int'?"),
    ({"name": "layers", "dtype": "int", "values": [512, 64]}, "lo > hi in [512, 64]"),
    ({"name": "learnin_rate", "dtype": "float", "values": [0.1, 0.2]}, "'learnin_rate' is not a parameter of gru4rec. Did you mean 'learning_rate'?"),
    ({"name": "layers", "dtype": "int", "values": [64, 512], "stpe": 32}, "unknown key 'stpe'. Did you mean 'step'?"),
    ({"name": "layers", "dtype": "int", "values": [64.5, 512]}, "needs integer bounds"),
    ({"name": "layers", "dtype": "int", "values": [64]}, "needs values [lo, hi]"),
    ({"name": "learning_rate", "dtype": "float", "values": [0.1, 0.2], "step": 0.01, "log": True}, "step and log cannot be combined"),
    ({"name": "learning_rate", "dtype": "float", "values": [0.0, 0.2], "log": True}, "a log scale needs lo > 0"),
    ({"name": "learning_rate", "dtype": "float", "values": [0.1, 0.2], "step": -1}, "step=-1 must be a positive number"),
    ({"name": "elu_param", "dtype": "categorical", "values": []}, "non-empty list of choices"),
    ({"name": "elu_param", "dtype": "categorical", "values": [1, 1]}, "repeat a value"),
    ({"name": "layers", "values": [1, 2]}, "the 'dtype' key is missing"),
    ({"name": "layers", "dtype": "int", "values": [1, 2], "range": [1, 2]}, "give the values of 'layers' once"),
    ('{"name": "layers", "dtype": "int", "values": [64, 512}', "not valid JSON"),
    ('["layers", "int"]', "expected a JSON object"),
])
def test_space_errors_name_file_line_and_problem(tmp_path, line, expect):
    path = write_space(tmp_path / "space.json", {"name": "batch_size", "dtype": "int", "values": [32, 256], "step": 16}, line)
    with pytest.raises(ConfigError) as e:
        load_space(path, GRU4REC_PARAMS, "gru4rec")
    assert f"{path}, line 2: " in str(e.value) and expect in str(e.value)


def test_space_duplicate_and_empty(tmp_path):
    line = {"name": "layers", "dtype": "int", "values": [64, 512]}
    with pytest.raises(ConfigError, match="line 2: 'layers' is already defined on line 1"):
        load_space(write_space(tmp_path / "d.json", line, line), GRU4REC_PARAMS)
    with pytest.raises(ConfigError, match="no parameters in the file"):
        load_space(write_space(tmp_path / "e.json", "# nothing"), GRU4REC_PARAMS)
    with pytest.raises(ConfigError, match="no shipped one of that name.*gru4rec_xe"):
        resolve_space("gru4rec_nope")


# ------------------------------------------------------------------------------------ toy objective
def _toy_check(params, source):
    unknown = set(params) - {"x", "y", "seed"}
    if unknown:
        raise ConfigError(f"{source}: unknown {sorted(unknown)}")
    return dict(params)


def _toy_run(params, train, valid, *, cutoffs, mode, primary, device, seed, log=None, **options):
    if params["x"] > options.get("diverge_above", 99):
        raise TrainingDiverged("the loss became NaN")
    if options.get("sleep_file") and os.path.exists(options["sleep_file"]):
        time.sleep(60)  # the test kills this worker here
    time.sleep(options.get("delay", 0))
    value = 1.0 - (params["x"] - 0.3) ** 2 - 0.1 * params.get("y", 0)
    return {f"{m}@{k}": value / k for m in ("recall", "mrr") for k in cutoffs}


TOY = Objective("toy", ("x", "y", "seed"), _toy_check, lambda t, v, c, echo: (None, None), _toy_run, "toy_params",
                (ConfigError, TrainingDiverged))


@pytest.fixture
def toy(tmp_path, monkeypatch, files):
    monkeypatch.setitem(OBJECTIVES, "toy", TOY)
    space = write_space(tmp_path / "toy.json", {"name": "x", "dtype": "float", "values": [0.0, 1.0], "step": 0.05})
    return space


def toy_tune(toy, files, out, n_trials, lines=None, **kw):
    train, valid = files
    echo = (lambda m: lines.append(m)) if lines is not None else (lambda m: None)
    return tune("toy", train, valid, toy, kw.pop("fixed", {"y": 0}), n_trials=n_trials, out=str(out), echo=echo, **kw)


def states(out, name="toy"):
    s = optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")
    return [t.state.name for t in s.trials]


def test_resume_runs_only_the_missing_trials(toy, files, tmp_path):
    first, second = [], []
    toy_tune(toy, files, tmp_path / "o", 2, first)
    assert states(tmp_path / "o") == ["COMPLETE"] * 2
    summary = toy_tune(toy, files, tmp_path / "o", 4, second)
    assert states(tmp_path / "o") == ["COMPLETE"] * 4
    assert any("Resuming study 'toy'" in m and "2 of 4 trials complete" in m for m in second)
    ran = [m.split()[1] for m in second if m.startswith("trial ")]
    assert ran == ["2", "3"]  # the trials of the first run were not repeated
    assert summary["trials"] == {"complete": 4, "failed": 0, "killed": 0, "surplus": 0, "running": 0}
    # complete already: no new trial, the outputs are written again
    third = []
    toy_tune(toy, files, tmp_path / "o", 4, third)
    assert not [m for m in third if m.startswith("trial ")] and len(states(tmp_path / "o")) == 4


def test_seeded_search_is_repeatable(toy, files, tmp_path):
    # 11 trials: the 10 random start-up draws of TPE and one from its model
    a = toy_tune(toy, files, tmp_path / "a", 11, seed=3)
    b = toy_tune(toy, files, tmp_path / "b", 11, seed=3)
    toy_tune(toy, files, tmp_path / "c", 2, seed=4)
    params = lambda out: [t.params for t in optuna.load_study(study_name="toy", storage=f"sqlite:///{out}/study.db").trials]
    assert params(tmp_path / "a") == params(tmp_path / "b")
    assert params(tmp_path / "a")[:2] != params(tmp_path / "c")
    assert (a["best"]["value"], a["best"]["params"]) == (b["best"]["value"], b["best"]["params"])


def test_failing_trials_are_recorded_and_the_study_goes_on(toy, files, tmp_path):
    lines = []
    summary = toy_tune(toy, files, tmp_path / "o", 8, lines, options={"diverge_above": 0.6})
    st = states(tmp_path / "o")
    assert st.count("COMPLETE") == 8 and st.count("FAIL") == summary["trials"]["failed"] > 0
    failed = [m for m in lines if "FAILED (TrainingDiverged: the loss became NaN)" in m]
    assert len(failed) == st.count("FAIL")
    assert summary["best"]["params"]["x"] <= 0.6


def test_a_study_of_only_failures_stops(toy, files, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "MAX_FAILED", 4)
    with pytest.raises(ConfigError, match="no trial completed"):
        toy_tune(toy, files, tmp_path / "o", 3, options={"diverge_above": -1})
    assert states(tmp_path / "o") == ["FAIL"] * 4


def test_resuming_with_other_settings_is_an_error(toy, files, tmp_path):
    toy_tune(toy, files, tmp_path / "o", 1)
    with pytest.raises(ConfigError, match=r"started with fixed = \{\"y\": 0\}, now \{\"y\": 1\}.*--study-name"):
        toy_tune(toy, files, tmp_path / "o", 2, fixed={"y": 1})
    with pytest.raises(ConfigError, match="started with metric = \"recall@20\", now \"mrr@20\""):
        toy_tune(toy, files, tmp_path / "o", 2, primary="mrr")
    toy_tune(toy, files, tmp_path / "o", 2, final_cutoffs=[5])  # only what the trials depend on is compared


def _worker_script(tmp_path, files, toy_space, out, n_trials, options):
    """A separate process running the toy search, as a second terminal would run nextitem tune."""
    script = tmp_path / f"worker_{len(os.listdir(tmp_path))}.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        import tests.test_tuning as test_tuning  # as a package module, so its relative imports work
        from nextitem.tuning import OBJECTIVES, study, tune
        study.HEARTBEAT_S, study.GRACE_S, study.POLL_S = 1, 3, 0.2
        OBJECTIVES["toy"] = test_tuning.TOY
        tune("toy", {str(files[0])!r}, {str(files[1])!r}, {str(toy_space)!r}, {{"y": 0}}, n_trials={n_trials},
             out={str(out)!r}, options={options!r}, echo=lambda m: print(m, flush=True))
    """))
    return [sys.executable, str(script)]


def test_a_killed_search_resumes_and_its_running_trial_is_failed(toy, files, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study, "GRACE_S", 3)
    monkeypatch.setattr(study, "POLL_S", 0.2)
    out, marker = tmp_path / "o", tmp_path / "hang"
    proc = subprocess.Popen(_worker_script(tmp_path, files, toy, out, 4, {"sleep_file": str(marker)}),
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # let two trials finish, then hang the third and kill the worker in it
        if line.startswith("trial   1"):
            marker.touch()
            break
    deadline = time.time() + 60
    while states(out).count("RUNNING") == 0 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a heartbeat or two
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    marker.unlink()
    assert states(out) == ["COMPLETE", "COMPLETE", "RUNNING"]
    lines = []
    summary = toy_tune(toy, files, out, 4, lines)
    st = states(out)
    assert st[2] == "FAIL" and st.count("COMPLETE") == 4 and "RUNNING" not in st
    assert summary["trials"]["killed"] == 1 and summary["trials"]["complete"] == 4


def test_parallel_workers_share_one_study(toy, files, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    # create the study first, so the two workers do not both create the database at once
    toy_tune(toy, files, out, 1)
    procs = [subprocess.Popen(_worker_script(tmp_path, files, toy, out, 7, {"delay": 1.0}), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    ran = [set(line.split()[1] for line in o[0].splitlines() if line.startswith("trial ") and "@20=" in line) for o in outputs]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # both worked, never on the same trial
    st = states(out)
    assert st.count("COMPLETE") == 7 and "RUNNING" not in st


# ------------------------------------------------------------------------------------ GRU4Rec, CLI
FIXED = "loss=cross-entropy,n_epochs=1,n_sample=10,constrained_embedding=True,logq=1"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_gru4rec_search_writes_a_param_file_gru4rec_accepts(files, tmp_path, capsys):
    train, valid = files
    out = tmp_path / "o"
    code, text, err = run(capsys, "tune", "gru4rec", train, valid, "-opf", "gru4rec_xe", "-fp", FIXED, "-nt", "3",
                          "-m", "5", "-fm", "1", "5", "10", "20", "-pm", "mrr", "--out", out, "-ss", "2000", "-q")
    assert code == 0, err
    trial_lines = [line for line in text.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 3 and all("mrr@5=" in line and "layers=" in line for line in trial_lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["complete"] == 3 and summary["metric"] == "mrr@5"
    assert sorted(summary["final"]["metrics"]) == sorted(f"{m}@{k}" for m in ("recall", "mrr") for k in (1, 5, 10, 20))
    # the final run of the best parameters is the best trial again (seeded, same data)
    assert summary["final"]["metrics"]["mrr@5"] == pytest.approx(summary["best"]["value"], abs=1e-9)
    params = load_param_file(out / "best_params.py")
    assert params == summary["best"]["params"]
    assert params["loss"] == "cross-entropy" and params["n_epochs"] == 1 and params["logq"] == 1.0 and params["seed"] == 42
    assert isinstance(params["layers"], list) and 64 <= params["layers"][0] <= 512
    config = GRU4RecConfig.from_dict(params)
    assert config.learning_rate == summary["best"]["params"]["learning_rate"]
    assert [f"{k:>8}" for k in (1, 5, 10, 20)] == [line[:8] for line in text.splitlines()[-6:-1]][1:]
    # the written file trains through nextitem gru4rec -pf
    code, text, err = run(capsys, "gru4rec", train, "-pf", out / "best_params.py", "-t", valid, "-m", "5", "-ss", "2000", "-q")
    assert code == 0, err
    assert f"MRR@5: {summary['best']['value']:.6f}" in text


def test_gru4rec_invalid_trial_parameters_fail_the_trial_only(files, tmp_path, capsys):
    train, valid = files
    space = write_space(tmp_path / "s.json", {"name": "dropout_p_hidden", "dtype": "categorical", "values": [0.0, 1.5]})
    code, text, err = run(capsys, "tune", "gru4rec", train, valid, "-opf", space, "-fp", FIXED + ",layers=8", "-nt", "2",
                          "--out", tmp_path / "o", "-ss", "2000", "-q", "--seed", "1")
    assert code == 0, err
    assert "FAILED (ConfigError: GRU4Rec: dropout_p_hidden=1.5 must be in [0, 1).)" in text
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["trials"]["complete"] == 2 and summary["trials"]["failed"] >= 1
    assert summary["best"]["params"]["dropout_p_hidden"] == 0.0


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("extra, expect", [
    (["-opf", "gru4rec_nope"], "gru4rec_nope: no such parameter-space file"),
    (["-opf", "gru4rec_xe", "-fp", "lerning_rate=0.1"], "unknown parameter 'lerning_rate'. Did you mean 'learning_rate'?"),
    (["-opf", "gru4rec_xe", "-fp", "layers=100"], "layers: both fixed (-fp) and tuned"),
    (["-opf", "gru4rec_xe", "-fpf", "nope_params"], "nope_params: no such parameter file"),
    (["-opf", "gru4rec_xe", "-nt", "0"], "-nt 0: the number of trials must be at least 1"),
    (["-opf", "gru4rec_xe", "--storage", "study.db"], "--storage 'study.db' is not a database URL"),
])
def test_cli_errors_exit_2(files, tmp_path, capsys, extra, expect):
    train, valid = files
    code, _, err = run(capsys, "tune", "gru4rec", train, valid, "--out", tmp_path / "o", *extra)
    assert code == 2 and expect in one_line_error(err)


def test_cli_unknown_model_and_missing_file(files, tmp_path, capsys):
    train, valid = files
    code, _, err = run(capsys, "tune", "gru4reck", train, valid, "-opf", "gru4rec_xe", "--out", tmp_path / "o")
    assert code == 2 and "no objective for model 'gru4reck'. Did you mean 'gru4rec'?" in one_line_error(err)
    code, _, err = run(capsys, "tune", "gru4rec", train, tmp_path / "nope.tsv", "-opf", "gru4rec_xe", "--out", tmp_path / "o")
    assert code == 2 and "nope.tsv: no such file" in one_line_error(err)
