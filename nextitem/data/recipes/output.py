"""Writing a recipe's results: tab-separated files and stats.json, each renamed into place only when complete."""
from __future__ import annotations

import json

import polars as pl

from ..io import atomic_write


def write_tsv(lf: pl.LazyFrame, path: str) -> None:
    """Stream ``lf`` to a tab-separated file with a header line (atomic: no half-written file on a crash)."""
    atomic_write(path, lambda tmp: lf.sink_csv(tmp, separator="\t", float_scientific=False))


def write_json(obj, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def session_file_stats(lf: pl.LazyFrame, units_per_day: int) -> dict:
    """Events, sessions, items and the time span of a SessionId/ItemId/Time frame."""
    row = lf.select(
        events=pl.len(), sessions=pl.col("SessionId").n_unique(), items=pl.col("ItemId").n_unique(),
        time_min=pl.col("Time").min(), time_max=pl.col("Time").max(),
    ).collect().row(0, named=True)
    span = (row["time_max"] - row["time_min"]) / units_per_day if row["events"] else 0.0
    return {**row, "days": round(span, 4)}

