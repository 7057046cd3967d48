"""read_events / validate_events and SessionData.from_frame."""
import numpy as np
import pandas as pd
import pytest

from nextitem.data import Columns, DataError, SessionData, read_events

EVENTS = pd.DataFrame({
    "SessionId": [1, 1, 1, 2, 2, 3, 3, 3],
    "ItemId": ["a", "b", "a", "c", "x-9", "b", "c", "d"],
    "Time": [10, 11, 12, 5, 6, 20, 21, 22],
})


def write(df, path, **kw):
    suffix = path.suffix
    if suffix in (".tsv", ".txt"):
        df.to_csv(path, sep="\t", index=False, **kw)
    elif suffix == ".csv":
        df.to_csv(path, index=False, **kw)
    elif suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_pickle(path)
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".txt", ".csv", ".parquet", ".pickle", ".pkl"])
def test_read_formats(tmp_path, suffix):
    path = write(EVENTS, tmp_path / f"events{suffix}")
    df = read_events(path)
    assert list(df.columns) == ["SessionId", "ItemId", "Time"]
    assert df["SessionId"].tolist() == EVENTS["SessionId"].tolist()
    assert [str(x) for x in df["ItemId"]] == EVENTS["ItemId"].tolist()
    assert df["Time"].tolist() == EVENTS["Time"].tolist()
    assert pd.api.types.is_numeric_dtype(df["Time"])


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_text_files_read_item_ids_as_strings(tmp_path, suffix):
    df = EVENTS.assign(ItemId=[7, 8, 7, 9, 10, 8, 9, 11])
    got = read_events(write(df, tmp_path / f"e{suffix}"))
    assert got["ItemId"].tolist() == ["7", "8", "7", "9", "10", "8", "9", "11"]


@pytest.mark.parametrize("suffix,kw", [
    (".csv", dict(encoding="utf-8-sig")),  # a byte-order mark, as Excel writes it
    (".tsv", dict(encoding="utf-8-sig")),
    (".csv", dict(quoting=1)),  # every field quoted, header included (R's write.csv, csv.QUOTE_ALL)
])
def test_files_pandas_reads_are_accepted(tmp_path, suffix, kw):
    path = write(EVENTS, tmp_path / f"e{suffix}", **kw)
    assert list(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",").columns) == list(EVENTS.columns)
    got = read_events(path)
    assert got["SessionId"].tolist() == EVENTS["SessionId"].tolist()
    assert got["ItemId"].tolist() == EVENTS["ItemId"].tolist()
    assert got["Time"].tolist() == EVENTS["Time"].tolist()


def test_text_ids_keep_leading_zeros(tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("SessionId\tItemId\tTime\n1\t007\t1\n1\t7\t2\n1\t0007\t3\n")
    data = SessionData.from_frame(read_events(path))
    assert list(data.vocab.ids) == ["007", "7", "0007"]


def test_extra_columns_are_dropped_and_order_normalised(tmp_path):
    df = EVENTS[["Time", "ItemId", "SessionId"]].assign(Extra=1.5)
    got = read_events(write(df, tmp_path / "e.tsv"))
    assert list(got.columns) == ["SessionId", "ItemId", "Time"]


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet", ".pickle"])
def test_custom_column_names(tmp_path, suffix):
    cols = Columns(session="sess", item="product", time="ts")
    df = EVENTS.rename(columns={"SessionId": "sess", "ItemId": "product", "Time": "ts"})
    got = read_events(write(df, tmp_path / f"e{suffix}"), cols)
    assert list(got.columns) == ["sess", "product", "ts"]
    data = SessionData.from_frame(got, cols)
    assert data.n_events == len(EVENTS) and data.n_sessions == 3


# ---------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet", ".pickle"])
@pytest.mark.parametrize("missing,flag", [("SessionId", "-sk"), ("ItemId", "-ik"), ("Time", "-tk")])
def test_missing_column(tmp_path, suffix, missing, flag):
    path = write(EVENTS.drop(columns=[missing]), tmp_path / f"e{suffix}")
    with pytest.raises(DataError) as e:
        read_events(path)
    msg = str(e.value)
    assert str(path) in msg and repr(missing) in msg and flag in msg


def test_missing_custom_column_names_its_flag(tmp_path):
    path = write(EVENTS, tmp_path / "e.tsv")
    with pytest.raises(DataError) as e:
        read_events(path, Columns(item="product"))
    assert "'product'" in str(e.value) and "-ik" in str(e.value) and str(path) in str(e.value)


def _bad_value_file(tmp_path, suffix, column, row, value):
    """EVENTS with ``value`` in ``column`` at 0-based data row ``row``, written as text."""
    lines = ["SessionId\tItemId\tTime"] + ["\t".join(map(str, r)) for r in EVENTS.itertuples(index=False)]
    fields = lines[row + 1].split("\t")
    fields[["SessionId", "ItemId", "Time"].index(column)] = value
    lines[row + 1] = "\t".join(fields)
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"bad{suffix}"
    path.write_text("\n".join(line.replace("\t", sep) for line in lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
@pytest.mark.parametrize("column,row", [("SessionId", 0), ("SessionId", 4), ("ItemId", 2), ("ItemId", 7), ("Time", 3)])
def test_missing_value_names_file_column_and_row(tmp_path, suffix, column, row):
    path = _bad_value_file(tmp_path, suffix, column, row, "")
    with pytest.raises(DataError) as e:
        read_events(path)
    msg = str(e.value)
    assert str(path) in msg and repr(column) in msg and f"data row {row + 1}" in msg


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
@pytest.mark.parametrize("row,value", [(0, "abc"), (5, "2024-01-01")])
def test_non_numeric_time_names_row_and_value(tmp_path, suffix, row, value):
    path = _bad_value_file(tmp_path, suffix, "Time", row, value)
    with pytest.raises(DataError) as e:
        read_events(path)
    msg = str(e.value)
    assert str(path) in msg and "'Time'" in msg and f"data row {row + 1}" in msg and repr(value) in msg


def test_missing_ids_in_a_dataframe_name_the_row(tmp_path):
    df = EVENTS.astype({"SessionId": float, "ItemId": object})
    df.loc[6, "ItemId"] = None
    path = write(df, tmp_path / "e.parquet")
    with pytest.raises(DataError) as e:
        read_events(path)
    assert str(path) in str(e.value) and "'ItemId'" in str(e.value) and "data row 7" in str(e.value)
    df = EVENTS.astype({"SessionId": float})
    df.loc[2, "SessionId"] = np.nan
    with pytest.raises(DataError) as e:
        read_events(write(df, tmp_path / "e.pickle"))
    assert "'SessionId'" in str(e.value) and "data row 3" in str(e.value)


def test_string_time_in_dataframe(tmp_path):
    df = EVENTS.astype({"Time": str})
    got = read_events(write(df, tmp_path / "e.parquet"))  # numeric text converts
    assert got["Time"].tolist() == EVENTS["Time"].tolist()
    df.loc[4, "Time"] = "yesterday"
    with pytest.raises(DataError) as e:
        read_events(write(df, tmp_path / "f.parquet"))
    assert "data row 5" in str(e.value) and "'yesterday'" in str(e.value)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet", ".pickle"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError) as e:
        read_events(path)
    assert str(path) in str(e.value) and "empty" in str(e.value)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet", ".pickle"])
def test_header_only(tmp_path, suffix):
    path = write(EVENTS.iloc[:0], tmp_path / f"header{suffix}")
    with pytest.raises(DataError) as e:
        read_events(path)
    assert str(path) in str(e.value) and "no events" in str(e.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_events(tmp_path / "nope.tsv")
    path = tmp_path / "e.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        read_events(path)


def test_pickle_of_non_dataframe(tmp_path):
    path = tmp_path / "e.pickle"
    pd.Series([1, 2]).to_pickle(path)
    with pytest.raises(DataError, match="not a pandas DataFrame"):
        read_events(path)


def test_no_session_longer_than_one(tmp_path):
    df = pd.DataFrame({"SessionId": [1, 2, 3], "ItemId": ["a", "b", "a"], "Time": [1, 2, 3]})
    path = write(df, tmp_path / "singles.tsv")
    with pytest.raises(DataError) as e:
        SessionData.from_frame(read_events(path), source=str(path))
    assert str(path) in str(e.value) and "more than one event" in str(e.value)
    # allowed when asked (test data may have nothing to predict)
    data = SessionData.from_frame(df, require_predictions=False)
    assert data.n_predictions() == 0 and data.n_sessions == 3


# ---------------------------------------------------------------------------------- SessionData
def sessions_as_ids(data):
    """{raw session id: [raw item ids in session order]}"""
    out = {}
    for s in range(data.n_sessions):
        idx = data.items[data.offsets[s]:data.offsets[s + 1]]
        out[data.session_ids[s]] = list(data.vocab.to_ids(idx))
    return out


def brute_sessions(df):
    """Group by session, stable sort by time (equal times keep file order)."""
    out = {}
    for sid, group in df.groupby("SessionId", sort=False):
        out[sid] = group.sort_values("Time", kind="stable")["ItemId"].tolist()
    return out


@pytest.mark.parametrize("seed", range(5))
def test_sessions_grouped_and_time_ordered_when_file_unsorted(seed):
    rng = np.random.default_rng(seed)
    n = 200
    df = pd.DataFrame({
        "SessionId": rng.integers(0, 30, n),
        "ItemId": [f"i{x}" for x in rng.integers(0, 25, n)],
        "Time": rng.integers(0, 15, n),  # many equal timestamps
    })
    data = SessionData.from_frame(df)
    assert sessions_as_ids(data) == brute_sessions(df)
    assert data.n_events == n and data.offsets[0] == 0 and data.offsets[-1] == n
    assert data.items.dtype == np.int32 and data.offsets.dtype == np.int64
    # vocabulary in order of first appearance in the file
    first_seen = list(dict.fromkeys(df["ItemId"]))
    assert list(data.vocab.ids) == first_seen
    # sessions ordered by first timestamp, ties in order of first appearance in the file
    starts = df.groupby("SessionId", sort=False)["Time"].min()
    expect = sorted(starts.index, key=lambda s: (starts[s], list(starts.index).index(s)))
    assert [data.session_ids[s] for s in data.order] == expect
    assert data.n_predictions() == sum(max(len(v) - 1, 0) for v in brute_sessions(df).values())
    np.testing.assert_array_equal(data.item_counts(), [sum(df["ItemId"] == i) for i in first_seen])


def test_sorted_input_takes_same_result_as_unsorted():
    df = pd.DataFrame({"SessionId": [1, 1, 2, 2, 2, 1], "ItemId": list("abcdef"), "Time": [1, 2, 3, 3, 3, 0]})
    data = SessionData.from_frame(df)
    assert sessions_as_ids(data) == {1: ["f", "a", "b"], 2: ["c", "d", "e"]}
    assert list(data.vocab.ids) == list("abcdef")


def test_equal_timestamps_keep_file_order():
    df = pd.DataFrame({"SessionId": [7, 7, 7, 7], "ItemId": ["z", "y", "x", "w"], "Time": [5, 5, 5, 5]})
    assert sessions_as_ids(SessionData.from_frame(df)) == {7: ["z", "y", "x", "w"]}
    df = pd.DataFrame({"SessionId": [7, 8, 7, 8, 7], "ItemId": ["z", "q", "y", "r", "x"], "Time": [5, 1, 5, 1, 4]})
    assert sessions_as_ids(SessionData.from_frame(df)) == {7: ["x", "z", "y"], 8: ["q", "r"]}


def test_test_data_mapped_with_training_vocab():
    train = SessionData.from_frame(pd.DataFrame({
        "SessionId": [1, 1, 2, 2], "ItemId": ["a", "b", "c", "d"], "Time": [1, 2, 3, 4]}))
    test_df = pd.DataFrame({
        "SessionId": [10, 10, 10, 10, 11, 11, 12, 12, 13],
        "ItemId": ["a", "NEW1", "c", "d", "NEW2", "NEW3", "b", "NEW1", "a"],
        "Time": [1, 2, 3, 4, 0, 1, 5, 6, 7],
    })
    test = SessionData.from_frame(test_df, vocab=train.vocab)
    assert test.vocab is train.vocab
    assert test.n_unseen == 4
    # session 10 stitched around NEW1; 11 emptied and gone; 12 left with one event; 13 untouched
    assert sessions_as_ids(test) == {10: ["a", "c", "d"], 12: ["b"], 13: ["a"]}
    assert test.n_sessions == 3 and test.n_events == 5
    assert test.n_predictions() == 2
    assert [test.session_ids[s] for s in test.order] == [10, 12, 13]
    np.testing.assert_array_equal(test.session_lengths(), [3, 1, 1])


def test_integer_vocab_with_text_test_ids():
    train = SessionData.from_frame(pd.DataFrame({"SessionId": [1, 1, 1], "ItemId": [5, 6, 7], "Time": [1, 2, 3]}))
    test = SessionData.from_frame(pd.DataFrame({"SessionId": [2, 2, 2], "ItemId": ["7", "8", "5"], "Time": [1, 2, 3]}),
                                  vocab=train.vocab)
    assert test.n_unseen == 1
    assert list(train.vocab.to_ids(test.items)) == [7, 5]


def test_all_unseen_test_data():
    train = SessionData.from_frame(pd.DataFrame({"SessionId": [1, 1], "ItemId": ["a", "b"], "Time": [1, 2]}))
    test_df = pd.DataFrame({"SessionId": [3, 3], "ItemId": ["x", "y"], "Time": [1, 2]})
    with pytest.raises(DataError, match="known to the model"):
        SessionData.from_frame(test_df, vocab=train.vocab)
    empty = SessionData.from_frame(test_df, vocab=train.vocab, require_predictions=False)
    assert empty.n_sessions == 0 and empty.n_events == 0 and empty.n_unseen == 2
