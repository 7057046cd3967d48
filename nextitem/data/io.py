"""Reading event files (TSV, CSV, Parquet, pickled DataFrame) and validating them.

Every problem with the input is reported as a :class:`DataError` that names the file, the column,
the first offending row and what to do about it, instead of a traceback from deep inside pandas.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says where and how to fix it."""


@dataclass(frozen=True)
class Columns:
    """Names of the session, item and time columns (run.py's -sk / -ik / -tk)."""

    session: str = "SessionId"
    item: str = "ItemId"
    time: str = "Time"

    def as_list(self) -> list[str]:
        return [self.session, self.item, self.time]


_TEXT_SUFFIXES = {".tsv": "\t", ".txt": "\t", ".csv": ","}
_PICKLE_SUFFIXES = {".pickle", ".pkl"}


def read_events(path: str | os.PathLike, columns: Columns = Columns()) -> pd.DataFrame:
    """Read an event file and return a validated frame with the three columns of ``columns``.

    Item ids are read as strings from text files (as the official GRU4Rec does), so that the
    training and the test file always agree on their type. Parquet and pickles keep their dtypes.
    A pickled DataFrame is unpickled, which runs code from the file: only read pickles you trust.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file. Check the path (data folders are found through $NEXTITEM_DATA).")
    suffix = os.path.splitext(path)[1].lower()
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty; it needs a header line with {', '.join(columns.as_list())} and events.")
    if suffix in _TEXT_SUFFIXES:
        sep = _TEXT_SUFFIXES[suffix]
        header = _read_header(path, sep)
        _check_columns(path, header, columns)
        try:
            df = pd.read_csv(
                path, sep=sep, usecols=columns.as_list(), dtype={columns.item: str},
                engine="c", low_memory=False, na_filter=True,
            )
        except (ValueError, pd.errors.ParserError) as e:
            raise DataError(f"{path}: could not be parsed as a {'tab' if sep == chr(9) else 'comma'}-separated file: {e}") from None
    elif suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types; all mean "not a readable parquet file"
            raise DataError(f"{path}: could not be read as Parquet: {e}") from None
    elif suffix in _PICKLE_SUFFIXES:
        df = pd.read_pickle(path)
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{path}: the pickle holds a {type(df).__name__}, not a pandas DataFrame.")
    else:
        raise DataError(
            f"{path}: unknown file type {suffix!r}; use .tsv/.txt (tab separated), .csv, .parquet or .pickle/.pkl."
        )
    return validate_events(df, columns, source=path)


def _read_header(path: str, sep: str) -> list[str]:
    # pandas' own header parsing, so that quoted names and a byte-order mark are handled alike
    try:
        return list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: could not read a header line: {e}") from None


def _check_columns(source: str, present, columns: Columns) -> None:
    missing = [c for c in columns.as_list() if c not in present]
    if missing:
        flag = {columns.session: "-sk", columns.item: "-ik", columns.time: "-tk"}
        hints = ", ".join(f"{c!r} (set another name with {flag[c]})" for c in missing)
        raise DataError(f"{source}: missing column {hints}; the columns found are {list(present)}.")


def validate_events(df: pd.DataFrame, columns: Columns = Columns(), source: str = "<DataFrame>") -> pd.DataFrame:
    """Check the columns of an event frame; return it restricted to those three columns.

    Raises :class:`DataError` for a missing column, a missing id, a non-numeric or missing time,
    or an empty frame. Row numbers in messages are 1-based data rows (the header not counted).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}.")
    _check_columns(source, list(df.columns), columns)
    if len(df) == 0:
        raise DataError(f"{source}: has a header but no events.")
    df = df[columns.as_list()]
    for col, what in ((columns.session, "session id"), (columns.item, "item id")):
        bad = df[col].isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: column {col!r} has a missing {what} in data row {row + 1} "
                f"({int(bad.sum())} rows in all); drop or fill those rows."
            )
    t = df[columns.time]
    if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t):
        num = pd.to_numeric(t, errors="coerce")
        bad = num.isna().to_numpy() & t.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: column {columns.time!r} must be numeric (a unix time or an ordinal); "
                f"data row {row + 1} holds {t.iloc[row]!r}. Convert dates to numbers first, "
                f"e.g. pd.to_datetime(df[{columns.time!r}]).astype('int64') // 10**9."
            )
        df = df.assign(**{columns.time: num})
        t = df[columns.time]
    bad = t.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column {columns.time!r} is missing in data row {row + 1}; drop or fill those rows.")
    return df


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash or a kill mid-write never leaves a half-written file at ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        # mkstemp makes it 0600 (and some writers, safetensors', recreate it so): the result
        # should read like any new file
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def read_tensor_file(path: str | os.PathLike, what: str = "nextitem model") -> tuple[dict, dict]:
    """Tensors and string metadata of a safetensors file; reads data only, runs no code from it."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such {what} file.")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(path), meta
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a {what} file (expected safetensors written by nextitem): {e}") from None
