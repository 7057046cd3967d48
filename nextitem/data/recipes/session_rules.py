"""The preprocessing rules of the GRU4Rec session datasets (reference notes, section 1.12), as lazy queries.

Frames here have the columns SessionId, ItemId, Time and ``_row`` (the raw row number). Events with
equal timestamps keep their raw-file order: ``_row`` breaks every tie, never the item id (sorting
ties by item id plants an artificial increasing-id pattern in the sequences).
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


def keep_frequent(events: pl.LazyFrame, column: str, minimum: int) -> pl.LazyFrame:
    """The events whose ``column`` value occurs at least ``minimum`` times (a semi-join: streams, keeps no list in Python)."""
    frequent = events.group_by(column).agg(pl.len().alias("_n")).filter(pl.col("_n") >= minimum)
    return events.join(frequent.select(column), on=column, how="semi")


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
    test = events.join(starts.filter(pl.col("_start") >= boundary).select("SessionId"), on="SessionId", how="semi")
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
    ends = events.group_by("SessionId").agg(pl.col("Time").max().alias("_end"))
    train = events.join(ends.filter(pl.col("_end") < tmax - tday).select("SessionId"), on="SessionId", how="semi")
    test = events.join(ends.filter(pl.col("_end") >= tmax - tday).select("SessionId"), on="SessionId", how="semi")
    test = test.join(train.select("ItemId").unique(), on="ItemId", how="semi")
    return train, drop_short_sessions(test, 2)
