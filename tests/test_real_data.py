"""Quick checks on the real rsc15_100k files (skipped, with the reason shown, where they are absent)."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from nextitem.data import DataError, SessionData, read_events, session_parallel_rounds
from nextitem.data.paths import find_dataset


@pytest.fixture(scope="module")
def folder():
    try:
        return find_dataset("sessions/rsc15_100k", required=("train_full.tsv", "test.tsv"))
    except DataError as e:
        pytest.skip(f"rsc15_100k not available: {str(e).splitlines()[0]}")


@pytest.fixture(scope="module")
def train(folder):
    return SessionData.from_frame(read_events(folder / "train_full.tsv"), source="train_full.tsv")


def test_train_matches_pandas(folder, train):
    raw = pd.read_csv(folder / "train_full.tsv", sep="\t", dtype={"ItemId": str})
    assert train.n_events == len(raw)
    assert train.n_sessions == raw["SessionId"].nunique()
    assert train.n_items == raw["ItemId"].nunique()
    assert list(train.vocab.ids[:50]) == list(dict.fromkeys(raw["ItemId"]))[:50]
    # the data is sorted by session then time, so the sessions come out exactly as in the file
    np.testing.assert_array_equal(train.vocab.to_ids(train.items), raw["ItemId"].to_numpy())
    starts = raw.groupby("SessionId", sort=False)["Time"].min().to_numpy()
    assert (np.diff(starts[train.order]) >= 0).all()


def test_test_mapping_and_iterator(folder, train):
    raw = pd.read_csv(folder / "test.tsv", sep="\t", dtype={"ItemId": str})
    test = SessionData.from_frame(read_events(folder / "test.tsv"), vocab=train.vocab, require_predictions=False)
    known = raw["ItemId"].isin(set(train.vocab.ids))
    assert test.n_unseen == int((~known).sum())
    assert test.n_events == int(known.sum())
    kept = raw[known]
    assert test.n_predictions() == int((kept.groupby("SessionId").size() - 1).sum())
    # every (input, target) pair exactly once through the session-parallel iterator
    pairs = Counter()
    for rnd in session_parallel_rounds(test, 512):
        pairs.update(zip(rnd.inputs.ravel().tolist(), rnd.targets.ravel().tolist()))
    expect = Counter()
    for s in range(test.n_sessions):
        seq = test.items[test.offsets[s]:test.offsets[s + 1]].tolist()
        expect.update(zip(seq[:-1], seq[1:]))
    assert pairs == expect
