"""Next-item evaluation of user histories: full ranking by default, sampled only when asked.

Full ranking scores every item for each user, pushes the items of the user's input history to the
bottom (they are not recommended again) and ranks the target among all the rest. A target that
itself appears in the input history is masked too, as in the references; how often that happens is
reported. Sampled evaluation ranks the target among negatives drawn once with a seed (and saved),
and is always labelled "sampled" so it cannot pass for a full-ranking figure.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.histories import HistoryData, Split
from ..data.io import DataError, atomic_write, atomic_write_text
from .metrics import TIE_MODES, RankAccumulator, target_ranks

SEQUENTIAL_METRICS = ("recall", "ndcg", "hit", "mrr")


@dataclass
class RankingResult:
    metrics: dict[str, float]
    n: int
    protocol: str  # "full ranking over N items" or "sampled: ..."
    ties: str
    split: str = "test"
    targets_in_history: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.protocol.startswith("sampled")

    def cutoffs(self) -> list[int]:
        return sorted({int(k.split("@")[1]) for k in self.metrics})

    def table(self) -> str:
        """The Metric | @5 | @10 | @20 table, headed by what was measured."""
        names = list(dict.fromkeys(k.split("@")[0] for k in self.metrics))
        ks = self.cutoffs()
        lines = [f"{self.split}: {self.n:,} users, {self.protocol}, ties {self.ties}",
                 "Metric | " + " | ".join(f"@{k}" for k in ks)]
        for name in names:
            label = name.upper() if name in ("mrr", "ndcg") else name.capitalize()
            lines.append(f"{label:<6} | " + " | ".join(f"{self.metrics[f'{name}@{k}']:.4f}" for k in ks))
        if self.targets_in_history:
            lines.append(f"({self.targets_in_history} targets were in the user's input history and were masked)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"split": self.split, "protocol": self.protocol, "sampled": self.sampled, "ties": self.ties, "n": self.n,
                "targets_in_history": self.targets_in_history, "metrics": self.metrics, **self.extra}

    def save(self, path: str | os.PathLike) -> None:
        text = json.dumps(self.to_dict(), indent=2)
        atomic_write_text(path, text)


def history_mask(scores: torch.Tensor, histories) -> torch.Tensor:
    """True at [row, item] for every item of row's history (these are not recommended again)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if len(histories):
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        cols = np.concatenate(histories).astype(np.int64)
        mask[torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device)] = True
    return mask


def _check(cutoffs, mode):
    if mode not in TIE_MODES:
        raise ValueError(f"unknown tie mode {mode!r}; use one of {', '.join(TIE_MODES)}.")
    return RankAccumulator(cutoffs, SEQUENTIAL_METRICS)


@torch.no_grad()
def evaluate_ranking(score, split: Split, n_items: int, cutoffs=(5, 10, 20), mode: str = "conservative",
                     batch_size: int = 256, negatives: np.ndarray | None = None, negatives_label: str = "") -> RankingResult:
    """Rank each ``split.targets[i]`` given ``split.inputs[i]``.

    ``score(list_of_histories) -> [batch, n_items]`` tensor (a model's ``score``). Ties default to
    conservative (the target takes the worst place among equal scores), so a model cannot gain
    from constant scores. With ``negatives`` ([users, n] item indices) the target is ranked among
    them only and the result is labelled sampled.
    """
    acc = _check(cutoffs, mode)
    in_history = 0
    if negatives is not None and len(negatives) != len(split):
        raise ValueError(f"negatives have {len(negatives)} rows for {len(split)} users of the {split.name} split; "
                         "draw them for this split (sample_negatives).")
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start:start + batch_size]
        targets = torch.as_tensor(split.targets[start:start + batch_size], dtype=torch.long)
        scores = score(inputs).float()
        if scores.shape != (len(inputs), n_items):
            raise ValueError(f"score() returned shape {tuple(scores.shape)}, expected ({len(inputs)}, {n_items}).")
        targets = targets.to(scores.device)
        if negatives is None:
            hist = history_mask(scores, inputs)
            in_history += int(hist.gather(1, targets.view(-1, 1)).sum())
            scores = scores.masked_fill(hist, float("-inf"))
            ranks = target_ranks(scores.contiguous(), targets, mode)
        else:
            neg = torch.as_tensor(negatives[start:start + batch_size], dtype=torch.long, device=scores.device)
            cand = torch.cat([targets.view(-1, 1), neg], 1)
            ranks = target_ranks(scores.gather(1, cand).contiguous(), torch.zeros_like(targets), mode)
        acc.add(ranks)
    if negatives is None:
        protocol = f"full ranking over {n_items:,} items"
    else:
        protocol = f"sampled: target + {negatives.shape[1]} {negatives_label or 'drawn'} negatives"
    return RankingResult(acc.result(), acc.n, protocol, mode, split.name, in_history)


def sample_negatives(data: HistoryData, split: Split, n: int = 100, kind: str = "uniform", seed: int = 98765) -> np.ndarray:
    """``n`` distinct negatives per user of ``split``, none of them an item of the user's whole history.

    ``uniform`` draws items uniformly, ``popularity`` in proportion to their interaction count
    (BERT4Rec's protocol). Drawn once with ``seed``; save them with :func:`save_negatives`.
    """
    if kind not in ("uniform", "popularity"):
        raise ValueError(f"unknown negative sampling {kind!r}; use 'uniform' or 'popularity'.")
    rng = np.random.default_rng(seed)
    p = None
    if kind == "popularity":
        counts = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        p = counts / counts.sum()
    out = np.empty((len(split), n), dtype=np.int64)
    for row, user in enumerate(split.users):
        seen = np.unique(data.history(user))
        if data.n_items - len(seen) < n:
            raise DataError(f"user {data.user_ids[user]!r} has seen {len(seen)} of {data.n_items} items: fewer than {n} "
                            "negatives are left; ask for fewer negatives.")
        chosen: list[int] = []
        taken = set(seen.tolist())
        while len(chosen) < n:
            # Draw in bulk and keep the unseen, distinct ones; a few rounds suffice for sparse users.
            for item in rng.choice(data.n_items, size=2 * n, p=p).tolist():
                if item not in taken:
                    taken.add(item)
                    chosen.append(item)
                    if len(chosen) == n:
                        break
        out[row] = chosen
    return out


def save_negatives(path: str | os.PathLike, users: np.ndarray, negatives: np.ndarray, meta: dict) -> None:
    """Negatives as a plain .npz (no pickles) with what produced them."""
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object, so that savez does not append ".npz" to the temp name
            np.savez(f, users=users, negatives=negatives, meta=np.array(json.dumps(meta)))
    atomic_write(path, write)


def load_negatives(path: str | os.PathLike, split: Split) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as f:
        users, negatives, meta = f["users"], f["negatives"], json.loads(str(f["meta"]))
    if not np.array_equal(users, split.users):
        raise DataError(f"{path}: these negatives were drawn for other users than the {split.name} split of this dataset; "
                        "delete the file to draw them again.")
    return negatives, meta
