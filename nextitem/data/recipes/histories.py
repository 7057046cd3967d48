"""User-history recipes: min_rating, an iterative k-core (min_uc, min_sc), then each user's chronological order.

Output in the layout of ``sequences/``: interactions.tsv (UserId, ItemId, Time) where Time is the
position 1..n in the user's history, and items.tsv (ItemId, the raw id, title[, genres]).
Timestamp ties keep the raw-file row order, never the item-id order (sorting ties by item id leaks
an increasing-id pattern into leave-one-out; see the sequential reference notes, section 3).
Users and items are numbered from 1 in the order of their raw ids, which has nothing to do with the
histories (ids given in order of appearance would leak too, as P5's did).
"""
from __future__ import annotations

import os

import polars as pl

from ..io import DataError
from . import history_sources as sources
from .output import write_json, write_tsv
from .session_rules import keep_frequent
from .workspace import ROW, Workspace

HISTORY_RECIPES = {"amazon": sources.amazon, "movielens": sources.movielens, "recbole": sources.recbole}
HISTORY_RAW = {
    "amazon": "ratings CSV (user,item,rating,timestamp) [metadata *.json(.gz) with asin, title]",
    "movielens": "ratings.dat or ratings.csv [movies.dat or movies.csv]",
    "recbole": "NAME.inter [NAME.item]",
}
HISTORY_OPTIONS = ("min_rating", "min_uc", "min_sc", "drop_untitled")


def k_core(events: pl.LazyFrame, ws: Workspace, min_uc: int, min_sc: int) -> tuple[pl.LazyFrame, int]:
    """Drop items with fewer than ``min_sc`` and users with fewer than ``min_uc`` interactions until both hold.

    A single pass is not a k-core: dropping users takes items below min_sc again, and so on.
    The fixed point does not depend on the order of the two filters.
    """
    def step(e):
        if min_sc > 1:
            e = keep_frequent(e, "Item", min_sc)
        return keep_frequent(e, "User", min_uc) if min_uc > 1 else e

    return ws.until_stable(events, step, "kcore")


def chronological(events: pl.LazyFrame) -> pl.LazyFrame:
    """Time = each user's 1-based position, by timestamp and then raw row order."""
    ordered = events.sort("UserId", "Timestamp", ROW)
    return ordered.with_columns(Time=pl.int_range(1, pl.len() + 1).over("UserId"))


def dense_ids(ws: Workspace, events: pl.LazyFrame, column: str, new: str) -> pl.LazyFrame:
    """Number the distinct values of ``column`` 1..n in their raw order (numeric when all are integers)."""
    values = events.select(column).unique()
    numeric = ws.scalar(pl.col(column).cast(pl.Int64, strict=False).is_not_null().all(), values)
    order = pl.col(column).cast(pl.Int64) if numeric else pl.col(column)
    return ws.save(values.sort(order).with_row_index(new, offset=1).with_columns(pl.col(new).cast(pl.Int64)), new)


def run_history_recipe(name: str, raw_paths: list[str], out_dir: str, min_rating: float = 0, min_uc: int = 5,
                       min_sc: int = 5, drop_untitled: bool = True) -> dict:
    """Prepare ``raw_paths`` with the history recipe ``name`` into ``out_dir``; return (and write as stats.json) the statistics.

    Keeps ratings >= ``min_rating``; with item texts given and ``drop_untitled``, drops the items
    without a title first (as LlamaRec does); then the iterative k-core.
    """
    with Workspace(out_dir) as ws:
        history = HISTORY_RECIPES[name](list(raw_paths), ws)
        events, steps = history.events, {"raw rows": history.n_raw}
        if min_rating > 0:
            if ws.scalar(pl.col("Rating").is_null().all(), events):
                raise DataError(f"{raw_paths[0]}: min_rating={min_rating} needs ratings, and this file has no rating column.")
            events = ws.save(events.filter(pl.col("Rating") >= min_rating), "rated")
            steps[f"rating >= {min_rating:g}"] = ws.rows(events)
        titles = None
        if history.items is not None:
            titles = history.items.with_columns(
                # one line per item in items.tsv: tabs and line breaks inside a title become spaces
                title=pl.col("title").str.replace_all(r"\s+", " ").str.strip_chars().replace("", None)
            ).unique("Item", keep="first", maintain_order=True)
            if drop_untitled:
                events = ws.save(events.join(titles.filter(pl.col("title").is_not_null()), on="Item", how="semi"), "titled")
                steps["items with a title"] = ws.rows(events)
        core, rounds = k_core(ws.save(events, "kcore0"), ws, min_uc, min_sc)
        steps[f"after the k-core (min_uc={min_uc}, min_sc={min_sc})"], steps["k-core rounds"] = ws.rows(core), rounds
        if steps[f"after the k-core (min_uc={min_uc}, min_sc={min_sc})"] == 0:
            raise DataError(f"{', '.join(raw_paths)}: no interactions are left after the k-core filter; "
                            f"lower min_uc / min_sc (now {min_uc} / {min_sc}) or min_rating (now {min_rating}).")
        users = dense_ids(ws, core, "User", "UserId")
        items = dense_ids(ws, core, "Item", "ItemId")
        inter = ws.save(core.join(users, on="User").join(items, on="Item").drop("User", "Item", "Rating"), "numbered")
        # ordered one range of users at a time; the ranges follow each other in order
        inter = ws.per_part(ws.buckets(inter, "UserId", "by-user", ordered=True),
                            lambda p: chronological(p).select("UserId", "ItemId", "Time"), "interactions")
        item_table = items.sort("ItemId").select("ItemId", pl.col("Item").alias(history.raw_id))
        if titles is not None:
            item_table = item_table.join(titles.rename({"Item": history.raw_id}), on=history.raw_id, how="left",
                                         maintain_order="left")
        else:
            item_table = item_table.with_columns(title=pl.lit(None, pl.String))
        item_table = ws.save(item_table.sort("ItemId"), "items")
        files = {"interactions.tsv": _history_stats(inter), "items.tsv": _item_stats(item_table)}
        write_tsv(inter, os.path.join(out_dir, "interactions.tsv"))
        write_tsv(item_table, os.path.join(out_dir, "items.tsv"))
    stats = {"recipe": name, "raw": list(raw_paths), "min_rating": min_rating, "min_uc": min_uc, "min_sc": min_sc,
             "steps": steps, "files": files}
    write_json(stats, os.path.join(out_dir, "stats.json"))
    return stats


def _history_stats(inter: pl.LazyFrame) -> dict:
    lengths = inter.group_by("UserId").agg(pl.len().alias("n"))
    row = lengths.select(
        users=pl.len(), interactions=pl.col("n").sum(), min_length=pl.col("n").min(),
        avg_length=pl.col("n").mean(), max_length=pl.col("n").max(),
    ).collect().row(0, named=True)
    items = inter.select(pl.col("ItemId").n_unique()).collect().item()
    return {"users": row["users"], "items": items, "interactions": row["interactions"], "min_length": row["min_length"],
            "avg_length": round(row["avg_length"], 4), "max_length": row["max_length"]}


def _item_stats(items: pl.LazyFrame) -> dict:
    row = items.select(items=pl.len(), titled=pl.col("title").is_not_null().sum()).collect().row(0, named=True)
    return {"items": row["items"], "with title": row["titled"]}
