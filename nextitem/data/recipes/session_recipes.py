"""The six session recipes (GRU4Rec reference notes, section 1.12) and the run that writes their files.

Common recipe: event filter -> sessions (given, or per user with a new session after a gap of more
than 1 hour) -> consecutive repeats dropped -> "sessions of length 1, items with < 5 events" dropped
until nothing changes -> time split at tsplit - tday by session START (train_full cut at the
boundary, then its sessions of length 1 dropped; test not filtered to training items) -> the same
split of train_full at tsplit - 2*tday, with the session starts of the full data, gives train_tr /
train_valid.

RSC15 (the original Theano example): no dedup, a single filtering pass, whole sessions split by
their END (>= max time - 1 day is test), test kept to training items and length >= 2; train_tr /
train_valid the same way on train_full (its own max time).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import polars as pl

from ..io import DataError
from . import session_rules as rules
from . import session_sources as sources
from .output import session_file_stats, write_json, write_tsv
from .workspace import ROW, Workspace

HOUR = {"s": 3600, "ms": 3600 * 1000}
DAY = {"s": 86400, "ms": 86400 * 1000}
FILES = ("train_full.tsv", "test.tsv", "train_tr.tsv", "train_valid.tsv")


@dataclass(frozen=True)
class SessionRecipe:
    name: str
    read: Callable                 # (raw paths, workspace) -> (events, raw row count)
    unit: str                      # "s" or "ms"
    test_days: int                 # tday, in days
    tsplit: int | None = None      # fixed split time; None: the last timestamp of the data
    sessionize: str | None = None  # None: sessions are given; "all": per user on all events, before the event
                                   # filter; "kept": per user on the kept events only
    rsc15: bool = False
    raw: str = ""                  # which raw files, for help texts


SESSION_RECIPES = {r.name: r for r in (
    SessionRecipe("yoochoose", sources.yoochoose, "s", 1, raw="yoochoose-clicks.dat [yoochoose-test.dat]"),
    SessionRecipe("rsc15", sources.rsc15, "s", 1, rsc15=True, raw="yoochoose-clicks.dat"),
    SessionRecipe("rees46", sources.rees46, "s", 1, tsplit=1575158400, sessionize="kept",
                  raw="2019-Oct.csv 2019-Nov.csv"),
    # the reference sessionizes Coveo on all events, like RetailRocket (the notes' table is silent on it)
    SessionRecipe("coveo", sources.coveo, "ms", 1, sessionize="all", raw="browsing_train.csv"),
    SessionRecipe("retailrocket", sources.retailrocket, "ms", 7, tsplit=1442545200000, sessionize="all",
                  raw="events.csv"),
    SessionRecipe("diginetica", sources.diginetica, "ms", 7, raw="train-item-views.csv"),
)}

SESSION_OPTIONS = ("tsplit", "test_days")


def run_session_recipe(recipe: SessionRecipe, raw_paths: list[str], out_dir: str,
                       tsplit: float | None = None, test_days: float | None = None) -> dict:
    """Prepare ``raw_paths`` with ``recipe`` into ``out_dir``; return (and write as stats.json) the statistics.

    ``tsplit`` (in the recipe's time unit) and ``test_days`` override the recipe's split.
    """
    tday = DAY[recipe.unit] * (recipe.test_days if test_days is None else test_days)
    with Workspace(out_dir) as ws:
        events, n_raw = recipe.read(list(raw_paths), ws)
        events = _sessions(recipe, events, ws)
        steps = {"raw rows": n_raw, "events used": ws.rows(events)}
        if recipe.rsc15:
            full = ws.save(rules.rsc15_filter(events), "filtered")
            steps["after filtering"] = ws.rows(full)
            _nonempty(full, raw_paths)
            split_time = ws.scalar(pl.col("Time").max(), full)
            train_full, test = rules.split_by_end(full, tday, ws)
            train_full = ws.save(train_full, "train_full")
            train_tr, valid = rules.split_by_end(train_full, tday, ws)
        else:
            deduped = ws.per_part(ws.buckets(events, "SessionId", "by-session"), rules.drop_consecutive_repeats, "dedup")
            steps["after dropping consecutive repeats"] = ws.rows(deduped)
            full, rounds = rules.filter_until_stable(deduped, ws)
            steps["after filtering"], steps["filter rounds"] = ws.rows(full), rounds
            _nonempty(full, raw_paths)
            split_time = tsplit if tsplit is not None else (recipe.tsplit or ws.scalar(pl.col("Time").max(), full))
            starts = ws.save(rules.session_starts(full), "starts")
            train_full, test = rules.split_by_start(full, starts, split_time - tday)
            train_full = ws.save(train_full, "train_full")
            train_tr, valid = rules.split_by_start(train_full, starts, split_time - 2 * tday)
        files = {}
        for name, part in zip(FILES, (train_full, test, train_tr, valid)):
            part = ws.save(part, name)
            # sorted one range of sessions at a time; the ranges follow each other in order
            part = ws.per_part(ws.buckets(part, "SessionId", name, ordered=True),
                               lambda p: p.sort(*rules.ORDER).select("SessionId", "ItemId", "Time"), name)
            files[name] = session_file_stats(part, DAY[recipe.unit])
            write_tsv(part, os.path.join(out_dir, name))
    stats = {"recipe": recipe.name, "raw": [os.fspath(p) for p in raw_paths], "time_unit": recipe.unit,
             "tsplit": split_time, "tday": tday, "steps": steps, "files": files}
    write_json(stats, os.path.join(out_dir, "stats.json"))
    return stats


def _sessions(recipe: SessionRecipe, events: pl.LazyFrame, ws: Workspace) -> pl.LazyFrame:
    """The used events as SessionId, ItemId, Time, _row, saved."""
    columns = ("SessionId", "ItemId", "Time", ROW)
    if recipe.sessionize is None:
        return ws.save(events.filter("_keep").rename({"Key": "SessionId"}).select(*columns), "sessions")
    if recipe.sessionize == "kept":
        events = events.filter("_keep")
    # with "all", the gaps count every event, also those the filter drops afterwards
    events = ws.save(events.select("Key", "ItemId", "Time", "_keep", ROW), "users")
    parts, offset = [], 0
    for i, part in enumerate(ws.buckets(events, "Key", "by-user")):  # a user's events stay in one bucket
        part = ws.save(rules.sessionize(part, HOUR[recipe.unit]).with_columns(pl.col("SessionId") + offset), f"sessions{i}")
        offset = ws.scalar(pl.col("SessionId").max(), part) or offset  # session ids run on over the buckets
        parts.append(part)
    return ws.save(pl.concat(parts).filter("_keep").select(*columns), "sessions")


def _nonempty(full: pl.LazyFrame, raw_paths) -> None:
    if Workspace.rows(full) == 0:
        raise DataError(
            f"{', '.join(map(str, raw_paths))}: no events are left after dropping sessions of length 1 and items "
            f"with fewer than 5 events; the raw data is too small or not the file this recipe expects."
        )
