"""Shared negative samples for GRU4Rec, drawn from count(i)^alpha through a sample store.

Drawing thousands of samples per mini-batch one by one is slow, so rows of ``n_sample`` items are
drawn ahead in bulk (inverse CDF) and handed out one row per mini-batch; the store is refilled when
it runs out. Accidental hits (a sample equal to a target) are kept, as in the reference.
"""
from __future__ import annotations

import numpy as np
import torch


class SampleStore:
    def __init__(self, item_counts: np.ndarray, alpha: float, n_sample: int, store_size: int = 10_000_000,
                 seed: int = 42, device="cpu"):
        self.n_sample = n_sample
        self.device = torch.device(device)
        weights = np.asarray(item_counts, dtype=np.float64) ** alpha
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        cdf[-1] = 1.0  # guard against the last bucket being missed through rounding
        self.cdf = cdf
        self.rows = max(store_size // n_sample, 1) if n_sample > 0 else 0
        self.rng = np.random.default_rng(seed)
        self._store = None
        self._next = 0
        self._refill_state = None

    def _refill(self) -> None:
        self._refill_state = self.rng.bit_generator.state  # lets a checkpoint regenerate this store
        u = self.rng.random((self.rows, self.n_sample))
        samples = np.searchsorted(self.cdf, u, side="right")
        np.minimum(samples, len(self.cdf) - 1, out=samples)
        self._store = torch.from_numpy(samples.astype(np.int64)).to(self.device)
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
