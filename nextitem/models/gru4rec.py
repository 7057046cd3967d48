"""GRU4Rec (Hidasi et al., ICLR 2016 / CIKM 2018) as the official implementation behaves.

This file holds the config, the network and its scoring, save/load and the live-session API.
How it is trained (session-parallel mini-batches, shared negative samples, BPR-max / XE with logQ,
Adagrad with momentum) lives in :mod:`nextitem.training.gru4rec`.

Embedding modes, as in the official code:
- shared ("constrained", the default): the input vector of item i is row i of the output table Wy;
- separate: an input table E (n_items x ``embedding``; ``embedding="layersize"`` means layers[0]);
- none: one-hot input, i.e. the first GRU layer's input weights are an n_items x 3L table.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import ConfigError, build, to_dict
from ..data import Columns, ItemVocab, SessionData, session_parallel_rounds
from ..data.io import DataError, atomic_write, read_tensor_file

FORMAT = "nextitem.gru4rec/1"


@dataclass
class GRU4RecConfig:
    """Every parameter of the official run.py, with its defaults, plus ``seed``."""

    layers: list[int] = field(default_factory=lambda: [100])
    loss: str = "cross-entropy"
    batch_size: int = 64
    dropout_p_embed: float = 0.0
    dropout_p_hidden: float = 0.0
    learning_rate: float = 0.05
    momentum: float = 0.0
    sample_alpha: float = 0.5
    n_sample: int = 2048
    embedding: Union[int, str] = 0
    constrained_embedding: bool = True
    n_epochs: int = 10
    bpreg: float = 1.0
    elu_param: float = 0.5
    logq: float = 0.0
    seed: int = 42

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"GRU4Rec: {name}={getattr(self, name)!r} {why}")

        if isinstance(self.layers, int):
            self.layers = [self.layers]
        if not self.layers or any(int(x) < 1 for x in self.layers):
            bad("layers", "must be one or more positive sizes, e.g. layers=100 or layers=100/100.")
        if self.loss not in ("cross-entropy", "bpr-max"):
            bad("loss", "is not supported; use 'cross-entropy' or 'bpr-max'.")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1.")
        for name in ("dropout_p_embed", "dropout_p_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1).")
        if self.learning_rate <= 0:
            bad("learning_rate", "must be > 0.")
        if not 0.0 <= self.momentum < 1.0:
            bad("momentum", "must be in [0, 1).")
        if self.n_sample < 0:
            bad("n_sample", "must be >= 0 (0 = in-batch negatives only).")
        if self.n_epochs < 0:
            bad("n_epochs", "must be >= 0.")
        if isinstance(self.embedding, str) and self.embedding != "layersize":
            bad("embedding", "must be an integer size, 0 (none) or 'layersize'.")
        if isinstance(self.embedding, int) and self.embedding < 0:
            bad("embedding", "must be >= 0.")
        if self.elu_param < 0 or self.bpreg < 0 or self.logq < 0:
            bad("elu_param" if self.elu_param < 0 else "bpreg" if self.bpreg < 0 else "logq", "must be >= 0.")

    @property
    def embedding_mode(self) -> str:
        if self.constrained_embedding:
            return "shared"
        return "separate" if self.embedding_size else "none"

    @property
    def embedding_size(self) -> int:
        return self.layers[0] if self.embedding == "layersize" else int(self.embedding)

    @classmethod
    def from_dict(cls, values: dict, source: str = "GRU4Rec parameters") -> "GRU4RecConfig":
        return build(cls, values, source)


def _uniform_blocks(t: torch.Tensor, n_blocks: int, gen: torch.Generator, dim: int = 0) -> None:
    """The reference initialisation: each gate block U(+-sqrt(6 / (rows + cols))) separately."""
    with torch.no_grad():
        for block in t.chunk(n_blocks, dim=dim):
            rows, cols = block.shape
            bound = math.sqrt(6.0 / (rows + cols))
            block.copy_(torch.rand(block.shape, generator=gen, dtype=torch.float32) * (2 * bound) - bound)


class OneHotGRULayer(nn.Module):
    """First layer of the "none" embedding mode: a GRU whose input weights are an item table.

    Uses the original GRU form: candidate = tanh(x_h + (r * h) @ W_h).
    """

    def __init__(self, n_items: int, size: int):
        super().__init__()
        self.size = size
        self.Wx = nn.Parameter(torch.empty(n_items, 3 * size))  # rows are updated sparsely
        self.Wrz = nn.Parameter(torch.empty(size, 2 * size))
        self.Wh = nn.Parameter(torch.empty(size, size))
        self.bias = nn.Parameter(torch.zeros(3 * size))

    def reset_parameters(self, gen: torch.Generator) -> None:
        _uniform_blocks(self.Wx, 3, gen, dim=1)
        _uniform_blocks(self.Wrz, 2, gen, dim=1)
        _uniform_blocks(self.Wh, 1, gen, dim=1)
        nn.init.zeros_(self.bias)

    def forward(self, x_rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``x_rows`` are the gathered rows Wx[items] (the one-hot input times Wx)."""
        L = self.size
        v = x_rows + self.bias
        rz = torch.sigmoid(v[:, : 2 * L] + h @ self.Wrz)
        r, z = rz[:, :L], rz[:, L:]
        cand = torch.tanh(v[:, 2 * L :] + (r * h) @ self.Wh)
        return torch.lerp(h, cand, z)  # (1 - z) * h + z * cand


class GRU4RecNet(nn.Module):
    """The network: input embedding (one of three modes), a stack of GRU layers, item scoring."""

    def __init__(self, config: GRU4RecConfig, n_items: int):
        super().__init__()
        self.config, self.n_items = config, n_items
        layers = list(config.layers)
        self.mode = config.embedding_mode
        # Output side, all modes: item vectors and biases, updated on touched rows only.
        self.Wy = nn.Parameter(torch.empty(n_items, layers[-1]))
        self.By = nn.Parameter(torch.zeros(n_items))
        self.E = None
        self.onehot = None
        if self.mode == "shared":
            in_size = layers[-1]
        elif self.mode == "separate":
            in_size = config.embedding_size
            self.E = nn.Parameter(torch.empty(n_items, in_size))
        else:
            self.onehot = OneHotGRULayer(n_items, layers[0])
            in_size = layers[0]
            layers = layers[1:]
        cells = []
        for size in layers:
            cells.append(nn.GRUCell(in_size, size))
            in_size = size
        self.cells = nn.ModuleList(cells)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gen = torch.Generator().manual_seed(self.config.seed)
        _uniform_blocks(self.Wy, 1, gen)
        nn.init.zeros_(self.By)
        if self.E is not None:
            _uniform_blocks(self.E, 1, gen)
        if self.onehot is not None:
            self.onehot.reset_parameters(gen)
        for cell in self.cells:
            _uniform_blocks(cell.weight_ih, 3, gen)
            _uniform_blocks(cell.weight_hh, 3, gen)
            nn.init.zeros_(cell.bias_ih)
            nn.init.zeros_(cell.bias_hh)

    @property
    def input_table(self) -> nn.Parameter:
        """The table whose rows are the input vectors: Wy, E or the one-hot layer's Wx."""
        if self.mode == "shared":
            return self.Wy
        if self.mode == "separate":
            return self.E
        return self.onehot.Wx

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Item tables: trained on the rows a mini-batch touches, never densely."""
        return [p for p in (self.Wy, self.By, self.E, self.onehot.Wx if self.onehot is not None else None) if p is not None]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def init_hidden(self, batch: int, device=None) -> list[torch.Tensor]:
        return [torch.zeros(batch, size, device=device) for size in self.config.layers]

    def step(self, x_rows: torch.Tensor, H: list[torch.Tensor], dropout=None, cell_fn=None) -> torch.Tensor:
        """Advance the hidden state one event; returns the last layer's output.

        ``x_rows`` are the rows of :attr:`input_table` for the current items. ``H`` is updated in
        place (list items replaced). In training, ``dropout(x, p)`` is applied to the embedding and to
        each layer's output, and the dropped-out state is what is carried on, as in the reference;
        ``cell_fn(cell, x, h)``, if given, replaces ``cell(x, h)`` (training's faster GRU cell).
        """
        cfg = self.config
        if self.onehot is not None:
            x = self.onehot(x_rows, H[0])
        else:
            x = x_rows
        if dropout is not None and cfg.dropout_p_embed > 0:
            x = dropout(x, cfg.dropout_p_embed)
        offset = 0
        if self.onehot is not None:
            H[0] = x
            offset = 1
        for i, cell in enumerate(self.cells):
            x = cell(x, H[offset + i]) if cell_fn is None else cell_fn(cell, x, H[offset + i])
            if dropout is not None and cfg.dropout_p_hidden > 0:
                x = dropout(x, cfg.dropout_p_hidden)
            H[offset + i] = x
        return x

    def score_all(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each row of the last layer's output: h @ Wy^T + By."""
        return torch.addmm(self.By, h, self.Wy.t())


def _check_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device name; use 'cpu' or 'cuda:0'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r}: this torch build or machine has no CUDA; use -d cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here.")
    return device


_ROUNDS_AHEAD = 64


def session_parallel_steps(data: SessionData, batch_size: int, H: list[torch.Tensor], min_slots: int = 1):
    """Yield (input items, target items) tensors step by step over ``data``, session-parallel.

    Between rounds the hidden state ``H`` (a list, one tensor per layer, on the device of the
    steps) is reset for the slots whose session ended and shrunk when slots run out, in place.
    """
    device = H[0].device
    rounds = session_parallel_rounds(data, batch_size, min_slots)
    while True:
        # Rounds are worked out 64 at a time, in one tight loop: one by one between training steps
        # (which stream tens of MB through the cache) each of a round's ~20 small numpy and torch
        # operations ran on cold caches. On a GPU the chunk also travels as one copy (three per
        # round, each waiting for the queued steps, took 0.13 ms each, half of a graphed step).
        chunk = _chunk_tensors(list(itertools.islice(rounds, _ROUNDS_AHEAD)), device)
        if not chunk:
            return
        for inputs, targets, finished, keep in chunk:
            yield from zip(inputs, targets)
            if finished is not None:
                # index_fill rather than masked_fill with a bool column: 4 against 40 us for 48 x 480 on the CPU
                H[:] = [h.index_fill(0, finished, 0.0) for h in H]
                if keep is not None:  # the batch shrinks only at the end of the data
                    H[:] = [h.index_select(0, keep) for h in H]


def _chunk_tensors(rounds: list, device) -> list:
    """Each round's per-step input and target tensors and the slots to reset and to keep (None:
    none / all), all views of one int64 tensor moved to ``device`` in one copy."""
    parts, shapes = [], []
    for rnd in rounds:
        finished, keep = rnd.resets()
        parts += [rnd.inputs.ravel(), rnd.targets.ravel()]
        shapes.append((rnd.inputs.shape, finished is not None, keep is not None))
        parts += [a for a in (finished, keep) if a is not None]
    if not parts:
        return []
    flat = torch.from_numpy(np.concatenate(parts))
    if device.type == "cuda":  # from pinned memory the copy does not wait for the queued steps
        flat = flat.pin_memory().to(device, non_blocking=True)
    flat = flat.split([len(a) for a in parts])
    out, k = [], 0
    for shape, has_finished, has_keep in shapes:
        inputs, targets = flat[k].view(shape).unbind(0), flat[k + 1].view(shape).unbind(0)
        k += 2
        finished = keep = None
        if has_finished:
            finished, k = flat[k], k + 1
        if has_keep:
            keep, k = flat[k], k + 1
        out.append((inputs, targets, finished, keep))
    return out


class GRU4Rec:
    """The user-facing model: fit on sessions, evaluate, recommend, save and load.

    >>> model = GRU4Rec(GRU4RecConfig(layers=[100], loss="bpr-max")).fit(train_df)
    >>> session = model.new_session(); session.add("item-42"); session.recommend(k=10)
    """

    def __init__(self, config: GRU4RecConfig | None = None, device: str | torch.device = "cpu", **params):
        if config is None:
            config = GRU4RecConfig.from_dict(params)
        elif params:
            config = GRU4RecConfig.from_dict({**to_dict(config), **params})
        self.config = config
        self.device = _check_device(device)
        self.net: GRU4RecNet | None = None
        self.vocab: ItemVocab | None = None

    # ------------------------------------------------------------------ training
    def fit(self, train, columns: Columns = Columns(), sample_store_size: int = 10_000_000, log=None, progress: bool = False,
            checkpoint: str | os.PathLike | None = None):
        """Train on a DataFrame of events or a :class:`SessionData`; returns self.

        ``checkpoint``: a file written after every epoch; if it exists, training resumes from it.
        """
        from ..training.gru4rec import train_gru4rec  # training sits after models in the layer order

        data = train if isinstance(train, SessionData) else SessionData.from_frame(train, columns)
        self.vocab = data.vocab
        self.net = GRU4RecNet(self.config, data.n_items).to(self.device)
        self.history = train_gru4rec(self, data, sample_store_size=sample_store_size, log=log, progress=progress,
                                     checkpoint=os.fspath(checkpoint) if checkpoint else None)
        return self

    def _check_fitted(self) -> None:
        if self.net is None:
            raise RuntimeError("This GRU4Rec model is not fitted yet; call fit(...) or GRU4Rec.load(path) first.")

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self.net.n_items

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, histories: list) -> torch.Tensor:
        """Scores of all items after each history (a list of item-index sequences): [batch, n_items].

        The hidden state starts from zero for each history (session-based setting).
        """
        self._check_fitted()
        net = self.net
        net.eval()
        lengths = torch.tensor([len(h) for h in histories])
        if (lengths == 0).any():
            raise ValueError("score(): every history needs at least one item.")
        T = int(lengths.max())
        padded = torch.zeros(len(histories), T, dtype=torch.long)
        for i, h in enumerate(histories):
            padded[i, : len(h)] = torch.as_tensor(h, dtype=torch.long)
        padded, lengths = padded.to(self.device), lengths.to(self.device)
        H = net.init_hidden(len(histories), self.device)
        table = net.input_table
        for t in range(T):
            alive = (t < lengths).unsqueeze(1)
            old = list(H)
            net.step(table.index_select(0, padded[:, t]), H)
            H = [torch.where(alive, new, prev) for new, prev in zip(H, old)]
        return net.score_all(H[-1])

    def new_session(self) -> "LiveSession":
        """A live session: feed events one at a time and ask for recommendations at any point."""
        self._check_fitted()
        return LiveSession(self)

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> None:
        """Write weights, config and item map to one safetensors file, atomically."""
        from safetensors.torch import save_file

        self._check_fitted()
        path = os.fspath(path)
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        vocab, kind = self.vocab.to_tensors()
        tensors.update(vocab)
        meta = {"format": FORMAT, "config": json.dumps(to_dict(self.config)), "vocab": kind}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "GRU4Rec":
        """Load a model written by :meth:`save`. Reads tensors and JSON only; runs no code from the file."""
        tensors, meta = read_tensor_file(path, "GRU4Rec model")
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: not a GRU4Rec model of this nextitem version (format {meta.get('format')!r}, expected {FORMAT!r}).")
        config = GRU4RecConfig.from_dict(json.loads(meta["config"]), source=path)
        vocab = ItemVocab.from_tensors(tensors, meta["vocab"])
        model = cls(config, device=device)
        model.vocab = vocab
        net = GRU4RecNet(config, len(vocab))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        model.net = net.to(model.device).eval()
        return model


class LiveSession:
    """One user's session, fed one event at a time (hidden state kept between calls)."""

    def __init__(self, model: GRU4Rec):
        self.model = model
        self.H = model.net.init_hidden(1, model.device)
        self.items: list = []

    @torch.no_grad()
    def add(self, item_id) -> "LiveSession":
        idx = int(self.model.vocab.index_of([item_id])[0])
        if idx < 0:
            raise KeyError(f"item {item_id!r} was not in the training data; the model cannot use it as input.")
        net = self.model.net
        net.eval()
        net.step(net.input_table[idx].unsqueeze(0), self.H)
        self.items.append(item_id)
        return self

    @torch.no_grad()
    def recommend(self, k: int = 20, exclude_seen: bool = False) -> pd.DataFrame:
        """Top-k next items for this session so far, as a frame of item ids and scores."""
        if not self.items:
            raise ValueError("add at least one event to the session before asking for recommendations.")
        scores = self.model.net.score_all(self.H[-1])[0]
        if exclude_seen:
            seen = torch.as_tensor(self.model.vocab.index_of(self.items), dtype=torch.long, device=scores.device)
            scores = scores.index_fill(0, seen, float("-inf"))
        top = torch.topk(scores, min(k, len(scores)))
        return pd.DataFrame({"item": self.model.vocab.to_ids(top.indices.cpu().numpy()), "score": top.values.cpu().numpy()})
