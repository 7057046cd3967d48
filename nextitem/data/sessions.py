"""Sessions held as compact arrays: item indices grouped by session, and session offsets.

No per-event Python objects: 30M events cost 4 bytes each for the item index plus 8 bytes per
session for the offsets (and transiently the time column while sorting).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .io import Columns, DataError, validate_events


@dataclass
class ItemVocab:
    """Raw item id <-> contiguous index 0..n-1, in order of first appearance in the training data."""

    ids: pd.Index

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_values(cls, values) -> tuple["ItemVocab", np.ndarray]:
        codes, uniques = pd.factorize(values, sort=False)
        return cls(pd.Index(uniques)), codes.astype(np.int32)

    def index_of(self, values) -> np.ndarray:
        """Indices of ``values``; -1 where an id is not in the vocabulary."""
        values, ids = pd.Index(values), self.ids
        if _is_str(values) != _is_str(ids):
            # e.g. a test file read as text against a model trained on integer ids from a DataFrame
            values, ids = values.astype(str), ids.astype(str)
        return ids.get_indexer(values).astype(np.int32)

    def to_ids(self, indices) -> np.ndarray:
        return self.ids.to_numpy()[np.asarray(indices)]

    def to_tensors(self, prefix: str = "vocab.") -> tuple[dict[str, torch.Tensor], str]:
        """The ids as tensors for a safetensors file (no pickles): int64, or UTF-8 bytes + offsets."""
        ids = self.ids
        if pd.api.types.is_integer_dtype(ids.dtype):
            return {prefix + "int": torch.from_numpy(np.array(ids, dtype=np.int64))}, "int"  # a writable copy
        encoded = [str(x).encode("utf-8") for x in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        return {prefix + "utf8": torch.from_numpy(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()),
                prefix + "offsets": torch.from_numpy(offsets)}, "str"

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], kind: str, prefix: str = "vocab.") -> "ItemVocab":
        """Inverse of :meth:`to_tensors`; pops its entries from ``tensors``."""
        if kind == "int":
            return cls(pd.Index(tensors.pop(prefix + "int").numpy()))
        raw = tensors.pop(prefix + "utf8").numpy().tobytes()
        off = tensors.pop(prefix + "offsets").numpy()
        return cls(pd.Index([raw[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])], dtype=str))


def _is_str(index: pd.Index) -> bool:
    return pd.api.types.is_string_dtype(index.dtype) or index.dtype == object


@dataclass
class SessionData:
    """Events grouped by session.

    ``items[offsets[s]:offsets[s+1]]`` are the item indices of session ``s`` in time order;
    ``order`` lists the sessions by their first timestamp, oldest first (ties: file order),
    which is the order in which GRU4Rec trains and evaluates them.
    """

    items: np.ndarray  # int32, n_events
    offsets: np.ndarray  # int64, n_sessions + 1
    order: np.ndarray  # int64, n_sessions
    vocab: ItemVocab
    session_ids: np.ndarray  # raw id of each session
    n_unseen: int = 0  # events dropped because their item is not in the vocabulary
    source: str = "<DataFrame>"

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    def session_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def n_predictions(self) -> int:
        """Next-item predictions in this data: every event but the last of each session."""
        return int(np.maximum(self.session_lengths() - 1, 0).sum())

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        columns: Columns = Columns(),
        vocab: ItemVocab | None = None,
        source: str = "<DataFrame>",
        require_predictions: bool = True,
    ) -> "SessionData":
        """Group a validated event frame into sessions.

        Without ``vocab`` the vocabulary is built from this data (training). With it (test data),
        events whose item is unknown are dropped and their session is stitched around them, as the
        official GRU4Rec evaluation does; the number dropped is kept in ``n_unseen``.
        """
        df = validate_events(df, columns, source)
        if vocab is None:
            vocab, codes = ItemVocab.from_values(df[columns.item].to_numpy())
        else:
            codes = vocab.index_of(df[columns.item])
        keep = codes >= 0
        n_unseen = int((~keep).sum())
        sess_codes, sess_uniques = pd.factorize(df[columns.session].to_numpy(), sort=False)
        times = df[columns.time].to_numpy(dtype=np.float64)
        if n_unseen:
            codes, sess_codes, times = codes[keep], sess_codes[keep], times[keep]
        # Group by session and order by time within it. lexsort is stable, so events with equal
        # times keep their file order; skip the sort when the file is already sorted.
        if len(codes) > 1 and not _is_grouped_and_sorted(sess_codes, times):
            perm = np.lexsort((times, sess_codes))
            codes, sess_codes, times = codes[perm], sess_codes[perm], times[perm]
        counts = np.bincount(sess_codes, minlength=len(sess_uniques))
        present = np.flatnonzero(counts > 0)  # sessions emptied by dropping unseen items disappear
        if len(present) != len(sess_uniques):
            remap = np.full(len(sess_uniques), -1, dtype=np.int64)
            remap[present] = np.arange(len(present))
            sess_codes = remap[sess_codes]
            counts = counts[present]
            sess_uniques = sess_uniques[present]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = times[offsets[:-1]] if len(codes) else np.zeros(0)
        order = np.argsort(starts, kind="stable").astype(np.int64)
        data = cls(
            items=np.ascontiguousarray(codes, dtype=np.int32), offsets=offsets, order=order, vocab=vocab,
            session_ids=np.asarray(sess_uniques), n_unseen=n_unseen, source=source,
        )
        if require_predictions and data.n_predictions() == 0:
            raise DataError(
                f"{source}: no session has more than one event{' with an item known to the model' if n_unseen else ''}, "
                "so there is nothing to predict. Check the session column (-sk) or the file."
            )
        return data


def _is_grouped_and_sorted(sess_codes: np.ndarray, times: np.ndarray) -> bool:
    # factorize numbers sessions by first appearance, so grouped data has non-decreasing codes
    ds = np.diff(sess_codes)
    if (ds < 0).any() or (ds > 1).any():
        return False
    same = ds == 0
    return bool((np.diff(times)[same] >= 0).all())
