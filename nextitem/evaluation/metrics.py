"""Rank-based metrics with explicit tie handling.

The rank of a target among all scored items, when other items have exactly its score:
- ``standard``: 1 + #(score > target)           (ties resolved in the target's favour)
- ``conservative``: #(score >= target)          (the worst position among the ties)
- ``median``: standard + (#ties - 1) / 2         (the expected position under random tie order)
"""
from __future__ import annotations

import torch

TIE_MODES = ("standard", "conservative", "median")


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, mode: str = "standard") -> torch.Tensor:
    """1-based rank of ``scores[i, targets[i]]`` within row ``i`` (float, as median is fractional)."""
    if mode not in TIE_MODES:
        raise ValueError(f"unknown tie mode {mode!r}; use one of {', '.join(TIE_MODES)}.")
    t = scores.gather(1, targets.view(-1, 1))
    above = (scores > t).sum(1)
    if mode == "standard":
        return (above + 1).to(torch.float64)
    at_or_above = (scores >= t).sum(1)
    if mode == "conservative":
        return at_or_above.to(torch.float64)
    ties = at_or_above - above  # includes the target itself
    return above.to(torch.float64) + 1 + (ties.to(torch.float64) - 1) / 2


class RankAccumulator:
    """Accumulates Recall@N and MRR@N over predictions for several cutoffs."""

    def __init__(self, cutoffs=(20,)):
        self.cutoffs = sorted({int(c) for c in cutoffs})
        if not self.cutoffs or self.cutoffs[0] < 1:
            raise ValueError(f"cutoffs must be positive integers, got {list(cutoffs)}.")
        self.n = 0
        self.hits = {k: 0.0 for k in self.cutoffs}
        self.rr = {k: 0.0 for k in self.cutoffs}

    def add(self, ranks: torch.Tensor) -> None:
        ranks = ranks.detach().to("cpu", torch.float64)
        self.n += len(ranks)
        for k in self.cutoffs:
            inside = ranks <= k
            self.hits[k] += float(inside.sum())
            self.rr[k] += float((inside / ranks).sum())

    def result(self) -> dict[str, float]:
        out = {}
        for k in self.cutoffs:
            out[f"recall@{k}"] = self.hits[k] / self.n if self.n else float("nan")
            out[f"mrr@{k}"] = self.rr[k] / self.n if self.n else float("nan")
        return out
