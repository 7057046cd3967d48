"""The raw files of the six session datasets: their columns, event filters and time units.

Each reader returns one lazy frame with Key (the given session id, or the user to sessionize),
ItemId (text, as in the raw file), Time (in the recipe's unit), ``_keep`` (the event filter) and
``_row`` (the row number over all the files given, in the order given).
"""
from __future__ import annotations

import polars as pl

from ..io import DataError
from .workspace import ROW, Field, RawFormat, Workspace, as_int, date_ms, epoch_ms, scan_raw

_ISO_Z = epoch_ms("%Y-%m-%dT%H:%M:%S%.fZ")

YOOCHOOSE = RawFormat(
    separator=",",
    names=("session", "timestamp", "item", "category"),
    fields={
        "Key": Field(("session",), as_int, "an integer session id"),
        "ItemId": Field(("item",)),
        "Time": Field(("timestamp",), _ISO_Z, "a time like 2014-04-07T10:51:09.277Z"),
    },
    description="RecSys Challenge 2015 clicks file without a header (yoochoose-clicks.dat: session,timestamp,item,category)",
)

RETAILROCKET = RawFormat(
    separator=",",
    fields={
        "Key": Field(("visitorid",)),
        "ItemId": Field(("itemid",), required="kept"),
        "Time": Field(("timestamp",), as_int, "an integer unix time in milliseconds"),
        "event": Field(("event",), required="none"),
    },
    keep=lambda: pl.col("event") == "view",
    description="RetailRocket events.csv (timestamp,visitorid,event,itemid,transactionid)",
)

REES46 = RawFormat(
    separator=",",
    fields={
        "Key": Field(("user_id",)),
        "ItemId": Field(("product_id",), required="kept"),
        "Time": Field(("event_time",), epoch_ms("%Y-%m-%d %H:%M:%S UTC"), "a time like 2019-10-01 00:00:00 UTC"),
        "event": Field(("event_type",), required="none"),
    },
    keep=lambda: pl.col("event") == "view",
    description="REES46 eCommerce monthly file (2019-Oct.csv: event_time,event_type,product_id,...,user_id,user_session)",
)

COVEO = RawFormat(
    separator=",",
    fields={
        "Key": Field(("session_id_hash",)),
        "ItemId": Field(("product_sku_hash", "product_skus_hash"), required="kept"),
        "Time": Field(("server_timestamp_epoch_ms",), as_int, "an integer unix time in milliseconds"),
        "event": Field(("product_action",), required="none"),
    },
    keep=lambda: pl.col("event") == "detail",
    description="Coveo browsing file (browsing_train.csv: session_id_hash,event_type,product_action,product_sku_hash,server_timestamp_epoch_ms,...)",
)

DIGINETICA = RawFormat(
    separator=";",
    fields={
        "Key": Field(("sessionId", "session_id"), as_int, "an integer session id"),
        "ItemId": Field(("itemId", "item_id")),
        "timeframe": Field(("timeframe",), as_int, "an integer (milliseconds since the session start)"),
        "date": Field(("eventdate",), date_ms, "a date like 2016-05-09"),
    },
    description="CIKM Cup 2016 train-item-views.csv (sessionId;userId;itemId;timeframe;eventdate)",
)


def read_files(fmt: RawFormat, paths: list[str], ws: Workspace) -> tuple[pl.LazyFrame, int]:
    """All ``paths`` in ``fmt``, concatenated in the order given (row numbers run on); and the total row count."""
    parts, offset = [], 0
    for path in paths:
        part, n = scan_raw(path, fmt, ws, row_offset=offset)
        parts.append(part)
        offset += n
    return pl.concat(parts, how="vertical"), offset


def yoochoose(paths, ws):
    """clicks.dat (+ test.dat) concatenated, given sessions; time in whole seconds (floored)."""
    events, n = read_files(YOOCHOOSE, paths, ws)
    return events.with_columns(pl.col("Time") // 1000), n


def rsc15(paths, ws):
    """clicks.dat only, given sessions; time in seconds with the milliseconds kept (a float)."""
    if len(paths) != 1:
        raise DataError(f"the rsc15 recipe reads exactly one file, yoochoose-clicks.dat; got {len(paths)}: {paths}.")
    events, n = read_files(YOOCHOOSE, paths, ws)
    return events.with_columns(pl.col("Time") / 1000.0), n


def retailrocket(paths, ws):
    return read_files(RETAILROCKET, paths, ws)  # ms


def rees46(paths, ws):
    """The monthly files (2019-Oct.csv, 2019-Nov.csv), concatenated; time in seconds."""
    events, n = read_files(REES46, paths, ws)
    return events.with_columns(pl.col("Time") // 1000), n


def coveo(paths, ws):
    return read_files(COVEO, paths, ws)  # ms


def diginetica(paths, ws):
    """Time = the date of the session's first event (its earliest eventdate) in ms + timeframe (ms since the session start)."""
    events, n = read_files(DIGINETICA, paths, ws)
    first_day = events.group_by("Key").agg(pl.col("date").min().alias("_day"))  # a join streams; a window may not
    time = pl.col("_day") + pl.col("timeframe")
    return events.join(first_day, on="Key").with_columns(Time=time).select("Key", "ItemId", "Time", "_keep", ROW), n
