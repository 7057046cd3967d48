"""Full-ranking and sampled evaluation against brute force."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from nextitem.data import DataError
from nextitem.data.histories import HistoryData, LeaveOneOut, Split
from nextitem.evaluation.ranking import evaluate_ranking, load_negatives, sample_negatives, save_negatives


def brute_force(scores, split, cutoffs, mode, negatives=None):
    out = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "hit", "mrr") for k in cutoffs}
    for i, (h, t) in enumerate(zip(split.inputs, split.targets)):
        s = scores[i].astype(np.float64).copy()
        if negatives is None:
            s[list(h)] = -np.inf
            others = [j for j in range(len(s)) if j != t]
        else:
            others = list(negatives[i])
        above = sum(s[j] > s[t] for j in others)
        equal = sum(s[j] == s[t] for j in others)
        rank = {"standard": above + 1, "conservative": above + equal + 1, "median": above + 1 + equal / 2}[mode]
        for k in cutoffs:
            if rank <= k:
                out[f"recall@{k}"] += 1
                out[f"hit@{k}"] += 1
                out[f"mrr@{k}"] += 1 / rank
                out[f"ndcg@{k}"] += 1 / math.log2(rank + 1)
    return {k: v / len(split) for k, v in out.items()}


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_full_ranking_masks_history_and_counts_ties(mode):
    rng = np.random.default_rng(0)
    n_items, n = 15, 40
    scores = rng.integers(0, 4, size=(n, n_items)).astype(np.float32)  # many ties
    inputs = [rng.choice(n_items, size=rng.integers(1, 6), replace=False) for _ in range(n)]
    targets = rng.integers(0, n_items, size=n)
    split = Split(np.arange(n), inputs, targets, "test")
    calls = []

    def score(batch):
        start = sum(len(c) for c in calls)
        calls.append(batch)
        return torch.from_numpy(scores[start:start + len(batch)])

    result = evaluate_ranking(score, split, n_items, cutoffs=(1, 3, 5), mode=mode, batch_size=7)
    expected = brute_force(scores, split, (1, 3, 5), mode)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value), key
    assert result.targets_in_history == sum(t in set(h) for h, t in zip(inputs, targets))
    assert not result.sampled and "full ranking over 15 items" in result.table()


def test_sampled_metrics_are_labelled_and_match_brute_force():
    rng = np.random.default_rng(1)
    n_items, n = 30, 25
    scores = rng.normal(size=(n, n_items)).astype(np.float32)
    split = Split(np.arange(n), [np.array([0])] * n, rng.integers(1, n_items, size=n), "test")
    negatives = np.stack([rng.choice([j for j in range(n_items) if j != t], 5, replace=False) for t in split.targets])
    result = evaluate_ranking(lambda b: torch.from_numpy(scores[:len(b)]) if len(b) == n else None, split, n_items,
                              cutoffs=(1, 5), negatives=negatives, negatives_label="uniform", batch_size=n)
    expected = brute_force(scores, split, (1, 5), "conservative", negatives)
    assert result.metrics == pytest.approx(expected)
    assert result.sampled and result.table().splitlines()[0].endswith("sampled: target + 5 uniform negatives, ties conservative")


def _history_data():
    rows = [(u, i, t) for u in range(20) for t, i in enumerate(np.random.default_rng(u).choice(40, 8, replace=False))]
    return HistoryData.from_frame(pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"]))


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_negatives_exclude_all_user_items_and_round_trip(tmp_path, kind):
    data = _history_data()
    loo = LeaveOneOut.from_histories(data)
    neg = sample_negatives(data, loo.test, n=10, kind=kind, seed=5)
    assert neg.shape == (len(loo.test), 10)
    for row, u in enumerate(loo.test.users):
        assert len(set(neg[row])) == 10 and set(neg[row]).isdisjoint(data.history(u))
    assert np.array_equal(neg, sample_negatives(data, loo.test, n=10, kind=kind, seed=5))  # seeded
    save_negatives(tmp_path / "neg.npz", loo.test.users, neg, {"kind": kind, "seed": 5})
    back, meta = load_negatives(tmp_path / "neg.npz", loo.test)
    assert np.array_equal(back, neg) and meta == {"kind": kind, "seed": 5}
    with pytest.raises(DataError, match="other users"):
        load_negatives(tmp_path / "neg.npz", Split(loo.test.users[:-1], [], np.zeros(0), "test"))
    with pytest.raises(DataError, match="fewer than 35 negatives"):
        sample_negatives(data, loo.test, n=35)


def test_wrong_score_shape_and_tie_mode_are_clear_errors():
    split = Split(np.arange(2), [np.array([0]), np.array([1])], np.array([2, 3]), "valid")
    with pytest.raises(ValueError, match=r"expected \(2, 5\)"):
        evaluate_ranking(lambda b: torch.zeros(len(b), 4), split, 5)
    with pytest.raises(ValueError, match="unknown tie mode"):
        evaluate_ranking(lambda b: torch.zeros(len(b), 5), split, 5, mode="optimistic")
