"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the user's history.

Two block layouts:
- ``norm_first=False`` (default): the block of the original code (kang205, and pmixer's default):
  the query is layer-normed, the attention output is added to that normed query, then a LayerNorm
  and a point-wise feed-forward with its own residual.
- ``norm_first=True``: the standard pre-LN block (x + Attn(LN(x)), x + FFN(LN(x))), pmixer's
  ``--norm_first``.
A final LayerNorm follows the blocks in both. Item embeddings are shared for prediction.

Losses: ``bce`` is the paper's (one random negative per position, sigmoid cross-entropy on the
positive and the negative); ``ce`` is full-softmax cross-entropy over all items at every
position, which gives much better full-ranking accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .sequential import SequenceNet, SequentialRecommender, next_item_batch, softmax_cross_entropy


@dataclass
class SASRecConfig:
    hidden: int = 50
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    # Dropout on the attention weights, as in the reference. On a CPU it makes attention ~10x
    # slower (the fused kernel cannot drop weights, so they are materialised): 0 is much faster.
    attn_dropout: float = 0.2
    max_len: int = 200
    norm_first: bool = False
    loss: Literal["bce", "ce"] = "bce"

    def __post_init__(self):
        for name in ("hidden", "blocks", "heads", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be a positive integer.")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads}.")
        for name in ("dropout", "attn_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be in [0, 1).")


class _Attention(nn.Module):
    """Multi-head attention whose queries and keys/values may come from different inputs."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.p = heads, dropout
        # No key bias: it adds the same amount to every score of a query, which softmax cancels, so
        # its gradient is rounding noise that Adam would amplify into steps.
        self.q, self.k, self.v, self.out = nn.Linear(d, d), nn.Linear(d, d, bias=False), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, L, d = q_in.shape
        h = self.heads
        q = self.q(q_in).view(B, L, h, d // h).transpose(1, 2)
        k = self.k(kv_in).view(B, L, h, d // h).transpose(1, 2)
        v = self.v(kv_in).view(B, L, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.p if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, d))


class _Block(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        d = cfg.hidden
        self.norm_first = cfg.norm_first
        self.attn_norm = nn.LayerNorm(d, eps=1e-8)
        self.attn = _Attention(d, cfg.heads, cfg.attn_dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, d), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            q = self.attn_norm(x)
            x = x + self.attn(q, q, allowed)
            x = x + self.ffn(self.ffn_norm(x))
        else:
            q = self.attn_norm(x)
            x = q + self.attn(q, x, allowed)
            x = self.ffn_norm(x)
            x = x + self.ffn(x)
        return x * keep  # padding positions stay zero, as in the reference's timeline mask


class SASRecNet(SequenceNet):
    def __init__(self, cfg: SASRecConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items, self.max_len = cfg, n_items, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len + 1, cfg.hidden, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.blocks))
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)  # the reference code's init
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.pos_emb.weight[0].zero_()

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, d] of left-padded tokens; position t sees tokens <= t only."""
        keep = (tokens > 0).unsqueeze(-1).to(self.item_emb.weight.dtype)
        # Positions count 1.. from the first real item; padding gets position 0 (a zero vector).
        positions = torch.cumsum(tokens > 0, dim=1) * (tokens > 0)
        x = self.item_emb(tokens) * self.cfg.hidden ** 0.5 + self.pos_emb(positions)
        x = self.dropout(x) * keep
        L = tokens.shape[1]
        # A position attends to earlier real items and itself, never to padding (the reference
        # lets real items attend to the zeroed padding, so its output depends on the padding).
        eye = torch.eye(L, dtype=torch.bool, device=tokens.device)
        causal = torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
        allowed = (causal & ((tokens > 0).unsqueeze(1) | eye)).unsqueeze(1)  # [B, 1, L, L]
        # As an additive float mask made once: attention turns a bool mask into this in every block
        # and keeps each copy for backward (20 MB per block at batch 128, length 200).
        allowed = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.final_norm(x)

    def make_batch(self, histories, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        inputs, targets = next_item_batch(histories, self.max_len)
        batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
        if self.cfg.loss == "bce":
            batch["negatives"] = torch.from_numpy(self._negatives(histories, targets, rng))
        return batch

    def _negatives(self, histories, targets, rng) -> np.ndarray:
        # One item per position that the user never had in training (the reference's random_neq).
        neg = rng.integers(1, self.n_items + 1, size=targets.shape)
        for row, h in enumerate(histories):
            seen = np.zeros(self.n_items + 1, dtype=bool)
            seen[np.asarray(h) + 1] = True
            if seen[1:].all():
                continue  # nothing unseen is left to draw (tiny catalogues); keep the uniform draw
            bad = seen[neg[row]]
            while bad.any():
                neg[row, bad] = rng.integers(1, self.n_items + 1, size=int(bad.sum()))
                bad = seen[neg[row]]
        return neg * (targets > 0)

    def forward(self, batch):
        h = self.encode(batch["inputs"])
        mask = batch["targets"] > 0
        h = h[mask]  # only positions with a target: [n, d]
        targets = batch["targets"][mask]
        if self.cfg.loss == "ce":
            loss = softmax_cross_entropy(h, self.item_emb.weight[1:], targets - 1)
        else:
            pos = (h * self.item_emb(targets)).sum(-1)
            neg = (h * self.item_emb(batch["negatives"][mask])).sum(-1)
            loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="sum") + \
                F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="sum")
        return loss, mask.sum()

    def score_tokens(self, tokens):
        return self.encode(tokens)[:, -1] @ self.item_emb.weight[1:].T


class SASRec(SequentialRecommender):
    name = "sasrec"
    Config = SASRecConfig
    Net = SASRecNet
