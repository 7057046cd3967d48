"""GRU4Rec training: session-parallel mini-batches, shared samples, fused loss, Adagrad-M.

One step, for slots with input items x and target items y:
  1. the input rows table[x] go through the GRU stack (autograd only here: a few small ops);
  2. the output rows O = Wy[Y], b = By[Y] for the columns Y = [y ; shared samples] score
     R = h O^T + b, and the loss and dR come from closed-form formulas (losses.py);
  3. dR is folded onto the unique touched rows, so each item row gets one summed gradient, and
     the item tables are updated on those rows only; the GRU weights get the dense update.
The per-step cost on a CPU is dominated by framework overhead, not arithmetic, which is why the
output layer avoids autograd and sparse tensors altogether.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..data import SessionData, session_parallel_rounds
from .losses import bpr_max, cross_entropy
from .optim import AdagradM
from .sampler import SampleStore


class TrainingDiverged(RuntimeError):
    pass


def train_gru4rec(model, data: SessionData, sample_store_size: int = 10_000_000, log=None, progress: bool = False):
    """Train ``model.net`` in place on ``data``; returns the per-epoch history (loss, seconds, e/s)."""
    cfg, net, device = model.config, model.net, model.device
    log = log or (lambda msg: None)
    torch.manual_seed(cfg.seed)  # dropout masks
    counts = data.item_counts()
    store = SampleStore(counts, cfg.sample_alpha, cfg.n_sample, sample_store_size, seed=cfg.seed, device=device)
    dense = net.dense_parameters()
    opt = AdagradM(dense, net.sparse_parameters(), cfg.learning_rate, cfg.momentum)
    log_counts = None
    if cfg.loss == "cross-entropy" and cfg.logq > 0:
        log_counts = torch.from_numpy(np.log(np.maximum(counts, 1)).astype(np.float32)).to(device)
    step = _Step(net, opt, dense, cfg, log_counts)
    min_slots = 1 if cfg.n_sample > 0 else 2  # without samples a lone slot has no negatives
    history = []
    for epoch in range(1, cfg.n_epochs + 1):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=data.n_predictions(), desc=f"epoch {epoch}", unit="ev", leave=False, mininterval=1.0)
        t0 = time.perf_counter()
        H = net.init_hidden(min(cfg.batch_size, data.n_sessions), device)
        loss_sum = torch.zeros((), dtype=torch.float64)
        n_batches = n_events = 0
        for rnd in session_parallel_rounds(data, cfg.batch_size, min_slots):
            inputs = torch.from_numpy(rnd.inputs).to(device)
            targets = torch.from_numpy(rnd.targets).to(device)
            for s in range(len(inputs)):
                loss_sum += step(inputs[s], targets[s], store.next(), H)
            n_batches += len(inputs)
            n_events += rnd.inputs.size
            if bar is not None:
                bar.update(rnd.inputs.size)
            if rnd.finished.any():
                finished = torch.from_numpy(rnd.finished).to(device).unsqueeze(1)
                keep = torch.from_numpy(rnd.keep).to(device)
                H = [h.masked_fill(finished, 0.0)[keep] for h in H]
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        avg = float(loss_sum) / max(n_batches, 1)
        if math.isnan(avg):
            raise TrainingDiverged(f"the loss became NaN in epoch {epoch}; lower learning_rate (now {cfg.learning_rate}).")
        entry = {"epoch": epoch, "loss": avg, "seconds": seconds, "minibatches": n_batches, "events": n_events,
                 "mb_per_s": n_batches / seconds, "events_per_s": n_events / seconds}
        history.append(entry)
        log(f"Epoch{epoch} --> loss: {avg:.6f} \t({seconds:.2f}s) \t[{entry['mb_per_s']:.2f} mb/s | {entry['events_per_s']:.0f} e/s]")
    return history


class _Step:
    """One training step; holds what every step reuses."""

    def __init__(self, net, opt: AdagradM, dense, cfg, log_counts):
        self.net, self.opt, self.dense, self.cfg = net, opt, dense, cfg
        self.log_counts = log_counts
        self.shared = net.mode == "shared"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, samples: torch.Tensor, H: list[torch.Tensor]) -> torch.Tensor:
        net, cfg, opt = self.net, self.cfg, self.opt
        n = len(x)
        table = net.input_table
        x_rows = table.detach().index_select(0, x).requires_grad_()
        h = net.step(x_rows, H, training=True)
        for i in range(len(H)):
            H[i] = H[i].detach()  # BPTT depth 1
        with torch.no_grad():
            Y = torch.cat((y, samples)) if len(samples) else y
            # One unique over all rows of Wy the step touches (inputs too in shared mode).
            touched = torch.cat((Y, x)) if self.shared else Y
            rows, inverse = torch.unique(touched, return_inverse=True)
            inv_y = inverse[: len(Y)]
            Wy, By = net.Wy.detach(), net.By.detach()
            O = Wy.index_select(0, rows)  # unique rows; R's columns gathered from the unique scores
            hd = h.detach()
            Ru = torch.addmm(By.index_select(0, rows), hd, O.t())
            R = Ru.index_select(1, inv_y)
            if cfg.loss == "cross-entropy":
                logq = None
                if self.log_counts is not None:
                    lq = self.log_counts.index_select(0, Y)
                    if len(samples):
                        lq = torch.cat((lq[:n], lq[n:] * cfg.sample_alpha))
                    logq = lq * cfg.logq
                loss, dR = cross_entropy(R, logq)
            else:
                loss, dR = bpr_max(R, cfg.bpreg, cfg.elu_param)
            # fold the columns of dR onto the unique rows
            dRu = torch.zeros_like(Ru).index_add_(1, inv_y, dR)
            dh = dRu @ O
            gW = dRu.t() @ hd
            gb = dRu.sum(0)
        grads = torch.autograd.grad(h, self.dense + [x_rows], dh)
        dx = grads[-1]
        with torch.no_grad():
            if self.shared:
                gW.index_add_(0, inverse[len(Y):], dx)
                in_y = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
                in_y[inv_y] = True
                opt.step_rows(net.Wy, rows, gW)
                # the bias has gradients only for output rows: input-only rows stay untouched
                opt.step_rows(net.By, rows[in_y], gb[in_y])
            else:
                opt.step_rows(net.Wy, rows, gW)
                opt.step_rows(net.By, rows, gb)
                xr, xinv = torch.unique(x, return_inverse=True)
                gx = torch.zeros((len(xr), dx.shape[1]), dtype=dx.dtype, device=dx.device).index_add_(0, xinv, dx)
                opt.step_rows(table, xr, gx)
            opt.step_dense(list(grads[:-1]))
        return loss.detach()
