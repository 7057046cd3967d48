"""Train and evaluate a model on a user-history dataset folder, into a reproducible experiment folder.

    experiments/{model}/{dataset}/seed{seed}/
        config.json      the model and training parameters, the data folder, the nextitem version
        checkpoint.pt    written every epoch; running the same command again resumes from it
        model.safetensors
        history.json     per-epoch loss, validation metrics and timings
        metrics.json     validation and test results (full ranking; sampled ones labelled as such)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..config import ConfigError, build, suggest, to_dict
from ..data.histories import LeaveOneOut, read_histories
from ..data.io import DataError, atomic_write_text
from ..data.paths import find_dataset
from ..evaluation.ranking import RankingResult, evaluate_ranking, load_negatives, sample_negatives, save_negatives
from ..models import SEQUENTIAL_MODELS, GRU4Rec, GRU4RecConfig
from ..training.sequential import TrainConfig, train

MODEL_NAMES = (*SEQUENTIAL_MODELS, "gru4rec")


def resolve_data(name: str | os.PathLike) -> Path:
    """A dataset folder path, or the name of one under sequences/ of the data root (``ml-1m``)."""
    if os.path.isdir(name):
        return Path(name)
    return find_dataset(f"sequences/{name}")


def model_class(name: str):
    if name == "gru4rec":
        return GRU4Rec
    if name not in SEQUENTIAL_MODELS:
        raise ConfigError(f"unknown model {name!r}.{suggest(name, MODEL_NAMES)} Models: {', '.join(MODEL_NAMES)}.")
    return SEQUENTIAL_MODELS[name]


def split_params(name: str, params: dict) -> tuple[dict, dict]:
    """Split one flat parameter dict (or one with [model] / [train] tables) into model and training parts."""
    flat = {}
    for key, value in params.items():
        if key in ("model", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    model_keys = {f.name for f in fields(GRU4RecConfig if name == "gru4rec" else model_class(name).Config)}
    train_keys = set() if name == "gru4rec" else {f.name for f in fields(TrainConfig)}
    model_part, train_part = {}, {}
    for key, value in flat.items():
        if key in model_keys:
            model_part[key] = value
        elif key in train_keys:
            train_part[key] = value
        else:
            valid = sorted(model_keys | train_keys)
            raise ConfigError(f"unknown parameter {key!r} for {name}.{suggest(key, valid)} Valid: {', '.join(valid)}.")
    return model_part, train_part


def load_model(path: str | os.PathLike, device: str = "cpu"):
    """Any saved nextitem model, dispatched on the model name stored in the file."""
    from safetensors import SafetensorError, safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a nextitem model file (safetensors written by nextitem): {e}") from None
    name = meta.get("model") or ("gru4rec" if str(meta.get("format", "")).startswith("nextitem.gru4rec") else None)
    if name not in MODEL_NAMES:
        raise DataError(f"{path}: holds no model nextitem knows (metadata {meta.get('format')!r}).")
    return model_class(name).load(path, device=device)


@dataclass
class Experiment:
    out: Path
    model: object
    results: dict[str, RankingResult]


def run_experiment(name: str, data: str | os.PathLike, params: dict | None = None, out: str | os.PathLike | None = None,
                   device: str = "cpu", sampled: int = 0, negatives: str = "uniform", negatives_seed: int = 98765,
                   log=print, progress: bool = True) -> Experiment:
    """Train ``name`` on the leave-one-out split of ``data``, evaluate on validation and test, save everything."""
    model_params, train_params = split_params(name, params or {})
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only the first process reports
        log, progress = (lambda *a, **k: None), False
    folder = resolve_data(data)
    if name == "gru4rec":
        model_cfg, train_cfg = build(GRU4RecConfig, model_params, source="gru4rec parameters"), None
        seed = model_cfg.seed
    else:
        model_cfg = build(model_class(name).Config, model_params, source=f"{name} parameters")
        train_cfg = build(TrainConfig, train_params, source="training parameters")
        seed = train_cfg.seed
    out = Path(out) if out else Path("experiments") / name / folder.name / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    log(f"Reading {folder}")
    loo = LeaveOneOut.from_histories(read_histories(folder))
    d = loo.data
    log(f"{d.n_users:,} users, {d.n_items:,} items, {d.n_events:,} interactions; "
        f"{len(loo.test):,} users in validation and test (leave-one-out)")
    t0 = time.perf_counter()
    if name == "gru4rec":
        model = GRU4Rec(model_cfg, device=device).fit(loo.train_sessions(), log=log, progress=progress)
        history = model.history
    else:
        model = model_class(name)(model_cfg, device=device)
        history = train(model, loo, train_cfg, checkpoint=out / "checkpoint.pt", log=log, progress=progress)
    log(f"Training took {time.perf_counter() - t0:.1f}s")
    # written with the model, not before training: a run refused (say, by a checkpoint of other
    # settings) must not leave a config.json that no longer describes the model beside it
    config = {"model": name, "data": str(folder.resolve()), "model_params": to_dict(model_cfg),
              "train_params": to_dict(train_cfg) if train_cfg else None}
    atomic_write_text(out / "config.json", json.dumps(config, indent=2))
    model.save(out / "model.safetensors")
    atomic_write_text(out / "history.json", json.dumps(history, indent=2, default=str))

    results = evaluate_all(model, loo, out, sampled=sampled, negatives=negatives, negatives_seed=negatives_seed)
    for result in results.values():
        log(result.table())
    return Experiment(out, model, results)


def evaluate_all(model, loo: LeaveOneOut, out: Path, splits=("valid", "test"), sampled: int = 0, negatives: str = "uniform",
                 negatives_seed: int = 98765, ties: str = "conservative", filename: str = "metrics.json") -> dict[str, RankingResult]:
    """Full-ranking results of ``splits`` (and a sampled test result when asked), saved to out/filename."""
    results = {}
    for split in splits:
        t = time.perf_counter()
        results[split] = evaluate_ranking(model.score, getattr(loo, split), loo.n_items, mode=ties)
        results[split].extra["eval_s"] = round(time.perf_counter() - t, 2)
    if sampled:
        path = out / f"negatives_test_{negatives}{sampled}_seed{negatives_seed}.npz"
        if path.exists():  # drawn once and reused, so every model is measured on the same negatives
            neg, _ = load_negatives(path, loo.test)
        else:
            neg = sample_negatives(loo.data, loo.test, n=sampled, kind=negatives, seed=negatives_seed)
            save_negatives(path, loo.test.users, neg, {"kind": negatives, "n": sampled, "seed": negatives_seed})
        results["test_sampled"] = evaluate_ranking(model.score, loo.test, loo.n_items, mode=ties, negatives=neg,
                                                   negatives_label=negatives)
    atomic_write_text(out / filename, json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2))
    return results
