"""Reading raw text files with Polars, and the temporary Parquet stages a recipe goes through.

Every recipe is a chain of lazy queries. Between steps the result is streamed to a Parquet file
in a temporary folder (``Workspace.save``) and scanned again, so an iterative filter does not
rebuild an ever longer query plan. Filters and group-bys stream (their memory grows with the
number of sessions, users or items, not of events); a semi-join of the events with a query on
themselves does not (session_rules.keep_rows_with says what is used instead). The steps that
need the events in order (sessions, repeats, the written files) sort one bucket of sessions or
users at a time (``Workspace.buckets``), so memory holds about ROWS_PER_BUCKET rows, not the
whole data.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Mapping

import polars as pl

from ..io import DataError

ROW = "_row"  # 0-based data-row number in the raw file(s): the tie-break for equal timestamps
ROWS_PER_BUCKET = 10_000_000  # rows sorted in memory at once (about 1 GB)


@dataclass(frozen=True)
class Field:
    """One column a recipe reads: the header names it accepts, how its text is parsed, and when it is required."""

    aliases: tuple[str, ...]
    parse: Callable[[pl.Expr], pl.Expr] = lambda text: text  # text -> value; null where it cannot be parsed
    what: str = "a value"                                    # for messages: "an integer", "a date like 2016-05-09"
    required: str = "all"                                    # "all" rows, only "kept" events, or "none"


@dataclass(frozen=True)
class RawFormat:
    """A delimited raw file: its separator, the fields read from it and the event filter."""

    separator: str
    fields: Mapping[str, Field]
    names: tuple[str, ...] | None = None         # column names of a file without a header line
    keep: Callable[[], pl.Expr] | None = None    # which events are used, on the parsed fields
    description: str = ""                        # what the file is, for messages


def as_int(text: pl.Expr) -> pl.Expr:
    return text.str.strip_chars().cast(pl.Int64, strict=False)


def as_float(text: pl.Expr) -> pl.Expr:
    return text.str.strip_chars().cast(pl.Float64, strict=False)


def epoch_ms(fmt: str) -> Callable[[pl.Expr], pl.Expr]:
    """Parse a UTC date-time text with ``fmt`` (chrono specifiers) to integer milliseconds."""
    return lambda text: text.str.to_datetime(fmt, time_unit="ms", strict=False).dt.epoch("ms")


def date_ms(text: pl.Expr) -> pl.Expr:
    """A YYYY-MM-DD date to the milliseconds of its midnight (UTC)."""
    return text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ms")).dt.epoch("ms")


def read_header(path: str, separator: str) -> list[str]:
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file. Check the path given with --raw.")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty.")
    try:
        return pl.scan_csv(path, separator=separator, infer_schema=False, n_rows=0).collect_schema().names()
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: could not read a header line: {e}") from None


def _resolve(path: str, fmt: RawFormat) -> dict[str, str]:
    """Map each field to the column of the file that holds it; a DataError naming what is missing otherwise."""
    if fmt.names is not None:
        present = list(fmt.names)
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file. Check the path given with --raw.")
    else:
        present = read_header(path, fmt.separator)
    found, missing = {}, []
    for name, f in fmt.fields.items():
        hit = next((a for a in f.aliases if a in present), None)
        if hit is None:
            missing.append(" or ".join(repr(a) for a in f.aliases))
        found[name] = hit
    if missing:
        sep = {"\t": "tab", ",": "comma", ";": "semicolon"}.get(fmt.separator, repr(fmt.separator))
        raise DataError(
            f"{path}: missing column {', '.join(missing)}; the columns found are {present}. "
            f"This recipe expects {fmt.description or 'another file'} ({sep} separated)."
        )
    return found


def scan_raw(path: str, fmt: RawFormat, ws: "Workspace", row_offset: int = 0) -> tuple[pl.LazyFrame, int]:
    """Read one raw file into a Parquet stage of parsed fields plus ``_keep`` and ``_row``; checked.

    Every used column is read as text and parsed here, so that a bad value is reported with its
    file, column and row instead of a parser error. Returns the stage and the file's row count.
    """
    columns = _resolve(path, fmt)
    raw = pl.scan_csv(
        path, separator=fmt.separator, has_header=fmt.names is None, new_columns=list(fmt.names) if fmt.names else None,
        infer_schema=False, row_index_name=ROW, truncate_ragged_lines=True,
    )
    parsed = raw.select(pl.col(ROW).cast(pl.Int64) + row_offset, *[f.parse(pl.col(columns[name])).alias(name) for name, f in fmt.fields.items()])
    keep = fmt.keep() if fmt.keep is not None else pl.lit(True)
    parsed = parsed.with_columns(_keep=keep.fill_null(False))
    try:
        stage = ws.save(parsed, os.path.basename(path))
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: could not be read as a {fmt.description or 'delimited text file'}: {e}") from None
    _check(path, stage, raw, fmt, columns, row_offset)
    return stage, ws.rows(stage)


def _check(path: str, stage: pl.LazyFrame, raw: pl.LazyFrame, fmt: RawFormat, columns: dict[str, str], row_offset: int) -> None:
    """Raise a DataError for the first row whose required field is missing or unparseable (one pass for all fields)."""
    bad = {name: pl.col(name).is_null() & (pl.col("_keep") if f.required == "kept" else pl.lit(True))
           for name, f in fmt.fields.items() if f.required != "none"}
    found = stage.select(
        *[cond.sum().alias(f"n_{name}") for name, cond in bad.items()],
        *[pl.col(ROW).filter(cond).min().alias(f"first_{name}") for name, cond in bad.items()],
    ).collect(engine="streaming").row(0, named=True)
    for name in bad:
        if found[f"n_{name}"]:
            row = int(found[f"first_{name}"]) - row_offset
            text = raw.filter(pl.col(ROW) == row).select(columns[name]).collect().item()
            f = fmt.fields[name]
            problem = "is empty" if text is None else f"holds {text!r}, which is not {f.what}"
            raise DataError(
                f"{path}: column {columns[name]!r} in data row {row + 1} {problem} "
                f"({found[f'n_{name}']} such rows in all); fix or drop those rows."
            )


@dataclass
class Workspace:
    """A temporary folder inside the output folder for the Parquet stages; removed on exit."""

    out_dir: str
    _dir: str = field(init=False, default="")
    _n: int = field(init=False, default=0)
    _files: dict = field(init=False, default_factory=dict)  # id(scan) -> (scan, its Parquet file)

    def __enter__(self) -> "Workspace":
        os.makedirs(self.out_dir, exist_ok=True)
        # inside out_dir: the same disk as the results, which must hold data of this size anyway
        self._dir = tempfile.mkdtemp(dir=self.out_dir, prefix=".prepare-")
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _path(self, name: str) -> str:
        self._n += 1
        return os.path.join(self._dir, f"{self._n:03d}-{name}")

    def save(self, lf: pl.LazyFrame, name: str) -> pl.LazyFrame:
        """Stream ``lf`` to a Parquet file and return a scan of it."""
        path = self._path(name) + ".parquet"
        lf.sink_parquet(path)
        scan = pl.scan_parquet(path)
        self._files[id(scan)] = (scan, path)
        return scan

    def discard(self, scan: pl.LazyFrame) -> None:
        """Delete the file of a stage returned by ``save`` once nothing reads it any more (saves disk in loops)."""
        _, path = self._files.pop(id(scan))
        os.remove(path)

    def buckets(self, stage: pl.LazyFrame, key: str, name: str, ordered: bool = False) -> list[pl.LazyFrame]:
        """A saved ``stage`` split in one streaming pass into parts of about ROWS_PER_BUCKET rows.

        All rows with the same ``key`` (a session, a user) land in the same part, so a step that
        sorts within sessions or users can run on one part at a time. With ``ordered`` the parts
        are increasing ranges of the integer ``key``: parts sorted by it concatenate into a sorted
        whole. Otherwise the key is hashed. Small data is one part, the stage itself.
        """
        n = -(-self.rows(stage) // ROWS_PER_BUCKET)
        if n <= 1:
            return [stage]
        if ordered:
            lo, hi = stage.select(pl.col(key).min().alias("lo"), pl.col(key).max().alias("hi")).collect(engine="streaming").row(0)
            bucket = (pl.col(key) - lo) * n // (hi - lo + 1)
        else:
            bucket = pl.col(key).hash(seed=0) % n
        folder = self._path(name)
        # PartitionBy writes one Hive-style folder per value: folder/_bucket=3/*.parquet
        stage.with_columns(_bucket=bucket).sink_parquet(pl.PartitionBy(folder, key="_bucket", include_key=False))
        parts = [os.path.join(folder, f"_bucket={b}") for b in range(n)]
        return [pl.scan_parquet(os.path.join(p, "*.parquet")) for p in parts if os.path.isdir(p)]

    def per_part(self, parts: list[pl.LazyFrame], step: Callable[[pl.LazyFrame], pl.LazyFrame], name: str) -> pl.LazyFrame:
        """``step`` run and saved on one part after the other; the results as one frame, in part order."""
        return pl.concat([self.save(step(part), f"{name}{i}") for i, part in enumerate(parts)])

    def until_stable(self, events: pl.LazyFrame, step: Callable[[pl.LazyFrame], pl.LazyFrame], name: str) -> tuple[pl.LazyFrame, int]:
        """Apply ``step`` again and again until the row count stops changing; the result and the number of rounds."""
        n, rounds = self.rows(events), 0
        while True:
            rounds += 1
            result = self.save(step(events), f"{name}{rounds}")
            if rounds > 1:  # the caller's own stage is left alone
                self.discard(events)
            events, before, n = result, n, self.rows(result)
            if n == before:
                return events, rounds

    @staticmethod
    def rows(lf: pl.LazyFrame) -> int:
        return lf.select(pl.len()).collect(engine="streaming").item()

    @staticmethod
    def scalar(expr: pl.Expr, lf: pl.LazyFrame):
        return lf.select(expr).collect(engine="streaming").item()

