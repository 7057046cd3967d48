"""session_parallel_rounds against a brute-force simulation of the session-parallel iterator.

Items are made unique per event (item value = event index), so every input/target identifies
its (session, position) exactly and the checks do not rely on the iterator's own bookkeeping.
"""
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from nextitem.data import ItemVocab, SessionData, session_parallel_rounds


def make_data(lengths, order=None, seed=0):
    """SessionData whose event e (grouped layout) has item e; ``order`` defaults to a random permutation."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_events = int(offsets[-1])
    if order is None:
        order = np.random.default_rng(seed).permutation(len(lengths))
    return SessionData(
        items=np.arange(n_events, dtype=np.int32), offsets=offsets, order=np.asarray(order, dtype=np.int64),
        vocab=ItemVocab(pd.Index(np.arange(n_events))), session_ids=np.arange(len(lengths)),
    )


def where(data, event):
    """(session, position) of an event index."""
    s = int(np.searchsorted(data.offsets, event, side="right") - 1)
    return s, int(event - data.offsets[s])


def expected_pairs(data):
    """Every (session, position) that is an input: all events but each session's last."""
    out = Counter()
    for s in range(data.n_sessions):
        for p in range(int(data.offsets[s + 1] - data.offsets[s]) - 1):
            out[(s, p)] += 1
    return out


def simulate(data, batch_size, min_slots=1):
    """Run the iterator and check every round against a per-slot simulation.

    Returns (pairs seen as a Counter of (session, position), session start order, rounds).
    Each slot holds the session its hidden state belongs to (None right after a reset).
    """
    rounds = list(session_parallel_rounds(data, batch_size, min_slots))
    n_slots = min(batch_size, data.n_sessions)
    lengths = data.session_lengths()
    slot_session = [int(s) for s in data.order[:n_slots]]  # session assigned to each slot
    slot_pos = [0] * n_slots  # position of the slot's next input within its session
    state = [None] * n_slots  # the session the slot's hidden state was built on
    started = list(slot_session)
    pairs = Counter()
    for rnd in rounds:
        steps, width = rnd.inputs.shape
        assert rnd.targets.shape == (steps, width)
        assert width == len(slot_session) == len(rnd.finished) == len(rnd.keep)
        # all slots advance in lockstep for (fewest events left in any slot) - 1 steps
        assert steps == min(int(lengths[slot_session[k]]) - slot_pos[k] for k in range(width)) - 1
        for t in range(steps):
            for k in range(width):
                s_in, p_in = where(data, int(rnd.inputs[t, k]))
                s_tg, p_tg = where(data, int(rnd.targets[t, k]))
                assert s_in == slot_session[k], "input does not belong to the slot's session"
                assert p_in == slot_pos[k], "slot skipped or repeated an event"
                assert (s_tg, p_tg) == (s_in, p_in + 1), "target is not the next event of the same session"
                if state[k] is None:
                    assert p_in == 0, "state was reset in the middle of a session"
                    state[k] = s_in
                else:
                    assert state[k] == s_in and p_in > 0, "hidden state carried over from another session"
                pairs[(s_in, p_in)] += 1
                slot_pos[k] += 1
        # finished = the slot's session has at most one event left
        left = [int(lengths[slot_session[k]]) - slot_pos[k] for k in range(width)]
        assert list(rnd.finished) == [x <= 1 for x in left]
        # reset, then refill the finished slots with the next sessions in order, then shrink
        refill = [k for k in range(width) if rnd.finished[k]]
        n_new = min(len(refill), data.n_sessions - len(started))
        assert list(rnd.keep) == [not rnd.finished[k] or refill.index(k) < n_new for k in range(width)]
        assert list(rnd.new_sessions) == [int(s) for s in data.order[len(started):len(started) + n_new]]
        for k, s in zip(refill[:n_new], rnd.new_sessions):
            state[k] = None
            slot_session[k], slot_pos[k] = int(s), 0
            started.append(int(s))
        for k in refill[n_new:]:
            state[k] = None
        kept = [k for k in range(width) if rnd.keep[k]]
        slot_session = [slot_session[k] for k in kept]
        slot_pos = [slot_pos[k] for k in kept]
        state = [state[k] for k in kept]
    return pairs, started, rounds, slot_session


def random_lengths(rng, n):
    # plenty of length-1 and length-2 sessions, some long ones
    return rng.choice([1, 1, 2, 2, 3, 4, 5, 7, 11, 20], size=n)


CASES = [(seed, n, b) for seed, n in enumerate([1, 2, 3, 5, 8, 13, 40, 97]) for b in range(1, 9)]


@pytest.mark.parametrize("seed,n_sessions,batch_size", CASES)
def test_every_pair_once_and_state_bookkeeping(seed, n_sessions, batch_size):
    rng = np.random.default_rng(seed * 100 + batch_size)
    data = make_data(random_lengths(rng, n_sessions), seed=seed)
    pairs, started, rounds, remaining = simulate(data, batch_size)
    assert pairs == expected_pairs(data)  # (a): each non-last event is an input exactly once
    assert started == [int(s) for s in data.order]  # (c): sessions start in data.order
    assert remaining == []  # with min_slots=1 the batch shrinks to nothing: every event is used
    for rnd in rounds:
        assert rnd.inputs.dtype == np.int64 and rnd.targets.dtype == np.int64


def test_first_timestamp_order_from_frame():
    # sessions appear in the file in an order different from their start times
    df = pd.DataFrame({
        "SessionId": [5, 5, 1, 1, 1, 9, 9, 3, 3, 7],
        "ItemId": list("abcdefghij"),
        "Time": [30, 31, 10, 11, 12, 20, 21, 10, 14, 5],
    })
    data = SessionData.from_frame(df)
    # starts: 5->30, 1->10, 9->20, 3->10 (tie with 1, later in the file), 7->5
    assert [data.session_ids[s] for s in data.order] == [7, 1, 3, 9, 5]
    pairs, started, _, _ = simulate(data_with_unique_items(data), 2)
    assert started == [int(s) for s in data.order]


def data_with_unique_items(data):
    return SessionData(items=np.arange(data.n_events, dtype=np.int32), offsets=data.offsets, order=data.order,
                       vocab=ItemVocab(pd.Index(np.arange(data.n_events))), session_ids=data.session_ids)


@pytest.mark.parametrize("lengths,batch_size", [([3], 8), ([2, 5], 8), ([1, 4, 1], 5), ([1], 3), ([4, 4, 4], 4)])
def test_fewer_sessions_than_slots(lengths, batch_size):
    data = make_data(lengths)
    pairs, started, rounds, _ = simulate(data, batch_size)
    assert pairs == expected_pairs(data)
    assert rounds[0].inputs.shape[1] == len(lengths)


def test_no_sessions_yields_nothing():
    data = make_data([])
    assert list(session_parallel_rounds(data, 4)) == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch_size", [1, 2, 3, 6])
def test_min_slots_two_stops_below_two_slots(seed, batch_size):
    rng = np.random.default_rng(seed)
    data = make_data(random_lengths(rng, 25), seed=seed)
    full = list(session_parallel_rounds(data, batch_size, 1))
    short = list(session_parallel_rounds(data, batch_size, 2))
    # the rounds are the same up to (and including) the first one after which < 2 slots remain
    stop = next(i for i, r in enumerate(full) if r.keep.sum() < 2)
    assert len(short) == stop + 1
    for a, b in zip(short, full):
        for name in ("inputs", "targets", "finished", "keep", "new_sessions"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert all(r.keep.sum() >= 2 for r in short[:-1])
    assert short[-1].keep.sum() < 2
    # and the simulation still holds for what was produced
    pairs, _, _, remaining = simulate(data, batch_size, 2)
    assert len(remaining) < 2
    assert not (pairs - expected_pairs(data))  # nothing seen that should not be, nothing twice


@pytest.mark.parametrize("ahead", [1, 3, 64])
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_steps_carry_each_slots_state_and_reset_it_at_session_starts(ahead, batch_size, monkeypatch):
    """session_parallel_steps (rounds worked out ``ahead`` at a time): a state row written after a
    step is read by the next event of the same session, and is zero at every session's first event."""
    import torch

    import nextitem.models.gru4rec as g

    monkeypatch.setattr(g, "_ROUNDS_AHEAD", ahead)
    data = make_data(np.random.default_rng(batch_size).integers(2, 9, size=23), seed=batch_size)
    starts = set(data.offsets[:-1].tolist())
    H = [torch.zeros(min(batch_size, data.n_sessions), 1)]
    seen = Counter()
    for x, y in g.session_parallel_steps(data, batch_size, H):
        assert len(x) == len(y) == H[0].shape[0]
        for r, e in enumerate(x.tolist()):
            assert H[0][r, 0] == (0 if e in starts else e)  # state of event e - 1 is e (written below)
            assert y[r] == e + 1
            seen[e] += 1
        H[0] = (x + 1).float().unsqueeze(1)  # the "new state": event index + 1
    assert seen == Counter({e: 1 for e in range(int(data.offsets[-1])) if e + 1 not in set(data.offsets[1:].tolist())})
