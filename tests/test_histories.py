"""User histories: reading both layouts, tie order, leave-one-out, and their errors."""
import numpy as np
import pandas as pd
import pytest

from nextitem.data import DataError
from nextitem.data.histories import HistoryData, LeaveOneOut, read_histories
from nextitem.data.paths import find_dataset


def frame(rows):
    return pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])


def test_histories_sorted_by_time_with_ties_in_file_order_not_item_order():
    # user a: times 2, 1, 1 -> item order by time, ties keep file order (z before b, though b < z)
    df = frame([("a", "x", 2), ("b", "q", 5), ("a", "z", 1), ("a", "b", 1), ("b", "r", 4)])
    data = HistoryData.from_frame(df)
    a = list(data.user_ids).index("a")
    assert list(data.vocab.to_ids(data.history(a))) == ["z", "b", "x"]
    b = list(data.user_ids).index("b")
    assert list(data.vocab.to_ids(data.history(b))) == ["r", "q"]


def test_leave_one_out_against_a_direct_construction():
    rng = np.random.default_rng(3)
    rows = []
    for u in range(30):
        for t in range(rng.integers(1, 8)):
            rows.append((u, int(rng.integers(0, 12)), t))
    df = frame(rows)
    loo = LeaveOneOut.from_histories(HistoryData.from_frame(df))
    data = loo.data
    for pos, u in enumerate(loo.test.users):
        full = [i for uu, i, _ in rows if uu == data.user_ids[u]]
        idx = list(data.vocab.index_of(full))
        assert loo.test.targets[pos] == idx[-1] and list(loo.test.inputs[pos]) == idx[:-1]
        assert loo.valid.targets[pos] == idx[-2] and list(loo.valid.inputs[pos]) == idx[:-2]
        assert list(loo.train[u]) == idx[:-2]
    short = [u for u in range(data.n_users) if data.lengths()[u] < 3]
    assert set(short).isdisjoint(loo.test.users)  # users with < 3 items only train
    for u in short:
        assert len(loo.train[u]) == data.lengths()[u]


def test_bad_frames_name_the_problem():
    with pytest.raises(DataError, match="no column 'Time'"):
        HistoryData.from_frame(pd.DataFrame({"UserId": [1], "ItemId": [2]}))
    with pytest.raises(DataError, match="non-numeric value 'yesterday' at data row 2"):
        HistoryData.from_frame(frame([(1, 2, 1), (1, 3, "yesterday")]))
    with pytest.raises(DataError, match="'ItemId' is empty at data row 1"):
        HistoryData.from_frame(frame([(1, None, 1)]))


def test_read_folder_layouts(tmp_path):
    (tmp_path / "tsv").mkdir()
    frame([(1, 10, 1), (1, 11, 2), (2, 10, 1)]).to_csv(tmp_path / "tsv" / "interactions.tsv", sep="\t", index=False)
    pd.DataFrame({"ItemId": [10, 11], "title": ["Ten", "Eleven"]}).to_csv(tmp_path / "tsv" / "items.tsv", sep="\t", index=False)
    data = read_histories(tmp_path / "tsv")
    assert data.n_users == 2 and data.n_items == 2 and data.titles() == ["Ten", "Eleven"]

    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "x.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                             "u1\ti1\t5\t100\nu1\ti2\t2\t50\nu2\ti1\t4\t10\n")
    (tmp_path / "rb" / "x.item").write_text("item_id:token\tmovie_title:token_seq\ni1\tOne\ni2\tTwo\n")
    data = read_histories(tmp_path / "rb")
    u1 = list(data.user_ids).index("u1")
    assert list(data.vocab.to_ids(data.history(u1))) == ["i2", "i1"]  # by timestamp
    assert data.titles() == ["One", "Two"]
    assert read_histories(tmp_path / "rb", min_rating=4).n_events == 2

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "y.inter").write_text("user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError, match="not 'name:type'"):
        read_histories(tmp_path / "bad")
    with pytest.raises(DataError, match="no such dataset folder"):
        read_histories(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither interactions.tsv nor"):
        read_histories(tmp_path / "empty")


def test_real_ml100k_recbole_files():
    data = read_histories(find_dataset("sequences/ml-100k"))
    assert (data.n_users, data.n_items, data.n_events) == (943, 1682, 100_000)
    loo = LeaveOneOut.from_histories(data)
    assert len(loo.test) == 943  # every ml-100k user has >= 20 ratings
    assert sum(len(h) for h in loo.train) == 100_000 - 2 * 943
