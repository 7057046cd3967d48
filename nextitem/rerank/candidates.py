"""Candidate sets between the two stages, their file format, and honest reranking metrics.

Stage 1 keeps only each user's top-K items and scores (never the users x items score matrix).
Stage 2 orders those K items. Its metrics count every user of the split: a user whose target was
not retrieved is a miss, so "retrieval" mode compares with full ranking; the metrics over the
retrieved subset only, and the retrieval Recall@K that bounds them, are reported beside them.
"ground_truth" mode ranks the target among 19 negatives drawn once with a seed, and is labelled
sampled-20.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.histories import HistoryData, Split
from ..data.io import DataError, atomic_write
from ..evaluation.metrics import RankAccumulator, target_ranks
from ..evaluation.ranking import SEQUENTIAL_METRICS, RankingResult, history_mask, sample_negatives


@dataclass
class Candidates:
    """Item indices ``items[i]`` (best first) with stage-1 ``scores[i]`` for user ``users[i]`` of ``split``."""

    split: str
    users: np.ndarray
    items: np.ndarray  # [n, K] int64
    scores: np.ndarray  # [n, K] float32

    def __len__(self) -> int:
        return len(self.users)

    @property
    def k(self) -> int:
        return self.items.shape[1]

    def top(self, k: int) -> "Candidates":
        """The first ``k`` candidates (rerank_top_k of the retriever's retrieval_top_k)."""
        if k > self.k:
            raise ValueError(f"asked for the top {k} candidates, but only {self.k} were retrieved; retrieve more (retrieval_top_k).")
        return Candidates(self.split, self.users, self.items[:, :k], self.scores[:, :k])

    def align(self, split: Split) -> "Candidates":
        """Rows in the order of ``split.users`` (files may list users in any order)."""
        if np.array_equal(self.users, split.users):
            return self
        where = {int(u): i for i, u in enumerate(self.users)}
        missing = [int(u) for u in split.users if int(u) not in where]
        if missing:
            raise DataError(f"the {self.split} candidates lack {len(missing)} users of the {split.name} split "
                            f"(e.g. user index {missing[0]}); retrieve again for this dataset.")
        rows = np.array([where[int(u)] for u in split.users])
        return Candidates(self.split, self.users[rows], self.items[rows], self.scores[rows])


@torch.no_grad()
def retrieve(score, split: Split, n_items: int, k: int, batch_size: int = 256) -> Candidates:
    """Top-``k`` items for every user of ``split`` from a model's ``score``, the input history masked."""
    if not 1 <= k <= n_items:
        raise ValueError(f"top-k must be in 1..{n_items} (the number of items), got {k}.")
    items, scores = [], []
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start:start + batch_size]
        s = score(inputs).float()
        s = s.masked_fill(history_mask(s, inputs), float("-inf"))
        top = torch.topk(s, k, dim=1)
        items.append(top.indices.cpu().numpy())
        scores.append(top.values.cpu().numpy())
    return Candidates(split.name, split.users.copy(), np.concatenate(items).astype(np.int64), np.concatenate(scores).astype(np.float32))


# ---------------------------------------------------------------------- files

COLUMNS = ["split", "user_id", "rank", "item_id", "score"]


def write_candidates(path: str | os.PathLike, sets: list[Candidates], data: HistoryData) -> None:
    """One CSV row per (split, user, rank) with raw user and item ids, written atomically."""
    frames = []
    for c in sets:
        n, k = c.items.shape
        frames.append(pd.DataFrame({
            "split": c.split, "user_id": np.repeat(data.user_ids[c.users], k), "rank": np.tile(np.arange(1, k + 1), n),
            "item_id": data.vocab.to_ids(c.items.ravel()), "score": c.scores.ravel(),
        }))
    frame = pd.concat(frames, ignore_index=True)
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def read_candidates(path: str | os.PathLike, data: HistoryData) -> dict[str, Candidates]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no candidate file; run the retrieval stage first (nextitem retrieve ...).")
    frame = pd.read_csv(path, dtype={"split": str, "user_id": str, "item_id": str})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; a candidate file has {', '.join(COLUMNS)}.")
    users = pd.Index(data.user_ids.astype(str)).get_indexer(frame["user_id"])
    items = data.vocab.index_of(frame["item_id"])
    for what, codes, column in (("user", users, "user_id"), ("item", items, "item_id")):
        bad = np.flatnonzero(codes < 0)
        if len(bad):
            raise DataError(f"{path}: row {bad[0] + 2} has {what} {frame[column].iloc[bad[0]]!r}, which is not in "
                            f"{data.source}; these candidates were retrieved for another dataset.")
    out = {}
    frame = frame.assign(u=users, i=items).sort_values(["split", "u", "rank"], kind="stable")
    for split, part in frame.groupby("split", sort=False):
        counts = part.groupby("u").size()
        if counts.nunique() != 1:
            raise DataError(f"{path}: users of the {split} split have different numbers of candidates "
                            f"({counts.min()}..{counts.max()}); the file is damaged, retrieve again.")
        k = int(counts.iloc[0])
        out[split] = Candidates(split, counts.index.to_numpy(dtype=np.int64), part["i"].to_numpy(np.int64).reshape(-1, k),
                                part["score"].to_numpy(np.float32).reshape(-1, k))
    return out


# ---------------------------------------------------------------------- pools and metrics

def ground_truth_pools(data: HistoryData, split: Split, n_negatives: int = 19, seed: int = 98765) -> Candidates:
    """The target plus ``n_negatives`` items the user never had, in a seeded random order."""
    neg = sample_negatives(data, split, n=n_negatives, kind="uniform", seed=seed)
    pool = np.concatenate([split.targets.reshape(-1, 1), neg], 1)
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(rng.random(pool.shape), axis=1)  # shuffled, so the target's place says nothing
    return Candidates(split.name, split.users.copy(), np.take_along_axis(pool, order, 1), np.zeros(pool.shape, np.float32))


def evaluate_reranked(scores: np.ndarray | torch.Tensor, cands: Candidates, split: Split, cutoffs=(5, 10, 20),
                      mode: str = "conservative", sampled: bool = False) -> RankingResult:
    """Metrics of the order ``scores`` ([n, K], higher first) puts on ``cands``, over ALL users of ``split``."""
    cands = cands.align(split)
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if tuple(scores.shape) != cands.items.shape:
        raise ValueError(f"reranker scores have shape {tuple(scores.shape)}, the candidates {cands.items.shape}.")
    hit = cands.items == split.targets.reshape(-1, 1)
    found = hit.any(1)
    position = torch.as_tensor(hit.argmax(1))
    ranks = torch.full((len(split),), float("inf"), dtype=torch.float64)  # not retrieved: a miss at every cutoff
    if found.any():
        rows = torch.as_tensor(np.flatnonzero(found))
        ranks[rows] = target_ranks(scores[rows].contiguous(), position[rows], mode)
    overall = RankAccumulator(cutoffs, SEQUENTIAL_METRICS)
    overall.add(ranks)
    subset = RankAccumulator(cutoffs, SEQUENTIAL_METRICS)
    subset.add(ranks[torch.as_tensor(found)])
    if sampled:
        protocol = f"sampled-{cands.k}: target + {cands.k - 1} negatives"
    else:
        protocol = f"reranked top-{cands.k} of the retriever, all users (not retrieved = miss)"
    extra = {"retrieved": int(found.sum()), f"retrieval_recall@{cands.k}": float(found.mean()),
             "subset_metrics": subset.result() if found.any() else {}}
    return RankingResult(overall.result(), len(split), protocol, mode, split.name, extra=extra)
