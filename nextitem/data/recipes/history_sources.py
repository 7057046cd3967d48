"""Raw user-history files: Amazon reviews, MovieLens and RecBole atomic files.

Each reader returns a ``History``: the interactions as User, Item (raw ids, text), Rating, Timestamp
and ``_row`` (the raw row number, the tie-break for equal timestamps), and the item texts as Item,
title (and genres where the data has them), or None.
"""
from __future__ import annotations

import ast
import gzip
import json
import os
import re
from dataclasses import dataclass

import polars as pl

from ..io import DataError
from .workspace import Field, RawFormat, Workspace, as_float, read_header, scan_raw


@dataclass
class History:
    events: pl.LazyFrame          # User, Item, Rating (null when the data has none), Timestamp, _row
    items: pl.LazyFrame | None    # Item, title[, genres]
    raw_id: str                   # name of the raw item-id column in items.tsv ("asin", "MovieId", ...)
    n_raw: int                    # rows read


def _fields(user, item, rating, timestamp) -> dict[str, Field]:
    fields = {"User": Field(user), "Item": Field(item), "Timestamp": Field(timestamp, as_float, "a number (a unix time)")}
    if rating:
        fields["Rating"] = Field(rating, as_float, "a number")
    return fields


def _events(stage: pl.LazyFrame) -> pl.LazyFrame:
    has_rating = "Rating" in stage.collect_schema().names()
    rating = pl.col("Rating") if has_rating else pl.lit(None, pl.Float64).alias("Rating")
    return stage.select("User", "Item", rating, "Timestamp", "_row")


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _split_paths(paths, is_items, recipe: str, expected: str) -> tuple[str, str | None]:
    """(the interactions file, the item file or None) among ``paths``."""
    items = [p for p in paths if is_items(p)]
    inter = [p for p in paths if not is_items(p)]
    if len(inter) != 1 or len(items) > 1:
        raise DataError(f"the {recipe} recipe reads {expected}; got {list(paths)}.")
    return inter[0], (items[0] if items else None)


# ---- Amazon reviews: ratings CSV (user,item,rating,timestamp) + metadata JSON lines (asin, title) ----

_AMAZON_FIELDS = _fields(("user", "user_id", "reviewerID"), ("item", "asin", "parent_asin", "item_id"),
                         ("rating", "overall"), ("timestamp", "unixReviewTime", "time"))


_ASIN = re.compile(r"^(B[0-9A-Z]{9}|[0-9]{9}[0-9X])$")


def amazon(paths, ws: Workspace) -> History:
    ratings, meta = _split_paths(paths, lambda p: ".json" in os.path.basename(p), "amazon",
                                 "a ratings CSV (user,item,rating,timestamp) and optionally a metadata file (*.json, *.jsonl, *.json.gz)")
    with _open_text(ratings) as f:
        head = [line.rstrip("\r\n").split(",") for _, line in zip(range(2000), f)]
    first = head[0] if head else []
    headerless = len(first) == 4 and _is_number(first[3])  # the Amazon "ratings only" files have no header line
    names = None
    if headerless:
        # The 2014 release writes user,item,...; the 2018 one item,user,... The item is the column
        # of ASINs (10 characters: B + 9 letters/digits, or an ISBN-10); reviewer ids are not.
        asin_share = [sum(bool(_ASIN.match(row[c])) for row in head if len(row) == 4) for c in (0, 1)]
        names = ("item", "user", "rating", "timestamp") if asin_share[0] > asin_share[1] else ("user", "item", "rating", "timestamp")
    fmt = RawFormat(",", _AMAZON_FIELDS, names=names,
                    description=f"Amazon ratings CSV ({','.join(names) if names else 'user,item,rating,timestamp'})")
    stage, n = scan_raw(ratings, fmt, ws)
    items = ws.save(amazon_titles(meta).lazy(), "titles") if meta else None
    return History(_events(stage), items, "asin", n)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def amazon_titles(path: str) -> pl.DataFrame:
    """asin -> title from a metadata file: JSON lines, or the Python-literal lines of the 2014 release."""
    ids, titles = [], []
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                try:
                    record = ast.literal_eval(line)  # safe: literals only, no code runs
                except (ValueError, SyntaxError):
                    raise DataError(f"{path}: line {n} is neither JSON nor a Python dict literal: {line[:80]!r}") from None
            item = record.get("asin", record.get("parent_asin")) if isinstance(record, dict) else None
            if item is None:
                raise DataError(f"{path}: line {n} has no 'asin' (or 'parent_asin'); is this an Amazon metadata file?")
            title = record.get("title")
            ids.append(str(item))
            titles.append(title if isinstance(title, str) else None)
    return pl.DataFrame({"Item": ids, "title": titles}, schema={"Item": pl.String, "title": pl.String})


# ---- MovieLens: ratings.dat (UserID::MovieID::Rating::Timestamp) or ratings.csv, + movies.dat / movies.csv ----

_ML_FIELDS = _fields(("user", "userId"), ("item", "movieId"), ("rating",), ("timestamp",))
# '::' is not a one-byte separator: splitting on ':' gives the four numbers with empty columns between
_ML_DAT = RawFormat(":", _ML_FIELDS, names=("user", "_1", "item", "_2", "rating", "_3", "timestamp"),
                    description="MovieLens ratings.dat (UserID::MovieID::Rating::Timestamp)")
_ML_CSV = RawFormat(",", _ML_FIELDS, description="MovieLens ratings.csv (userId,movieId,rating,timestamp)")


def movielens(paths, ws: Workspace) -> History:
    ratings, movies = _split_paths(paths, lambda p: os.path.basename(p).startswith("movies"), "movielens",
                                   "ratings.dat or ratings.csv and optionally movies.dat / movies.csv")
    stage, n = scan_raw(ratings, _ML_DAT if ratings.endswith(".dat") else _ML_CSV, ws)
    items = ws.save(movielens_titles(movies).lazy(), "titles") if movies else None
    return History(_events(stage), items, "MovieId", n)


def movielens_titles(path: str) -> pl.DataFrame:
    if not path.endswith(".dat"):
        header = read_header(path, ",")
        if "movieId" not in header or "title" not in header:
            raise DataError(f"{path}: expected the columns movieId,title,genres; found {header}.")
        df = pl.read_csv(path, infer_schema=False)
        return df.select(pl.col("movieId").alias("Item"), "title", *(["genres"] if "genres" in df.columns else []))
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # ML-1M's movies.dat is ISO-8859-1
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            parts = line.split("::")
            if len(parts) != 3:
                raise DataError(f"{path}: line {n} is not MovieID::Title::Genres: {line[:80]!r}")
            rows.append(parts)
    return pl.DataFrame(rows, schema={"Item": pl.String, "title": pl.String, "genres": pl.String}, orient="row")


# ---- RecBole atomic files: NAME.inter (user_id:token item_id:token rating:float timestamp:float) [+ NAME.item] ----

def recbole(paths, ws: Workspace) -> History:
    inter, item_file = _split_paths(paths, lambda p: p.endswith(".item"), "recbole",
                                    "one .inter file and optionally its .item file")
    typed = {h.split(":")[0]: h for h in read_header(inter, "\t")}  # "user_id:token" -> base name "user_id"
    missing = [f for f in ("user_id", "item_id", "timestamp") if f not in typed]
    if missing:
        raise DataError(f"{inter}: missing field {', '.join(map(repr, missing))}; the fields found are "
                        f"{list(typed.values())}. A RecBole .inter file needs user_id, item_id and timestamp.")
    rating = (typed["rating"],) if "rating" in typed else None
    fields = _fields((typed["user_id"],), (typed["item_id"],), rating, (typed["timestamp"],))
    stage, n = scan_raw(inter, RawFormat("\t", fields, description="RecBole .inter file"), ws)
    items = ws.save(recbole_titles(item_file).lazy(), "titles") if item_file else None
    return History(_events(stage), items, "item_id", n)


def recbole_titles(path: str) -> pl.DataFrame:
    header = read_header(path, "\t")
    base = [h.split(":")[0] for h in header]
    title = next((h for h, b in zip(header, base) if "title" in b), None)
    if "item_id" not in base or title is None:
        raise DataError(f"{path}: a RecBole .item file needs an item_id field and a title field (e.g. movie_title:token_seq); found {header}.")
    df = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    return df.select(pl.col(header[base.index("item_id")]).alias("Item"), pl.col(title).alias("title"))
