"""User histories for sequential models, and the leave-one-out split.

A dataset folder is either the layout of ``../shared/data/sequences`` (``interactions.tsv`` with
UserId / ItemId / Time, and optionally ``items.tsv`` with item text) or a set of RecBole atomic
files (``NAME.inter`` with typed headers such as ``user_id:token``, optionally ``NAME.item``).

Histories are held like sessions: int32 item indices grouped by user, plus int64 offsets.
Events with equal timestamps keep their file order. They are never ordered by item id: that
tie-break turns arbitrary id patterns into signal and inflated NDCG by ~20% in LRURec/LlamaRec.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .io import DataError
from .sessions import ItemVocab, SessionData


@dataclass
class HistoryData:
    """Every user's items in time order: ``items[offsets[u]:offsets[u + 1]]``."""

    items: np.ndarray  # int32 indices into vocab
    offsets: np.ndarray  # int64, n_users + 1
    vocab: ItemVocab
    user_ids: np.ndarray
    item_text: pd.DataFrame | None = None  # indexed by raw item id
    source: str = "<DataFrame>"

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    @property
    def n_events(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def history(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def titles(self) -> list[str] | None:
        """Item titles in index order (None when the dataset has no item text)."""
        if self.item_text is None:
            return None
        column = next((c for c in ("title", "movie_title", "name") if c in self.item_text.columns), None)
        if column is None:
            return None
        text = self.item_text[column].reindex(self.vocab.ids)
        return text.fillna("").astype(str).tolist()

    @classmethod
    def from_frame(cls, df: pd.DataFrame, user: str = "UserId", item: str = "ItemId", time: str = "Time",
                   source: str = "<DataFrame>", item_text: pd.DataFrame | None = None) -> "HistoryData":
        for column in (user, item, time):
            if column not in df.columns:
                raise DataError(f"{source}: no column {column!r} (columns are {list(df.columns)}). "
                                "Name the user, item and time columns, or rename them in the file.")
        for column in (user, item):
            missing = df[column].isna().to_numpy()
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise DataError(f"{source}: column {column!r} is empty at data row {row + 1}; every interaction needs a {column}.")
        times = pd.to_numeric(df[time], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(times)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source}: column {time!r} has a non-numeric value {df[time].iloc[row]!r} at data row {row + 1}; "
                            "times must be numbers (unix time or an ordinal).")
        if len(df) == 0:
            raise DataError(f"{source}: no interactions.")
        vocab, codes = ItemVocab.from_values(df[item].to_numpy())
        user_codes, user_uniques = pd.factorize(df[user].to_numpy(), sort=False)
        # Stable sort by (user, time): ties keep file order, never item order.
        perm = np.lexsort((times, user_codes))
        counts = np.bincount(user_codes, minlength=len(user_uniques))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(items=np.ascontiguousarray(codes[perm], dtype=np.int32), offsets=offsets, vocab=vocab,
                   user_ids=np.asarray(user_uniques), item_text=item_text, source=source)


def _recbole_frame(path: str) -> pd.DataFrame:
    """A RecBole atomic file: headers ``name:type`` (token, token_seq, float, float_seq)."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""], quoting=3)
    renamed = {}
    for column in df.columns:
        name, _, kind = column.partition(":")
        if kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(f"{path}: header field {column!r} is not 'name:type' with type token, token_seq, float or float_seq "
                            "(RecBole atomic file format).")
        renamed[column] = name
    return df.rename(columns=renamed)


def _pick(path: str, columns, wanted: tuple[str, ...], role: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise DataError(f"{path}: no {role} column; looked for {', '.join(wanted)} among {list(columns)}.")


def read_histories(folder: str | os.PathLike, min_rating: float | None = None) -> HistoryData:
    """Read a dataset folder: ``interactions.tsv`` (+ ``items.tsv``) or RecBole ``*.inter`` (+ ``*.item``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such dataset folder. It should hold interactions.tsv (UserId, ItemId, Time) "
                        "or RecBole atomic files (NAME.inter). Data folders are found through $NEXTITEM_DATA.")
    tsv = os.path.join(folder, "interactions.tsv")
    inter = sorted(glob.glob(os.path.join(folder, "*.inter")))
    if os.path.exists(tsv):
        df = pd.read_csv(tsv, sep="\t", dtype={"UserId": str, "ItemId": str})
        items_path = os.path.join(folder, "items.tsv")
        text = pd.read_csv(items_path, sep="\t", dtype={"ItemId": str}).set_index("ItemId") if os.path.exists(items_path) else None
        user, item, time, source = "UserId", "ItemId", "Time", tsv
        if min_rating is not None and "Rating" in df.columns:
            df = df[pd.to_numeric(df["Rating"]) >= min_rating]
    elif inter:
        if len(inter) > 1:
            raise DataError(f"{folder}: several .inter files ({', '.join(map(os.path.basename, inter))}); keep one per folder.")
        source = inter[0]
        df = _recbole_frame(source)
        user = _pick(source, df.columns, ("user_id", "uid", "user"), "user")
        item = _pick(source, df.columns, ("item_id", "iid", "item"), "item")
        time = _pick(source, df.columns, ("timestamp", "time", "ts"), "timestamp")
        if min_rating is not None:
            rating = _pick(source, df.columns, ("rating", "score"), "rating")
            df = df[pd.to_numeric(df[rating]) >= min_rating]
        item_file = source[:-len(".inter")] + ".item"
        text = None
        if os.path.exists(item_file):
            text = _recbole_frame(item_file)
            text = text.set_index(_pick(item_file, text.columns, ("item_id", "iid", "item"), "item"))
    else:
        raise DataError(f"{folder}: found neither interactions.tsv nor a RecBole .inter file.")
    return HistoryData.from_frame(df.reset_index(drop=True), user, item, time, source=source, item_text=text)


@dataclass
class Split:
    """Inputs and targets of one evaluation split: ``inputs[i]`` is the history fed to the model,
    ``targets[i]`` the item to rank, ``users[i]`` the user index."""

    users: np.ndarray
    inputs: list[np.ndarray]
    targets: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class LeaveOneOut:
    """Last item of each user = test, the one before it = validation, the rest = training.

    Test input is training history plus the validation item (the protocol of SASRec, BERT4Rec and
    LRURec). Users with fewer than 3 items only train, as in LRURec.
    """

    data: HistoryData
    train: list[np.ndarray]  # per user
    valid: Split
    test: Split

    @property
    def n_items(self) -> int:
        return self.data.n_items

    @classmethod
    def from_histories(cls, data: HistoryData) -> "LeaveOneOut":
        lengths = data.lengths()
        evaluated = np.flatnonzero(lengths >= 3)
        train = [data.history(u)[:-2] if lengths[u] >= 3 else data.history(u) for u in range(data.n_users)]
        valid = Split(users=evaluated, inputs=[train[u] for u in evaluated],
                      targets=np.array([data.history(u)[-2] for u in evaluated], dtype=np.int64), name="valid")
        test = Split(users=evaluated, inputs=[data.history(u)[:-1] for u in evaluated],
                     targets=np.array([data.history(u)[-1] for u in evaluated], dtype=np.int64), name="test")
        return cls(data=data, train=train, valid=valid, test=test)

    def train_sessions(self) -> SessionData:
        """The training histories as sessions (one per user, same item indices), for GRU4Rec."""
        lengths = np.array([len(h) for h in self.train], dtype=np.int64)
        keep = np.flatnonzero(lengths > 0)
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(lengths[keep], out=offsets[1:])
        items = np.concatenate([self.train[u] for u in keep]).astype(np.int32)
        return SessionData(items=items, offsets=offsets, order=np.arange(len(keep), dtype=np.int64), vocab=self.data.vocab,
                           session_ids=self.data.user_ids[keep], source=self.data.source)
