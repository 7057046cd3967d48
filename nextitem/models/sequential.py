"""What every user-history model (SASRec, BERT4Rec, LRURec) shares: the contract and save/load.

A model file defines three small things:
- a config dataclass (architecture and loss; optimiser settings live in the trainer's config);
- a network, a subclass of :class:`SequenceNet`, which turns a training batch into a loss and a
  batch of histories into scores over all items;
- the user-facing class, ``class SASRec(SequentialRecommender)`` naming the two above.

Tokens: item index ``i`` (0-based, as in :class:`~nextitem.data.ItemVocab`) is token ``i + 1``;
token 0 is padding and is never scored. Histories are left-padded: the newest item is last.
"""
from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..config import build, to_dict
from ..data.histories import HistoryData, LeaveOneOut
from ..data.io import DataError, atomic_write, read_tensor_file
from ..data.sessions import ItemVocab


def left_pad(histories, max_len: int, append: int | None = None) -> torch.Tensor:
    """[batch, max_len] tokens: the last items of each history (+1), zeros on the left.

    ``append`` adds one more token after each history (BERT4Rec's [mask] at inference).
    """
    room = max_len - (append is not None)
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, h in enumerate(histories):
        h = np.asarray(h)[-room:] if room > 0 else np.zeros(0, np.int64)
        end = max_len - (append is not None)
        out[row, end - len(h):end] = h + 1
        if append is not None:
            out[row, -1] = append
    return torch.from_numpy(out)


def next_item_batch(histories, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ``inputs`` and ``targets`` [B, W] of next-item training: the last max_len + 1
    items of each history, inputs all but the last, targets all but the first (tokens = item + 1).

    W is the longest row of the batch, not max_len: columns of padding only cost time, and a model
    whose positions count from each row's first real item gives the same result either way."""
    crops = [np.asarray(h[-(max_len + 1):], dtype=np.int64) + 1 for h in histories]
    width = max([len(c) - 1 for c in crops] + [1])
    inputs = np.zeros((len(crops), width), dtype=np.int64)
    targets = np.zeros_like(inputs)
    for row, c in enumerate(crops):
        n = len(c) - 1
        if n > 0:
            inputs[row, width - n:], targets[row, width - n:] = c[:-1], c[1:]
    return inputs, targets


LOGIT_CHUNK = 1 << 22  # logits computed at once in the loss (16 MB of float32)
KEEP_GRAD = 1 << 26  # loss gradients kept from forward to backward (256 MB); beyond that recomputed


def softmax_cross_entropy(h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Summed full-softmax cross-entropy of the rows of ``h`` [N, d] over the items ``W`` [n_items, d]
    (plus bias ``b``, if any) against targets ``y`` [N] (0-based item indices).

    Equals ``F.cross_entropy(h @ W.T + b, y, reduction="sum")`` but about twice as fast on a CPU and
    far smaller: the logits are made in row chunks, never all at once, and turned into their
    gradient in place during forward, so backward is two matmuls with no softmax pass.
    """
    return _SoftmaxXent.apply(h, W, b, y)


def _logits(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.mm(h, W.t()) if b is None else torch.addmm(b, h, W.t())


class _SoftmaxXent(torch.autograd.Function):
    """Forward keeps each chunk's gradient (softmax - one-hot) while the kept total fits KEEP_GRAD;
    chunks beyond that are recomputed in backward. Memory is bounded either way."""

    @staticmethod
    def forward(ctx, h, W, b, y):
        rows = max(1, LOGIT_CHUNK // W.shape[0])
        loss, lses, kept, room = h.new_zeros(()), [], [], KEEP_GRAD
        for s in range(0, len(h), rows):
            z, ys = _logits(h[s:s + rows], W, b), y[s:s + rows, None]
            target = z.gather(1, ys)
            # softmax by hand with a single exp pass; memory traffic, not flops, is the cost here
            top = z.amax(1, keepdim=True)
            total = z.sub_(top).exp_().sum(1, keepdim=True)
            lse = top + total.log()
            loss += (lse - target).sum()
            lses.append(lse)
            if z.numel() <= room:
                room -= z.numel()
                kept.append(_minus_one_hot(z.mul_(1 / total), ys))
            else:
                kept.append(None)
        ctx.save_for_backward(h, W, b, y)
        ctx.rows, ctx.lses, ctx.kept = rows, lses, kept
        return loss

    @staticmethod
    def backward(ctx, grad):
        h, W, b, y = ctx.saved_tensors
        gh, gW = torch.empty_like(h), torch.zeros_like(W)
        gb = None if b is None else torch.zeros_like(b)
        for i, s in enumerate(range(0, len(h), ctx.rows)):
            g, hs = ctx.kept[i], h[s:s + ctx.rows]
            if g is None:
                g = _minus_one_hot(_logits(hs, W, b).sub_(ctx.lses[i]).exp_(), y[s:s + ctx.rows, None])
            torch.mm(g, W, out=gh[s:s + ctx.rows])
            gW.addmm_(g.t(), hs)
            if gb is not None:
                gb += g.sum(0)
        ctx.kept = None
        return gh * grad, gW * grad, None if gb is None else gb * grad, None


def _minus_one_hot(p: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    return p.scatter_add_(1, ys, torch.full(ys.shape, -1.0, dtype=p.dtype, device=p.device))


class SequenceNet(nn.Module):
    """The network half of the contract.

    ``make_batch`` builds one training batch on the CPU from raw training histories and a seeded
    generator (random crops, negatives, Cloze masks all come from it, so a run repeats exactly and
    data-parallel ranks can build the same global batch). ``forward`` returns the summed loss and
    the number of terms it sums, so the trainer can normalise over a global batch split across
    processes. ``score_tokens`` returns scores over all items (padding excluded).
    """

    n_items: int
    max_len: int

    def make_batch(self, histories: list[np.ndarray], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tokens_for_scoring(self, histories) -> torch.Tensor:
        # As narrow as the longest history, not max_len: the contract says left padding never changes
        # scores, and short-history data (beauty) then does far less work.
        return left_pad(histories, max(1, min(self.max_len, max(len(h) for h in histories))))


class SequentialRecommender:
    """The user-facing model: ``fit`` on user histories, ``score`` all items, ``save`` / ``load``.

    >>> model = SASRec(max_len=200).fit(LeaveOneOut.from_histories(read_histories("ml-1m")))
    >>> model.evaluate(split="test").table()
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    Net: ClassVar[type]

    def __init__(self, config=None, device: str | torch.device = "cpu", **params):
        if config is None:
            config = build(self.Config, params, source=f"{self.name} parameters")
        elif params:
            config = build(self.Config, {**to_dict(config), **params}, source=f"{self.name} parameters")
        self.config = config
        self.device = torch.device(device)
        self.net: SequenceNet | None = None
        self.vocab: ItemVocab | None = None
        self.history: list[dict] = []

    def init(self, n_items: int, vocab: ItemVocab | None = None, seed: int = 0) -> "SequentialRecommender":
        """Build fresh weights for ``n_items`` items (the trainer calls this; seeded for repeatability)."""
        torch.manual_seed(seed)
        self.net = self.Net(self.config, n_items).to(self.device)
        self.vocab = vocab
        return self

    def fit(self, data: LeaveOneOut | HistoryData, train_config=None, checkpoint: str | os.PathLike | None = None,
            log=print, progress: bool = True, **train_params) -> "SequentialRecommender":
        """Train on the training part of ``data`` with early stopping on its validation split.

        ``train_config`` / ``train_params``: see :class:`nextitem.training.sequential.TrainConfig`.
        ``checkpoint``: a file written every epoch; an existing one is resumed from.
        """
        from ..training.sequential import TrainConfig, train  # training sits after models in the layer order

        if isinstance(data, HistoryData):
            data = LeaveOneOut.from_histories(data)
        if train_config is None:
            train_config = build(TrainConfig, train_params, source="training parameters")
        elif train_params:
            train_config = build(TrainConfig, {**to_dict(train_config), **train_params}, source="training parameters")
        train(self, data, train_config, checkpoint=os.fspath(checkpoint) if checkpoint else None, log=log, progress=progress)
        return self

    def _check_fitted(self) -> None:
        if self.net is None:
            raise RuntimeError(f"This {self.name} model is not fitted yet; call fit(...) or {type(self).__name__}.load(path) first.")

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self.net.n_items

    @torch.no_grad()
    def score(self, histories) -> torch.Tensor:
        """Scores of all items after each history (a list of item-index arrays): [batch, n_items]."""
        self._check_fitted()
        self.net.eval()
        if any(len(h) == 0 for h in histories):
            raise ValueError("score(): every history needs at least one item.")
        return self.net.score_tokens(self.net.tokens_for_scoring(histories).to(self.device))

    def evaluate(self, data: LeaveOneOut, split: str = "test", **kwargs):
        from ..evaluation.ranking import evaluate_ranking  # evaluation sits after models

        return evaluate_ranking(self.score, getattr(data, split), data.n_items, **kwargs)

    # ------------------------------------------------------------------ save / load
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        self._check_fitted()
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"format": f"nextitem.{self.name}/1", "model": self.name, "config": json.dumps(to_dict(self.config)),
                "n_items": str(self.net.n_items), "vocab": "none"}
        if self.vocab is not None:
            vocab, meta["vocab"] = self.vocab.to_tensors()
            tensors.update(vocab)
        return tensors, meta

    def save(self, path: str | os.PathLike) -> None:
        """Weights, config and item map in one safetensors file, written atomically."""
        from safetensors.torch import save_file

        tensors, meta = self.state_tensors()
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "SequentialRecommender":
        """Load a model written by :meth:`save` (tensors and JSON only; no code runs)."""
        tensors, meta = read_tensor_file(path, f"{cls.name} model")
        if meta.get("model") != cls.name:
            raise DataError(f"{path}: holds a {meta.get('model', 'non-nextitem')!r} model, not {cls.name!r}; "
                            f"load it with that model's class (or nextitem.models.load_model).")
        model = cls(build(cls.Config, json.loads(meta["config"]), source=os.fspath(path)), device=device)
        vocab = ItemVocab.from_tensors(tensors, meta["vocab"]) if meta["vocab"] != "none" else None
        model.init(int(meta["n_items"]), vocab)
        model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        model.net.eval()
        return model
