"""A slow, plain-autograd GRU4Rec trainer, written from the reference's description, to check the
fast trainer (nextitem/training/gru4rec.py) on real data, where unit tests only cover a few steps.

    python benchmarks/gru4rec_autograd_reference.py TRAIN.tsv TEST.tsv -ps "loss=cross-entropy,..." --epochs 5

It shares only data loading and evaluation with nextitem. Everything else is written the plain way:
its own session-parallel loop, nn.GRUCell, sparse nn.Embedding tables, torch dropout, the loss
written as the formula with autograd, samples by inverse CDF, and Adagrad(+momentum) on coalesced
sparse gradients. Shared ("constrained") embedding only, the mode of every official best setting.
If this and bench_gru4rec.py land on the same Recall/MRR, a gap to the official figures is not in
the fast path's arithmetic.
"""
import argparse
import itertools
import sys
import time

import numpy as np
import torch
from torch import nn

from nextitem.config import parse_param_string
from nextitem.data import SessionData, read_events
from nextitem.evaluation import evaluate_sessions
from nextitem.models import GRU4Rec, GRU4RecConfig
from nextitem.models.gru4rec import GRU4RecNet


class PlainAdagradM:
    """acc += g^2; step = -lr g / sqrt(acc + eps); with momentum mom = mu mom + step; p += mom (or step).
    Sparse gradients: duplicate rows summed, then only those rows change."""

    def __init__(self, params, lr, momentum, eps=1e-6):
        self.params, self.lr, self.mu, self.eps = list(params), lr, momentum, eps
        self.acc = [torch.zeros_like(p) for p in self.params]
        self.mom = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, acc, mom in zip(self.params, self.acc, self.mom):
            g = p.grad
            if g.is_sparse:
                g = g.coalesce()
                rows, vals = g.indices()[0], g.values()
                a = acc[rows] + vals * vals
                acc[rows] = a
                step = -self.lr * vals / torch.sqrt(a + self.eps)
                if self.mu > 0:
                    m = self.mu * mom[rows] + step
                    mom[rows] = m
                    step = m
                p[rows] += step
            else:
                acc += g * g
                step = -self.lr * g / torch.sqrt(acc + self.eps)
                if self.mu > 0:
                    mom.mul_(self.mu).add_(step)
                    step = mom
                p += step


def uniform_(t: torch.Tensor, rng: np.random.Generator):
    bound = np.sqrt(6.0 / (t.shape[0] + t.shape[1]))
    with torch.no_grad():
        t.copy_(torch.from_numpy(rng.uniform(-bound, bound, t.shape).astype(np.float32)))


def slot_steps(data: SessionData, B: int):
    """Session-parallel steps: yields (x, y, reset_mask, keep_mask) per step; masks are None when unchanged.
    A slot whose session has ended takes the next session in time order; slots with nothing left are dropped."""
    off, items = data.offsets, data.items
    # sessions with something to predict, in time order (the first fill skips length-1 sessions too)
    sessions = (s for s in data.order if off[s + 1] - off[s] >= 2)
    first = np.fromiter(itertools.islice(sessions, B), dtype=np.int64)
    pos, end = off[first], off[first + 1]
    reset = keep = None
    while len(pos):
        yield items[pos], items[pos + 1], reset, keep
        pos = pos + 1
        done = end - pos <= 1
        reset = keep = None
        if done.any():
            reset = done.copy()
            for k in np.flatnonzero(done):
                s = next(sessions, None)
                if s is not None:
                    pos[k], end[k] = off[s], off[s + 1]
                    done[k] = False
            if done.any():
                keep = ~done
                pos, end = pos[keep], end[keep]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("-ps", "--params", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    params = parse_param_string(args.params)
    params["n_epochs"] = str(args.epochs)
    cfg = GRU4RecConfig.from_dict(params)
    if cfg.embedding_mode != "shared":
        sys.exit("only the shared (constrained) embedding mode is implemented here")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = SessionData.from_frame(read_events(args.train), source=args.train)
    n_items, L = data.n_items, cfg.layers[-1]
    counts = torch.from_numpy(data.item_counts().astype(np.float32))

    Wy = nn.Embedding(n_items, L, sparse=True)
    By = nn.Embedding(n_items, 1, sparse=True)
    uniform_(Wy.weight, rng)
    nn.init.zeros_(By.weight)
    cells = nn.ModuleList()
    size_in = L
    for size in cfg.layers:
        cell = nn.GRUCell(size_in, size)
        for w in (cell.weight_ih, cell.weight_hh):
            for block in w.data.chunk(3, 0):
                uniform_(block, rng)
        nn.init.zeros_(cell.bias_ih)
        nn.init.zeros_(cell.bias_hh)
        cells.append(cell)
        size_in = size
    params_all = [Wy.weight, By.weight] + list(cells.parameters())
    opt = PlainAdagradM(params_all, cfg.learning_rate, cfg.momentum)

    cdf = torch.cumsum(counts.double() ** cfg.sample_alpha, 0)
    cdf = (cdf / cdf[-1]).float()
    cdf[-1] = 1.0
    store_rows = 10_000_000 // cfg.n_sample if cfg.n_sample else 0
    store, store_pos = None, store_rows

    for epoch in range(1, cfg.n_epochs + 1):
        t0 = time.perf_counter()
        H = None
        losses, n_events = [], 0
        for x, y, reset, keep in slot_steps(data, cfg.batch_size):
            if H is None:  # as many slots as there are sessions to fill them, at most batch_size
                H = [torch.zeros(len(x), s) for s in cfg.layers]
                slots = len(x)
            if reset is not None:
                r = torch.from_numpy(reset).unsqueeze(1)
                H = [h.masked_fill(r, 0.0) for h in H]
            if keep is not None:
                k = torch.from_numpy(keep)
                H = [h[k] for h in H]
            x, y = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
            n = len(x)
            if cfg.n_sample:
                if store_pos >= store_rows:
                    u = torch.rand(store_rows * cfg.n_sample)
                    store = torch.searchsorted(cdf, u, right=True).clamp_(max=n_items - 1).view(store_rows, -1)
                    store_pos = 0
                samples = store[store_pos]
                store_pos += 1
                Y = torch.cat([y, samples])
            else:
                Y = y
            E = Wy(x)
            if cfg.dropout_p_embed > 0:
                E = nn.functional.dropout(E, cfg.dropout_p_embed, training=True)
            h = E
            for i, cell in enumerate(cells):
                h = cell(h, H[i].detach())
                if cfg.dropout_p_hidden > 0:
                    h = nn.functional.dropout(h, cfg.dropout_p_hidden, training=True)
                H[i] = h
            R = h @ Wy(Y).t() + By(Y).t()
            if cfg.loss == "cross-entropy":
                if cfg.logq > 0:
                    q = counts[Y].clone()
                    q[n:] = q[n:] ** cfg.sample_alpha
                    R = R - cfg.logq * torch.log(q)
                loss = -torch.log(torch.softmax(R, 1).diagonal() + 1e-24).sum()
            else:
                S = nn.functional.elu(R, cfg.elu_param) if cfg.elu_param > 0 else R
                off_diag = 1.0 - torch.eye(*S.shape)
                e = torch.exp(S * off_diag - (S * off_diag).max(1, keepdim=True).values) * off_diag
                s = e / e.sum(1, keepdim=True)
                t = S.diagonal().unsqueeze(1)
                loss = (-torch.log((torch.sigmoid(t - S) * s).sum(1) + 1e-24) + cfg.bpreg * (S * S * s).sum(1)).sum()
            loss = loss / slots  # the batch size, also when the batch has shrunk (as the reference)
            for p in params_all:
                p.grad = None
            loss.backward()
            opt.step()
            H = [t.detach() for t in H]
            losses.append(float(loss.detach()))
            n_events += n
        dt = time.perf_counter() - t0
        print(f"Epoch{epoch} --> loss: {np.mean(losses):.6f} \t({dt:.2f}s) \t[{n_events / dt:.0f} e/s]", flush=True)

    model = GRU4Rec(cfg)
    model.vocab = data.vocab
    net = GRU4RecNet(cfg, n_items)
    with torch.no_grad():
        net.Wy.copy_(Wy.weight)
        net.By.copy_(By.weight[:, 0])
        for mine, ref in zip(net.cells, cells):
            mine.load_state_dict(ref.state_dict())
    model.net = net.eval()
    test = SessionData.from_frame(read_events(args.test), vocab=model.vocab, source=args.test)
    res = evaluate_sessions(model, test, cutoffs=[1, 5, 10, 20], mode="standard")
    print(*res.lines())


if __name__ == "__main__":
    sys.exit(main())
