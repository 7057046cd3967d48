"""LRURec (Yue et al., WSDM 2024): a linear recurrent unit over the user's history.

Network, as the official code runs it: tied item embedding -> dropout -> LayerNorm -> blocks of
[LRU layer, position-wise FFN] -> scores h . E^T + b over all items.
LRU layer: h_t = lambda * h_{t-1} + gamma * (B x_t + b), a complex diagonal recurrence with 2d
states, lambda = exp(-nu + i theta); output LayerNorm(x + dropout(Re(C h_t) + c)).

How it stays fast and small on a CPU (the official code: 135 s and 3.6 GB per ml-1m epoch):
- Position-wise work (projections, FFN, LayerNorms, loss) runs on the real positions only, packed
  as [N, d] rows. Only the scan sees the [batch, length] grid, where padding is a zero input, so
  it never enters the state (and the padding token has no vector that could leak in).
- The scan is blocked: inside a block of CHUNK steps the recurrence is a lower-triangular Toeplitz
  matrix of powers of lambda (one batched matmul); the block ends are chained by the same scan with
  lambda^CHUNK. Complex numbers are (real, imag) float pairs.
- The loss is full-softmax cross-entropy over row chunks; all logits of a batch never exist at once.
- Scoring needs the last state only: the last layer's state is a lambda-power weighted sum of its
  inputs, and the FFN and the item scores run on that one position.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .sequential import SequenceNet, SequentialRecommender, next_item_batch, softmax_cross_entropy

CHUNK = 8  # scan block length; measured fastest on CPU (the block matmuls grow with it, the chain with L/CHUNK)


@dataclass
class LRURecConfig:
    """The official defaults (ml-1m; the paper uses max_len 50 on Amazon data)."""

    hidden: int = 64
    blocks: int = 2
    dropout: float = 0.2  # embedding and FFN
    attn_dropout: float = 0.2  # output of the LRU layer (named as in the official code)
    r_min: float = 0.8  # |lambda| is initialised uniformly on the ring r_min..r_max
    r_max: float = 0.99
    max_len: int = 200

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"LRURec: {name}={getattr(self, name)!r} {why}")

        for name in ("hidden", "blocks", "max_len"):
            if getattr(self, name) < 1:
                bad(name, "must be a positive integer.")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1).")
        if not 0.0 < self.r_min < 1.0:
            bad("r_min", "must be in (0, 1): it is the smallest initial |lambda|.")
        if not self.r_min <= self.r_max < 1.0:
            bad("r_max", f"must be in [r_min={self.r_min}, 1): |lambda| >= 1 would make the recurrence explode.")


# ---------------------------------------------------------------------- the scan

def padded_length(L: int) -> int:
    """The grid length the scan runs on: L itself if one block covers it, else whole blocks."""
    return L if L <= CHUNK else -(-L // CHUNK) * CHUNK


def _powers(nu: torch.Tensor, theta: torch.Tensor, k: torch.Tensor):
    """lambda^k as (real, imag) [..., D] for exponents k [...] and lambda = exp(-nu + i theta) [D]."""
    k = k.unsqueeze(-1)
    mag = torch.exp(-k * nu)  # exp of the exponent, not repeated products: exact for large k
    return mag * torch.cos(k * theta), mag * torch.sin(k * theta)


def _block_matrix(nu, theta, T: int, step: int) -> torch.Tensor:
    """[D, 2T, 2T], transposed for ``row_vectors @ M``: per channel, maps a block's inputs [x, y]
    (real, imag) to its states [re, im], h_t = sum_{s<=t} lambda^(step (t-s)) u_s."""
    t = torch.arange(T, device=nu.device)
    lag = t[:, None] - t[None, :]
    re, im = _powers(nu, theta, (lag.clamp(min=0) * step).to(nu.dtype))
    causal = (lag >= 0).unsqueeze(-1)
    re, im = re * causal, im * causal
    # (a + ib)(x + iy) = (ax - by) + i(bx + ay) as one real matrix
    m = torch.cat([torch.cat([re, -im], 1), torch.cat([im, re], 1)], 0)  # [2T out, 2T in, D]
    return m.permute(2, 1, 0).contiguous()  # contiguous: bmm on strided operands is 20x slower


def scan_grid(g: torch.Tensor, nu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """All states of h_t = lambda h_{t-1} + u_t, h_{-1} = 0, for inputs g [D, R, n, 2, c]: R
    sequences of n blocks of c steps, channel-major so each product is a plain batched matmul."""
    D, R, n, _, c = g.shape
    g = g.reshape(D, R * n, 2 * c)
    M = _block_matrix(nu, theta, c, 1)
    h = torch.matmul(g, M)  # each block on its own
    if n > 1:
        # Block-end states from their own columns of M (slicing h would cost a full-size zero
        # gradient in backward), then chained across blocks by the same scan with lambda^c.
        ends = torch.matmul(g, M[:, :, [c - 1, 2 * c - 1]]).view(D, R, n, 2).transpose(2, 3).reshape(D, R, 2 * n)
        ends = torch.matmul(ends, _block_matrix(nu, theta, n, c)).view(D, R, 2, n)
        into = F.pad(ends[..., :-1], (1, 0)).transpose(2, 3).reshape(D, R * n, 2)  # state entering each block
        re, im = _powers(nu, theta, torch.arange(1, c + 1, device=g.device, dtype=g.dtype))  # lambda^(t+1)
        re, im = re.t(), im.t()
        # h += lambda^(t+1) * into, as [x, y] @ [[re, im], [-im, re]] per channel, in place
        carry = torch.stack([torch.cat([re, im], 1), torch.cat([-im, re], 1)], 1)  # [D, 2, 2c]
        h.baddbmm_(into, carry)
    h = h.view(D, R, n, 2, c)
    return h


def last_state_matrix(nu: torch.Tensor, theta: torch.Tensor, Lp: int, c: int) -> torch.Tensor:
    """[D, 2 Lp, 2]: maps one grid row (blocks of [real c, imag c]) to its final state (re, im),
    h_last = sum_l lambda^(Lp - 1 - l) u_l."""
    n = Lp // c
    e = (Lp - 1 - torch.arange(Lp, device=nu.device, dtype=nu.dtype)).view(n, 1, c)
    re, im = _powers(nu, theta, e)  # [n, 1, c, D]
    from_real, from_imag = torch.stack([re, im], -1), torch.stack([-im, re], -1)  # [n, 1, c, D, 2 (to re, im)]
    return torch.cat([from_real, from_imag], 1).permute(3, 0, 1, 2, 4).reshape(len(nu), 2 * Lp, 2)


def lru_scan(u: torch.Tensor, nu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """All states of h_t = lambda h_{t-1} + u_t with h_{-1} = 0; u is [B, L, 2, D] (real, imag)."""
    B, L, _, D = u.shape
    Lp = padded_length(L)
    c = min(CHUNK, Lp)
    u = F.pad(u, (0, 0, 0, 0, Lp - L, 0))  # zero inputs on the left leave the state at zero
    h = scan_grid(u.reshape(B, Lp // c, c, 2, D).permute(4, 0, 1, 3, 2), nu, theta)
    return h.permute(1, 2, 4, 3, 0).reshape(B, Lp, 2, D)[:, Lp - L:]


# ---------------------------------------------------------------------- the network

@dataclass
class _Layout:
    """Where the packed rows (real positions, row-major) sit in the scan grid [D, B, n, 2, c]."""

    B: int
    Lp: int
    c: int
    grid: torch.Tensor  # per packed row: its real part's flat index in one channel of the grid
    last: torch.Tensor  # packed row of each sequence's last position

    @classmethod
    def of(cls, mask: torch.Tensor) -> "_Layout":
        B, L = mask.shape
        Lp = padded_length(L)
        c = min(CHUNK, Lp)
        row, col = mask.nonzero(as_tuple=True)
        block, step = (col + Lp - L).div(c, rounding_mode="floor"), (col + Lp - L) % c
        last = torch.cumsum(mask.sum(1), 0) - 1
        return cls(B, Lp, c, row * 2 * Lp + block * 2 * c + step, last)


def _trunc_normal_init(module: nn.Module) -> None:
    # The official init: N(0, 0.02) cut at +-0.04 for every weight and bias, LayerNorms and the
    # recurrence parameters excepted.
    for name, p in module.named_parameters():
        if "norm" not in name and not name.endswith("_log"):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)


class LRULayer(nn.Module):
    def __init__(self, d: int, dropout: float, r_min: float, r_max: float):
        super().__init__()
        # Complex B x + b (2d states) and Re(C h) + c as real maps. Real and imaginary parts are
        # interleaved (row / column 2k is Re of state k, 2k + 1 its Im): that is the scan grid's
        # layout, so activations go in and out of it without transposes.
        self.in_proj = nn.Linear(d, 4 * d)
        self.out_proj = nn.Linear(4 * d, d)
        # |lambda|^2 = exp(-2 nu) uniform on [r_min^2, r_max^2], phase uniform; gamma = sqrt(1 - |lambda|^2)
        # keeps the state's scale independent of |lambda| (the paper's normalisation).
        nu = -0.5 * torch.log(torch.rand(2 * d) * (r_max ** 2 - r_min ** 2) + r_min ** 2)
        theta = (torch.rand(2 * d) * 2 * math.pi).clamp_min(1e-6)  # log(0) = -inf would stay stuck
        self.nu_log = nn.Parameter(nu.log())
        self.theta_log = nn.Parameter(theta.log())
        self.gamma_log = nn.Parameter(0.5 * torch.log(1 - torch.exp(-2 * nu)))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, lay: _Layout, last_only: bool = False) -> torch.Tensor:
        nu, theta = self.nu_log.exp(), self.theta_log.exp()
        gamma = self.gamma_log.exp().repeat_interleave(2)
        u = torch.addmm((self.in_proj.bias * gamma)[:, None], self.in_proj.weight * gamma[:, None], x.t())  # [2D, N]
        D, N, B, Lp, c = len(gamma) // 2, len(x), lay.B, lay.Lp, lay.c
        where = torch.cat([lay.grid, lay.grid + c])  # real parts, then imaginary ones c later
        grid = u.new_zeros(D, B * Lp * 2).index_copy_(1, where, u.view(D, 2 * N))
        if last_only:  # scoring needs the final state only: a weighted sum, no scan
            h = torch.bmm(grid.view(D, B, 2 * Lp), last_state_matrix(nu, theta, Lp, c)).transpose(0, 1)
            y = F.linear(h.reshape(B, 2 * D), self.out_proj.weight, self.out_proj.bias)
            x = x[lay.last]
        else:
            h = scan_grid(grid.view(D, B, Lp // c, 2, c), nu, theta).view(D, -1)
            y = torch.addmm(self.out_proj.bias, h.index_select(1, where).view(2 * D, N).t(), self.out_proj.weight.t())
        return self.norm(x + self.dropout(y))


class FeedForward(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.dropout(self.w2(self.dropout(F.gelu(self.w1(x))))))


class LRURecNet(SequenceNet):
    def __init__(self, cfg: LRURecConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items, self.max_len = cfg, n_items, cfg.max_len
        d = cfg.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0 = padding, never looked up
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(d)
        self.lru = nn.ModuleList(LRULayer(d, cfg.attn_dropout, cfg.r_min, cfg.r_max) for _ in range(cfg.blocks))
        self.ffn = nn.ModuleList(FeedForward(d, cfg.dropout) for _ in range(cfg.blocks))
        _trunc_normal_init(self)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Hidden states of left-padded tokens [B, L]: packed [N, d] rows of the real positions in
        row-major order, or with ``last_only`` the last position of each row [B, d]."""
        mask = tokens > 0
        lay = _Layout.of(mask)
        x = self.emb_norm(self.emb_dropout(self.item_emb(tokens[mask])))
        for i, (lru, ffn) in enumerate(zip(self.lru, self.ffn)):
            x = ffn(lru(x, lay, last_only=last_only and i == len(self.lru) - 1))
        return x

    def make_batch(self, histories, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        # Padded to the longest row of the batch: no scan over columns of padding.
        inputs, targets = next_item_batch(histories, self.max_len)
        return {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}

    def forward(self, batch):
        tokens, targets = batch["inputs"], batch["targets"]
        x = self.encode(tokens)
        y = targets[tokens > 0] - 1
        if (y < 0).any():  # a position without a target (not made by make_batch) adds no loss
            x, y = x[y >= 0], y[y >= 0]
        loss = softmax_cross_entropy(x, self.item_emb.weight[1:], y, self.bias)
        return loss, torch.tensor(len(y), device=loss.device)

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens > 0
        if not mask[:, -1].all():
            row = int((~mask[:, -1]).nonzero()[0])
            raise ValueError(f"score_tokens: row {row} ends in padding (token 0); rows must be left-padded "
                             "non-empty histories (use left_pad).")
        first = int(mask.any(0).nonzero()[0])  # drop columns that are padding in every row
        h = self.encode(tokens[:, first:], last_only=True)
        return torch.addmm(self.bias, h, self.item_emb.weight[1:].t())


class LRURec(SequentialRecommender):
    name = "lrurec"
    Config = LRURecConfig
    Net = LRURecNet
