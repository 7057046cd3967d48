"""The preprocessing rules of the GRU4Rec session datasets (reference notes, section 1.12), as lazy queries.

Frames here have the columns SessionId, ItemId, Time and ``_row`` (the raw row number). Events with
equal timestamps keep their raw-file order: ``_row`` breaks every tie, never the item id (sorting
ties by item id plants an artificial increasing-id pattern in the sequences).
The filters and splits collect the keys they keep (sessions, items) in a streaming pass and return
the events as a lazy filter on them: memory grows with the keys, never with the events.
"""
from __future__ import annotations

import polars as pl

from .workspace import ROW, Workspace

ORDER = ("SessionId", "Time", ROW)


def sessionize(events: pl.LazyFrame, gap: int | float) -> pl.LazyFrame:
    """Cut each user's (``Key``) time-ordered events into sessions at gaps longer than ``gap``.

    SessionId counts the sessions from 1 in (user, start time) order.
    The gap is strict: events exactly ``gap`` apart stay in one session.
    """
    ordered = events.sort("Key", "Time", ROW)
    new = (pl.col("Key") != pl.col("Key").shift(1)) | (pl.col("Time") - pl.col("Time").shift(1) > gap)
    return ordered.with_columns(SessionId=new.fill_null(True).cast(pl.Int64).cum_sum())


def drop_consecutive_repeats(events: pl.LazyFrame) -> pl.LazyFrame:
    """(i, i, j) -> (i, j) within a session; a repeat after another item stays."""
    same = (pl.col("SessionId") == pl.col("SessionId").shift(1)) & (pl.col("ItemId") == pl.col("ItemId").shift(1))
    return events.sort(*ORDER).filter(~same.fill_null(False))


def column_values(lf: pl.LazyFrame, column: str) -> pl.Series:
    """The ``column`` of a small result (keys of sessions, items), computed in one streaming pass."""
    return lf.select(column).collect(engine="streaming").to_series()


def keep_rows_with(events: pl.LazyFrame, column: str, keys: pl.Series) -> pl.LazyFrame:
    # a filter streams in constant memory; a semi-join of the events with a query on those same
    # events made Polars' streaming engine hold ~15-45 bytes per event (measured), which grows
    # with the raw file instead of with the number of sessions or items
    return events.filter(pl.col(column).is_in(keys.implode()))


def keep_frequent(events: pl.LazyFrame, column: str, minimum: int) -> pl.LazyFrame:
    """The events whose ``column`` value occurs at least ``minimum`` times.

    The frequent values are collected first (memory grows with the number of distinct values,
    not of events); the events are then filtered lazily.
    """
    frequent = events.group_by(column).agg(pl.len().alias("_n")).filter(pl.col("_n") >= minimum)
    return keep_rows_with(events, column, column_values(frequent, column))


def drop_short_sessions(events: pl.LazyFrame, min_length: int = 2) -> pl.LazyFrame:
    return keep_frequent(events, "SessionId", min_length)


def drop_rare_items(events: pl.LazyFrame, min_support: int = 5) -> pl.LazyFrame:
    return keep_frequent(events, "ItemId", min_support)


def filter_until_stable(events: pl.LazyFrame, ws: Workspace, min_support: int = 5) -> tuple[pl.LazyFrame, int]:
    """Repeat "drop sessions of length 1, then items with fewer than ``min_support`` events" until nothing changes.

    One pass is not enough: dropping an item can leave a session of length 1, and dropping that
    session can take an item below the support. Returns the result and the number of rounds.
    """
    return ws.until_stable(events, lambda e: drop_rare_items(drop_short_sessions(e, 2), min_support), "filter")


def session_starts(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.group_by("SessionId").agg(pl.col("Time").min().alias("_start"))


def split_by_start(events: pl.LazyFrame, starts: pl.LazyFrame, boundary) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(train, test) at ``boundary``: test = the sessions whose first event (in ``starts``) is >= boundary;
    train = the events before the boundary (so a straddling session is cut), then sessions of length 1 dropped.

    The test part is not filtered to the training items: the evaluation does that.
    """
    test = keep_rows_with(events, "SessionId", column_values(starts.filter(pl.col("_start") >= boundary), "SessionId"))
    train = drop_short_sessions(events.filter(pl.col("Time") < boundary), 2)
    return train, test


# ---- the RSC15 variant (the original Theano repository's preprocessing) ----

def rsc15_filter(events: pl.LazyFrame) -> pl.LazyFrame:
    """A single pass: sessions longer than 1, items with support >= 5, then sessions of length >= 2 again."""
    return drop_short_sessions(drop_rare_items(drop_short_sessions(events, 2), 5), 2)


def split_by_end(events: pl.LazyFrame, tday, ws: Workspace) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(train, test): whole sessions whose LAST event is >= max(Time) - tday are test, the rest train.

    The test part keeps only items seen in train, then only sessions of length >= 2.
    """
    tmax = ws.scalar(pl.col("Time").max(), events)
    ends = events.group_by("SessionId").agg(pl.col("Time").max().alias("_end")).collect(engine="streaming")
    late = ends["_end"] >= tmax - tday
    train = keep_rows_with(events, "SessionId", ends.filter(~late)["SessionId"])
    test = keep_rows_with(events, "SessionId", ends.filter(late)["SessionId"])
    test = keep_rows_with(test, "ItemId", column_values(train.select("ItemId").unique(), "ItemId"))
    return train, drop_short_sessions(test, 2)
