"""Shared negative samples for GRU4Rec, drawn from count(i)^alpha through a sample store.

Drawing thousands of samples per mini-batch one by one is slow, so rows of ``n_sample`` items are
drawn ahead in bulk and handed out one row per mini-batch; the store is refilled when it runs out.
Accidental hits (a sample equal to a target) are kept, as in the reference. The reference draws by
inverse CDF (a binary search per sample, ~2 s per 10M on a CPU); Walker's alias method draws the
same distribution in O(1) per sample.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange


@njit(cache=True)
def alias_table(p):  # pragma: no cover - compiled
    """Vose's alias method: ``prob``, ``alias`` such that drawing i uniformly, then keeping i with
    probability prob[i] and taking alias[i] otherwise, samples i with probability p[i] (p sums to 1)."""
    n = p.shape[0]
    scaled = p * n
    prob = np.ones(n)
    alias = np.arange(n)
    small = np.empty(n, np.int64)
    large = np.empty(n, np.int64)
    ns = 0
    nl = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        nl -= 1
        g = large[nl]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        if scaled[g] < 1.0:
            small[ns] = g
            ns += 1
        else:
            large[nl] = g
            nl += 1
    return prob, alias  # leftovers keep prob 1 (rounding), i.e. are drawn as themselves


@njit(parallel=True, cache=True, nogil=True)
def alias_rows(idx, u, prob, alias):  # pragma: no cover - compiled
    """In place: idx[r, j] becomes idx[r, j] if u[r, j] < prob[idx[r, j]] else alias[idx[r, j]] (the
    alias draw), then each row is sorted. One parallel pass instead of four numpy passes and their
    80 MB temporaries per 10M samples (a refill: 0.32 -> 0.26 s on reused memory, 0.81 -> 0.52 s on
    fresh)."""
    for r in prange(idx.shape[0]):
        row = idx[r]
        for j in range(row.shape[0]):
            i = row[j]
            if not u[r, j] < prob[i]:
                row[j] = alias[i]
        row.sort()


class SampleStore:
    def __init__(self, item_counts: np.ndarray, alpha: float, n_sample: int, store_size: int = 10_000_000,
                 seed: int | np.random.SeedSequence = 42, device="cpu"):
        self.n_sample = n_sample
        self.device = torch.device(device)
        weights = np.asarray(item_counts, dtype=np.float64) ** alpha
        self.p = weights / weights.sum()
        self.prob, self.alias = alias_table(self.p)
        self.rows = max(store_size // n_sample, 1) if n_sample > 0 else 0
        self.rng = np.random.default_rng(seed)
        self._store = None
        self._next = 0
        self._refill_state = None

    def _refill(self) -> None:
        self._refill_state = self.rng.bit_generator.state  # lets a checkpoint regenerate this store
        shape = (self.rows, self.n_sample)
        samples = self.rng.integers(0, len(self.prob), size=shape)
        # Each row in ascending item order: the order of the sample columns changes nothing in the
        # loss or its gradients, and the step then reads and updates the item tables in one sweep
        # instead of at random (Yoochoose: item-table update 0.94 -> 0.87 ms per step, gather a little
        # faster).
        alias_rows(samples, self.rng.random(shape), self.prob, self.alias)
        self._store = torch.from_numpy(samples).to(self.device)
        self._next = 0

    def next(self) -> torch.Tensor:
        """The next row of ``n_sample`` item indices (an empty tensor when n_sample is 0)."""
        if self.n_sample == 0:
            return torch.empty(0, dtype=torch.long, device=self.device)
        if self._store is None or self._next >= self.rows:
            self._refill()
        row = self._store[self._next]
        self._next += 1
        return row

    def next_rows(self, k: int) -> np.ndarray:
        """The next rows as next() would give them one by one, up to ``k`` of them at once (fewer where
        the store is refilled in between: call again for the rest), as one CPU array [rows, n_sample]."""
        if self.n_sample == 0 or k == 0:
            return np.empty((k if self.n_sample == 0 else 0, self.n_sample), dtype=np.int64)
        if self._store is None or self._next >= self.rows:
            self._refill()
        rows = self._store[self._next:self._next + k].cpu().numpy()
        self._next += len(rows)
        return rows

    def state(self) -> dict:
        """What a checkpoint needs to continue with exactly the same samples."""
        if self._store is None:
            return {"rng": self.rng.bit_generator.state, "next": None}
        return {"rng": self._refill_state, "next": self._next}

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        if state["next"] is None:
            self._store = None
        else:
            self._refill()
            self._next = state["next"]
