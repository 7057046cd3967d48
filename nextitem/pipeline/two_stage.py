"""Retrieve -> rerank, with the seed's folder layout.

    experiments/retrieval/{method}/{dataset}/seed{seed}/  retrieved.csv, retrieved_metrics.json, the model
    experiments/rerank/{method}/{dataset}/seed{seed}/     the reranker, rerank_metrics_{mode}.json

Stage 1 (any model of nextitem.models) writes each validation and test user's top-K candidates.
Stage 2 reranks them ("retrieval" mode: metrics over all users, non-retrieved targets are misses)
or ranks the target among 19 seeded negatives ("ground_truth" mode, labelled sampled-20).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.histories import LeaveOneOut, read_histories
from ..data.io import atomic_write_text
from ..evaluation.ranking import RankingResult
from ..rerank.candidates import Candidates, evaluate_reranked, ground_truth_pools, read_candidates, retrieve, write_candidates
from ..rerank.sequential import ModelReranker
from .experiment import load_model, resolve_data, run_experiment

SPLITS = ("valid", "test")
MODES = ("retrieval", "ground_truth")


def stage_dir(stage: str, method: str, data: str | os.PathLike, seed: int, root: str | os.PathLike = "experiments") -> Path:
    return Path(root) / stage / method / resolve_data(data).name / f"seed{seed}"


def _seed(params: dict) -> int:
    return int((params or {}).get("seed", 42))


def train_retrieval(method: str, data, params: dict | None = None, top_k: int = 20, root="experiments", log=print,
                    progress: bool = True, device: str = "cpu") -> dict[str, Candidates]:
    """Train ``method``, then write its top-``top_k`` candidates and full-ranking metrics."""
    out = stage_dir("retrieval", method, data, _seed(params), root)
    exp = run_experiment(method, data, params, out=out, log=log, progress=progress, device=device)
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    return write_retrieval(exp.model, loo, out, top_k, exp.results)


def write_retrieval(model, loo: LeaveOneOut, out: Path, top_k: int, results: dict[str, RankingResult]) -> dict[str, Candidates]:
    cands = {s: retrieve(model.score, getattr(loo, s), loo.n_items, top_k) for s in SPLITS}
    write_candidates(out / "retrieved.csv", list(cands.values()), loo.data)
    metrics = {}
    for s in SPLITS:
        found = (cands[s].items == getattr(loo, s).targets.reshape(-1, 1)).any(1)
        metrics[s] = {**results[s].to_dict(), f"recall@{top_k}": float(found.mean())}
    atomic_write_text(out / "retrieved_metrics.json", json.dumps(metrics, indent=2))
    return cands


def load_retrieval(method: str, data, seed: int = 42, root="experiments") -> dict[str, Candidates]:
    loo_data = read_histories(resolve_data(data))
    return read_candidates(stage_dir("retrieval", method, data, seed, root) / "retrieved.csv", loo_data)


def rerank_results(reranker, loo: LeaveOneOut, mode: str, candidates: dict[str, Candidates] | None = None,
                   rerank_top_k: int = 20, splits=SPLITS, seed: int = 98765) -> dict[str, RankingResult]:
    """Results of ``reranker`` (``score_candidates(split, cands)``) in ``mode`` on ``splits``."""
    if mode not in MODES:
        raise ValueError(f"unknown rerank mode {mode!r}; use retrieval or ground_truth.")
    results = {}
    for s in splits:
        split = getattr(loo, s)
        if mode == "retrieval":
            if candidates is None or s not in candidates:
                raise ValueError(f"retrieval mode needs stage-1 candidates for the {s} split; run the retrieval stage first.")
            pool = candidates[s].top(rerank_top_k).align(split)
        else:
            pool = ground_truth_pools(loo.data, split, n_negatives=19, seed=seed)
        results[s] = evaluate_reranked(reranker.score_candidates(split, pool), pool, split, sampled=mode == "ground_truth")
    return results


def train_reranker(method: str, data, mode: str = "retrieval", params: dict | None = None, retrieval_method: str = "lrurec",
                   rerank_top_k: int = 20, root="experiments", log=print, progress: bool = True, device: str = "cpu",
                   retrieval_seed: int | None = None) -> dict[str, RankingResult]:
    """Train a sequential reranker (bert4rec, sasrec, ...) standalone and evaluate it in ``mode``."""
    seed = _seed(params)
    out = stage_dir("rerank", method, data, seed, root)
    candidates = load_retrieval(retrieval_method, data, retrieval_seed or seed, root) if mode == "retrieval" else None
    exp = run_experiment(method, data, params, out=out, log=log, progress=progress, device=device)
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    results = rerank_results(ModelReranker(exp.model), loo, mode, candidates, rerank_top_k)
    save_rerank(out, mode, results, log)
    return results


def evaluate_saved_reranker(model_file, data, mode: str, retrieval_method: str, rerank_top_k: int = 20, split: str = "test",
                            seed: int = 42, root="experiments", device: str = "cpu") -> RankingResult:
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    candidates = load_retrieval(retrieval_method, data, seed, root) if mode == "retrieval" else None
    return rerank_results(ModelReranker(load_model(model_file, device)), loo, mode, candidates, rerank_top_k, splits=(split,))[split]


def retrieval_only(method: str, data, split: str = "test", seed: int = 42, root="experiments", top_k: int | None = None) -> RankingResult:
    """Stage-1 metrics from the candidate file alone (the retriever's order), all users counted."""
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    cands = load_retrieval(method, data, seed, root)[split]
    if top_k:
        cands = cands.top(top_k)
    return evaluate_reranked(cands.scores, cands, getattr(loo, split))


def save_rerank(out: Path, mode: str, results: dict[str, RankingResult], log=print) -> None:
    atomic_write_text(out / f"rerank_metrics_{mode}.json", json.dumps({s: r.to_dict() for s, r in results.items()}, indent=2))
    for r in results.values():
        log(r.table())
        if "subset_metrics" in r.extra and r.extra["subset_metrics"] and not r.sampled:
            sub = r.extra["subset_metrics"]
            log(f"  retrieved subset only ({r.extra['retrieved']:,} users, conditional, not comparable): "
                f"NDCG@10 {sub['ndcg@10']:.4f}, Recall@10 {sub['recall@10']:.4f}; "
                f"retrieval ceiling {next(v for k, v in r.extra.items() if k.startswith('retrieval_recall@')):.4f}")
