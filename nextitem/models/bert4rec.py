"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained by Cloze (masked items).

Training hides random items of a history behind a [mask] token and predicts them from both sides
with a full softmax over all items. To recommend, a [mask] is appended after the history and the
scores at that position rank the next item.

Architecture as in the official TensorFlow code (BERT's modeling.py): item + learned position
embeddings -> LayerNorm -> dropout -> post-LN encoder blocks (self-attention, GELU feed-forward),
and an output head dense -> GELU -> LayerNorm whose result is scored against the tied item
embeddings plus a per-item bias. Weights start from a normal(0, 0.02) truncated at 2 std.

Tokens: 0 padding, 1..n_items the items, n_items + 1 the [mask]. Only real items are scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .sequential import SequenceNet, SequentialRecommender, left_pad, softmax_cross_entropy

IGNORE = -100  # label of a position that is not a target (cross_entropy's default ignore_index)


@dataclass
class BERT4RecConfig:
    """Architecture and Cloze settings; defaults are the official ML-1m ones (beauty: dropout 0.5,
    mask_prob 0.6, max_len 50). Optimiser settings live in the trainer's config."""

    hidden: int = 64
    blocks: int = 2
    heads: int = 2
    d_ff: int = 0  # 0 = 4 * hidden (256 at the defaults), as in BERT
    dropout: float = 0.2
    attn_dropout: float = 0.2
    mask_prob: float = 0.2
    max_len: int = 200
    # What a chosen position shows the model. "mask": always [mask], as the official runs do
    # (their mask_prob=1.0): inference also shows [mask], so there is no train/test gap for
    # BERT's 80/10/10 rule to bridge. "bert": 80% [mask], 10% a random item, 10% unchanged.
    mask_rule: Literal["mask", "bert"] = "mask"
    # Histories longer than max_len: "random" trains on a random window each time (covering the
    # whole history over epochs, like the official sliding windows); "last" on the newest items.
    crop: Literal["random", "last"] = "random"

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"BERT4Rec: {name}={getattr(self, name)!r} {why}")

        for name in ("hidden", "blocks", "heads"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1.")
        if self.hidden % self.heads:
            bad("hidden", f"must be divisible by heads={self.heads} (each head gets hidden / heads dimensions); "
                          f"e.g. hidden={self.heads * max(1, round(self.hidden / self.heads))}.")
        if self.d_ff < 0:
            bad("d_ff", "must be >= 0 (0 means 4 * hidden).")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1).")
        if not 0.0 < self.mask_prob <= 1.0:
            bad("mask_prob", "must be in (0, 1]: the share of history items hidden for the Cloze task (official 0.2 on ML-1m).")
        if self.max_len < 2:
            bad("max_len", "must be >= 2: one history item plus the [mask] appended at inference.")
        if self.mask_rule not in ("mask", "bert"):
            bad("mask_rule", "is not supported; use 'mask' (always [mask]) or 'bert' (80/10/10).")
        if self.crop not in ("random", "last"):
            bad("crop", "is not supported; use 'random' or 'last'.")

    @property
    def ff_size(self) -> int:
        return self.d_ff or 4 * self.hidden


class EncoderBlock(nn.Module):
    """One post-LN Transformer layer: x = LN(x + attn(x)); x = LN(x + ffn(x)), as in BERT."""

    def __init__(self, cfg: BERT4RecConfig):
        super().__init__()
        self.heads, self.attn_p = cfg.heads, cfg.attn_dropout
        self.q = nn.Linear(cfg.hidden, cfg.hidden)
        self.kv = nn.Linear(cfg.hidden, 2 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.ff_in = nn.Linear(cfg.hidden, cfg.ff_size)
        self.ff_out = nn.Linear(cfg.ff_size, cfg.hidden)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, take: torch.Tensor | None = None) -> torch.Tensor:
        """[B, W, d] -> [B, W, d], or [B, K, d] at the columns ``take`` [B, K] only (keys and values
        still come from every position). ``keep`` [B, 1, 1, W] is True at real keys: padding is never
        attended to."""
        B, W, d = x.shape
        heads, dh = self.heads, d // self.heads
        x_out = x if take is None else x.gather(1, take.unsqueeze(-1).expand(-1, -1, d))
        n_out = x_out.shape[1]
        q = self.q(x_out).view(B, n_out, heads, dh).transpose(1, 2)
        k, v = self.kv(x).view(B, W, 2, heads, dh).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.attn_p if self.training else 0.0)
        x = self.norm1(x_out + self.drop(self.proj(a.transpose(1, 2).reshape(B, n_out, d))))
        # tanh-approximated GELU: the formula of BERT's TensorFlow code
        return self.norm2(x + self.drop(self.ff_out(F.gelu(self.ff_in(x), approximate="tanh"))))


class BERT4RecNet(SequenceNet):
    def __init__(self, config: BERT4RecConfig, n_items: int):
        super().__init__()
        if n_items < 1:
            raise ValueError(f"BERT4Rec needs at least one item, got n_items={n_items}.")
        self.config, self.n_items, self.max_len = config, n_items, config.max_len
        self.mask_token = n_items + 1
        d = config.hidden
        self.item_emb = nn.Embedding(n_items + 2, d)  # padding, items, [mask]
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.blocks))
        self.head = nn.Linear(d, d)
        self.head_norm = nn.LayerNorm(d)
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.out_bias)

    # ------------------------------------------------------------------ network
    def encode(self, tokens: torch.Tensor, take: torch.Tensor | None = None) -> torch.Tensor:
        """[B, W] tokens -> [B, W, hidden], or [B, K, hidden] at the columns ``take`` [B, K]: the last
        block then runs its queries and feed-forward there only (a fifth of the positions in training).

        ``W`` may be below ``max_len``: positions count from the right, so a narrower batch equals the
        same histories left-padded to ``max_len``."""
        W = tokens.shape[1]
        if W > self.max_len:
            raise ValueError(f"BERT4Rec: {W} tokens per row exceed max_len={self.max_len}; crop histories with left_pad(..., max_len).")
        x = self.item_emb(tokens) + self.pos_emb.weight[self.max_len - W:]
        x = self.drop(self.emb_norm(x))
        keep = (tokens != 0)[:, None, None, :]
        for i, block in enumerate(self.blocks):
            x = block(x, keep, take if i == len(self.blocks) - 1 else None)
        return x

    def head_out(self, h: torch.Tensor) -> torch.Tensor:
        """[N, hidden] encoder outputs -> [N, hidden] vectors that score items by a dot product."""
        return self.head_norm(F.gelu(self.head(h), approximate="tanh"))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """[N, hidden] encoder outputs -> [N, n_items] scores of the real items (tied embeddings + bias)."""
        return torch.addmm(self.out_bias, self.head_out(h), self.item_emb.weight[1:self.n_items + 1].t())

    def masked_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder outputs at the masked positions only, [n_masked, hidden] in row-major order: the
        last block's queries, the head and the item softmax never run at the other positions."""
        chosen = batch["labels"] >= 0
        # The chosen columns of each row first, in column order (a stable sort), padded to the
        # row with the most; `real` marks which of those K slots are chosen columns.
        most = int(chosen.sum(1).max()) if len(chosen) else 0  # a data-parallel rank may get no rows
        take = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :most]
        real = chosen.gather(1, take)
        return self.encode(batch["tokens"], take)[real]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"][batch["labels"] >= 0]  # row-major, as masked_states
        h = self.head_out(self.masked_states(batch))
        loss = softmax_cross_entropy(h, self.item_emb.weight[1:self.n_items + 1], labels, self.out_bias)
        return loss, torch.tensor(labels.numel(), device=labels.device)

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if not bool((tokens[:, -1] == self.mask_token).all()):
            raise ValueError(f"BERT4Rec scores at a [mask] after the history: the last token of each row must be "
                             f"{self.mask_token} (n_items + 1); build the rows with tokens_for_scoring(histories).")
        last = torch.full((len(tokens), 1), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
        return self.logits(self.encode(tokens, last)[:, 0])

    def tokens_for_scoring(self, histories) -> torch.Tensor:
        # As narrow as the longest history allows: equal scores (positions count from the right),
        # far less attention work on short-history data such as beauty.
        width = min(self.max_len, max(len(h) for h in histories) + 1)
        return left_pad(histories, width, append=self.mask_token)

    # ------------------------------------------------------------------ Cloze batches
    def make_batch(self, histories: list[np.ndarray], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """tokens [B, W] with the chosen items hidden, and labels [B, W]: the item index at each hidden
        position, IGNORE elsewhere. Both are per row, so data-parallel ranks can split them by rows.
        W is the longest kept history, not max_len."""
        cfg = self.config
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        if len(lengths) == 0 or (lengths == 0).any():
            raise ValueError("BERT4Rec.make_batch: every training history needs at least one item "
                             f"(got {'no histories' if len(lengths) == 0 else 'an empty one'}); drop empty users before training.")
        kept = np.minimum(lengths, self.max_len)
        starts = rng.integers(0, lengths - kept + 1) if cfg.crop == "random" else lengths - kept
        B, W = len(histories), int(kept.max())
        original = np.zeros((B, W), dtype=np.int64)
        for row, h in enumerate(histories):
            original[row, W - kept[row]:] = np.asarray(h[starts[row]:starts[row] + kept[row]], dtype=np.int64) + 1

        chosen = (rng.random((B, W)) < cfg.mask_prob) & (original > 0)
        # Every row predicts at least one item: one uniformly chosen real position if none was drawn.
        empty = np.flatnonzero(~chosen.any(axis=1))
        if len(empty):
            chosen[empty, W - 1 - rng.integers(0, kept[empty])] = True

        tokens = original.copy()
        if cfg.mask_rule == "mask":
            tokens[chosen] = self.mask_token
        else:
            u = rng.random(int(chosen.sum()))
            random_items = rng.integers(1, self.n_items + 1, size=len(u))
            tokens[chosen] = np.where(u < 0.8, self.mask_token, np.where(u < 0.9, random_items, original[chosen]))
        labels = np.where(chosen, original - 1, IGNORE)
        return {"tokens": torch.from_numpy(tokens), "labels": torch.from_numpy(labels)}


class BERT4Rec(SequentialRecommender):
    """BERT4Rec with full-softmax Cloze training.

    >>> model = BERT4Rec(max_len=200).fit(LeaveOneOut.from_histories(read_histories("ml-1m")))
    """

    name = "bert4rec"
    Config = BERT4RecConfig
    Net = BERT4RecNet
