"""The session-parallel mini-batch iterator of GRU4Rec (used for training and evaluation).

B slots each hold one session. In each round every slot advances in lockstep for ``minlen - 1``
steps (``minlen`` = fewest events left in any slot); each step's input is a slot's current item
and its target the next one. After the round, slots whose session has at most one event left are
"finished" and take the next sessions in time order; their hidden state must be reset. When no
session is left to take, finished slots are removed and the batch shrinks, so every event of every
session is used. Getting any of this wrong costs up to 99% of the accuracy (see the docs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sessions import SessionData


@dataclass
class Round:
    """``inputs[s]`` / ``targets[s]`` are the item indices of step ``s`` for the current slots.

    After the steps, hidden rows where ``finished`` is set are zeroed, then only rows where
    ``keep`` is set remain (the batch shrinks at the end of the data).
    """

    inputs: np.ndarray  # [steps, n_slots] int64
    targets: np.ndarray  # [steps, n_slots] int64
    finished: np.ndarray  # [n_slots] bool
    keep: np.ndarray  # [n_slots] bool
    new_sessions: np.ndarray  # session indices now starting in the kept finished slots

    def resets(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The slots to reset and the slots to keep, as indices; None: no slot finished / all kept
        (the batch shrinks only when slots finish)."""
        if not self.finished.any():
            return None, None
        return np.flatnonzero(self.finished), None if self.keep.all() else np.flatnonzero(self.keep)


def session_parallel_rounds(data: SessionData, batch_size: int, min_slots: int = 1):
    """Yield :class:`Round` s over ``data`` in session-start order.

    ``min_slots``: stop once fewer slots than this remain (the official code stops below 2 slots
    when it trains without extra samples; 1 uses every event).
    """
    offsets, order, items = data.offsets, data.order, data.items.astype(np.int64)
    n_sessions = data.n_sessions
    n_slots = min(batch_size, n_sessions)  # fewer sessions than slots: use fewer slots
    if n_slots == 0:
        return
    iters = np.arange(n_slots)
    next_session = n_slots
    start = offsets[order[iters]].copy()
    end = offsets[order[iters] + 1].copy()
    while True:
        minlen = int((end - start).min())
        steps = minlen - 1
        pos = start[None, :] + np.arange(minlen)[:, None]  # [minlen, slots]
        seq = items[pos]
        start = start + steps
        finished = (end - start) <= 1
        n_finished = int(finished.sum())
        new_iters = np.arange(next_session, next_session + n_finished)
        next_session += n_finished
        iters = iters.copy()
        iters[finished] = new_iters
        keep = iters < n_sessions
        refill = finished & keep
        new_sessions = order[iters[refill]]
        yield Round(seq[:-1], seq[1:], finished, keep, new_sessions)
        if keep.sum() < min_slots:
            return
        start[refill] = offsets[new_sessions]
        end[refill] = offsets[new_sessions + 1]
        iters, start, end = iters[keep], start[keep], end[keep]
