"""Score fusion: the reranker's scores of a pool combined with the retriever's own scores.

A reranker weaker than the retriever on its own (BERT4Rec after LRURec on beauty, a small LLM)
still knows things the retriever does not; mixing the two usually beats both. Each model's scores
are standardised within the pool (so their scales do not matter) and added with weights
``1 - w`` (reranker) and ``w`` (retriever). ``w`` is chosen on the validation split, never on test:
w = 0 is the reranker alone, w = 1 the retriever's order unchanged.
"""
from __future__ import annotations

import numpy as np

from ..data.histories import Split
from .candidates import Candidates, evaluate_reranked

GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))


def parse_fusion(value) -> str | float:
    """``"auto"`` (fit on validation), ``"none"`` (the reranker alone) or a retriever weight in [0, 1]."""
    if value is None:
        return "none"
    if isinstance(value, str) and value.strip().lower() in ("auto", "none"):
        return value.strip().lower()
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fusion={value!r}: use auto (a retriever weight fitted on validation), none (the reranker "
                         "alone) or a number in [0, 1] (the retriever's weight).") from None
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"fusion={value!r}: the retriever's weight must lie in [0, 1] (0 = the reranker alone, "
                         "1 = the retriever's order).")
    return w


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over its finite entries, divided by their standard deviation (1 if 0).

    Non-finite scores (a retriever's masked items) stay -inf, so fusion cannot promote them."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    n = np.maximum(finite.sum(1, keepdims=True), 1)
    x = np.where(finite, s, 0.0)
    mean = x.sum(1, keepdims=True) / n
    std = np.sqrt((np.where(finite, s - mean, 0.0) ** 2).sum(1, keepdims=True) / n)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    return np.where(finite, z, -np.inf)


def fuse(reranker_scores: np.ndarray, retriever_scores: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * standardised reranker scores + weight * standardised retriever scores."""
    r, q = standardise(reranker_scores), standardise(retriever_scores)
    # the ends return one side alone: 0 * -inf (a masked item of the other side) would be nan
    if weight == 0.0:
        return r
    if weight == 1.0:
        return q
    return (1.0 - weight) * r + weight * q


def fit_weight(reranker_scores: np.ndarray, pool: Candidates, split: Split, metric: str = "ndcg@10",
               grid=GRID) -> tuple[float, dict[float, float]]:
    """The retriever weight of ``grid`` with the best ``metric`` on ``split`` (a validation split).

    Returns the weight and the metric at every weight; the first best wins, so a tie favours the
    reranker."""
    curve = {}
    for w in grid:
        curve[float(w)] = evaluate_reranked(fuse(reranker_scores, pool.scores, w), pool, split).metrics[metric]
    best = max(curve, key=lambda w: curve[w])
    return best, curve
