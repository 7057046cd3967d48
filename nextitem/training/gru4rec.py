"""GRU4Rec training: session-parallel mini-batches, shared samples, fused loss, Adagrad-M.

One step, for slots with input items x and target items y:
  1. the input rows table[x] go through the GRU stack (on the CPU the cells' kernels are called
     directly, _Step.gru_forward / gru_backward; elsewhere autograd with one node per GRU cell,
     gru_cell.py, plus dropout);
  2. the output rows O = Wy[Y], b = By[Y] for the columns Y = [y ; shared samples] score
     R = h O^T + b, and the loss and dR come from closed-form formulas (losses.py; on the CPU each
     loss is one kernel over R^T, kernels.xe_columns and kernels.bpr_max_columns);
  3. the item tables are updated on the touched rows only (duplicate rows summed first, one fused
     kernel on the CPU; there the output rows' gradient dR^T h is formed inside that kernel, a
     block of rows at a time: AdagradM.step_rows_product); the GRU weights
     get the dense update (on the CPU from their gradients' factors, never formed:
     AdagradM.step_dense_product).
The per-step cost on a CPU is dominated by framework overhead and memory traffic, not arithmetic,
which is why the output layer avoids autograd and sparse tensors altogether. With one GRU layer and
the shared embedding (every official best setting) the CPU step is native code that runs the same
kernels and products (kernels.FusedStep; same weights bit for bit), 64 rounds of the iterator per
call (_Step.fused_rounds). On a GPU the ~90 small
kernels of a step are captured once as a CUDA graph and replayed (_GraphedStep).

With ``checkpoint=PATH`` the full training state (weights, optimizer, random generators, sample
store position) is written atomically after every epoch, and a run started again with the same
path continues after the last finished epoch with the same result as an uninterrupted run.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings

import numpy as np
import torch

from ..config import ConfigError, to_dict
from ..data import SessionData
from ..data.io import atomic_write
from ..data.session_parallel import session_parallel_rounds
from ..models.gru4rec import session_parallel_steps
from .losses import EPS, bpr_max, cross_entropy
from .gru_cell import cell_backward, cell_forward, gru_cell
from .kernels import HAVE_BLOCK_GEMM, FusedStep, bpr_max_columns, gather_rows, keep_freed_memory, xe_columns
from .optim import AdagradM
from .sampler import SampleStore


class TrainingDiverged(RuntimeError):
    pass


def train_gru4rec(model, data: SessionData, sample_store_size: int = 10_000_000, log=None, progress: bool = False,
                  checkpoint: str | None = None):
    """Train ``model.net`` in place on ``data``; returns the per-epoch history (loss, seconds, e/s)."""
    cfg, net, device = model.config, model.net, model.device
    log = log or (lambda msg: None)
    torch.manual_seed(cfg.seed)  # dropout masks off the CPU
    counts = data.item_counts()
    # independent streams for the samples and the dropout masks (one seed for both would correlate them)
    sample_seed, dropout_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    store = SampleStore(counts, cfg.sample_alpha, cfg.n_sample, sample_store_size, seed=sample_seed, device=device)
    dense = net.dense_parameters()
    opt = AdagradM(dense, net.sparse_parameters(), cfg.learning_rate, cfg.momentum)
    log_counts = None
    if cfg.loss == "cross-entropy" and cfg.logq > 0:
        log_counts = torch.from_numpy(np.log(np.maximum(counts, 1)).astype(np.float32)).to(device)
    keep_freed_memory()
    slots = min(cfg.batch_size, data.n_sessions)
    step = _Step(net, opt, dense, cfg, log_counts, np.random.default_rng(dropout_seed), divisor=slots)
    run_step = _GraphedStep(step, cfg.batch_size) if device.type == "cuda" else step
    min_slots = 1 if cfg.n_sample > 0 else 2  # without samples a lone slot has no negatives
    history = []
    if checkpoint and os.path.exists(checkpoint):
        history = _load_checkpoint(checkpoint, model, opt, step, store)
        log(f"Resuming from {checkpoint} after epoch {len(history)}")
    for epoch in range(len(history) + 1, cfg.n_epochs + 1):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=data.n_predictions(), desc=f"epoch {epoch}", unit="ev", leave=False, mininterval=1.0)
        t0 = time.perf_counter()
        # on the GPU a tensor (no sync per step); on the CPU a float, or a tensor where the step returns one
        loss_sum = torch.zeros((), dtype=torch.float64, device=device) if device.type != "cpu" else 0.0
        n_batches = n_events = 0
        if step.fused:  # chunks of rounds, each one native call (_Step.fused_rounds)
            step.start_epoch(slots)
            rounds = session_parallel_rounds(data, cfg.batch_size, min_slots)
            while chunk := list(itertools.islice(rounds, _ROUNDS_PER_CALL)):
                loss, steps, events = step.fused_rounds(chunk, store)
                loss_sum += loss
                n_batches += steps
                n_events += events
                if bar is not None:
                    bar.update(events)
        else:
            H = net.init_hidden(slots, device)
            for x, y in session_parallel_steps(data, cfg.batch_size, H, min_slots):
                loss_sum += run_step(x, y, store.next(), H)
                n_batches += 1
                n_events += len(x)
                if bar is not None:
                    bar.update(len(x))
        if bar is not None:
            bar.close()
        avg = float(loss_sum) / max(n_batches, 1)  # waits for queued GPU work, so it is timed
        seconds = time.perf_counter() - t0
        if math.isnan(avg):
            raise TrainingDiverged(f"the loss became NaN in epoch {epoch}; lower learning_rate (now {cfg.learning_rate}).")
        entry = {"epoch": epoch, "loss": avg, "seconds": seconds, "minibatches": n_batches, "events": n_events,
                 "mb_per_s": n_batches / seconds, "events_per_s": n_events / seconds}
        history.append(entry)
        log(f"Epoch{epoch} --> loss: {avg:.6f} \t({seconds:.2f}s) \t[{entry['mb_per_s']:.2f} mb/s | {entry['events_per_s']:.0f} e/s]")
        if checkpoint:
            _save_checkpoint(checkpoint, model, opt, step, store, history)
    return history


def _save_checkpoint(path, model, opt, step, store, history) -> None:
    from safetensors.torch import save_file

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    tensors.update({f"opt.{k}": v.detach().cpu().contiguous() for k, v in opt.state_dict().items()})
    tensors["torch_rng"] = torch.get_rng_state()
    if model.device.type == "cuda":  # the GPU's dropout masks come from its own generator
        tensors["cuda_rng"] = torch.cuda.get_rng_state(model.device)
    meta = {"config": json.dumps(to_dict(model.config)), "history": json.dumps(history),
            "dropout_rng": json.dumps(step.rng.bit_generator.state), "store": json.dumps(store.state()),
            "n_items": str(model.net.n_items)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _resumable(config: dict) -> dict:
    """The parts of a config a checkpoint must share with the run resuming it (more epochs may be asked for)."""
    return {k: v for k, v in config.items() if k != "n_epochs"}


def _load_checkpoint(path, model, opt, step, store) -> list[dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    ours = json.loads(json.dumps(to_dict(model.config)))  # as it would read back from JSON
    if "config" not in meta or _resumable(json.loads(meta["config"])) != _resumable(ours) \
            or int(meta.get("n_items", -1)) != model.net.n_items:
        raise ConfigError(f"{path}: this checkpoint belongs to another configuration or dataset; "
                         "delete it or choose another checkpoint path.")
    tensors = load_file(path)
    model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    opt.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("opt.")})
    torch.set_rng_state(tensors["torch_rng"])
    if model.device.type == "cuda" and "cuda_rng" in tensors:
        torch.cuda.set_rng_state(tensors["cuda_rng"], model.device)
    step.rng.bit_generator.state = json.loads(meta["dropout_rng"])
    store.restore(json.loads(meta["store"]))
    return json.loads(meta["history"])


_NO_DRAWS = np.zeros((0, 0), dtype=np.float32)  # FusedStep's "no dropout"
# Rounds per native call of the one-call step. Between single steps, the Python around them (the
# iterator, the dropout draws, handing the state over) took 0.46 of a 7.1 ms Yoochoose step, on caches
# the step had just flushed, while the second core waited.
_ROUNDS_PER_CALL = 64


def _round_arrays(rounds: list) -> tuple:
    """Rounds of the session-parallel iterator as the flat arrays kernels.FusedStep.rounds takes: the
    steps' inputs and targets (X, Y), per round its steps, slots and offset into X, then the slots to
    reset (fin, with per-round offset and count) and to keep (keep, count -1: all)."""
    def starts(counts):  # where each round's part begins in the concatenation
        return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)

    def joined(arrays):
        return np.concatenate([a for a in arrays if a is not None] + [np.empty(0, dtype=np.int64)]).astype(np.int64)

    r_steps = np.array([rnd.inputs.shape[0] for rnd in rounds], dtype=np.int64)
    r_n = np.array([rnd.inputs.shape[1] for rnd in rounds], dtype=np.int64)
    fins, keeps = zip(*(rnd.resets() for rnd in rounds))
    fin_cnt = np.array([0 if f is None else len(f) for f in fins], dtype=np.int64)
    keep_cnt = np.array([-1 if k is None else len(k) for k in keeps], dtype=np.int64)
    return (joined(rnd.inputs.ravel() for rnd in rounds), joined(rnd.targets.ravel() for rnd in rounds),
            r_steps, r_n, starts(r_steps * r_n), joined(fins), starts(fin_cnt), fin_cnt, joined(keeps),
            starts(np.maximum(keep_cnt, 0)), keep_cnt)


class _Step:
    """One training step; holds what every step reuses."""

    def __init__(self, net, opt: AdagradM, dense, cfg, log_counts, rng: np.random.Generator,
                 divisor: int | None = None):
        self.net, self.opt, self.dense, self.cfg = net, opt, dense, cfg
        # Every step's loss is summed over its rows and divided by the batch size (the slots), also
        # when the batch has shrunk at the end of an epoch, as in the reference: see losses.py.
        self.divisor = cfg.batch_size if divisor is None else divisor
        self.log_counts = log_counts
        self.shared = net.mode == "shared"
        self.rng = rng
        cpu32 = net.Wy.device.type == "cpu" and net.Wy.dtype == torch.float32
        # On the CPU both losses run as one kernel over R^T, the layout the score product gives fastest,
        # and with their dR^T at hand the output rows' gradient dR^T h is never formed:
        # AdagradM.step_rows_product sums dR^T's rows per item, multiplies 32 items at a time and
        # updates them in cache, which takes 4 MB off a Yoochoose step's ~27 MB footprint (lockstep
        # -4.0% and -5.6%).
        self.columns_kernel = cpu32
        # On the CPU the GRU weights' gradients stay factored (D, X) and AdagradM.step_dense_product
        # applies D @ X block by block where torch has MKL (else it forms the product): the 2.8 MB
        # gradient of each Yoochoose GRU matrix is never written out and read back.
        self.factored = cpu32
        in_cells = {id(p) for cell in net.cells for p in cell.parameters()}
        self.autograd_dense = [p for p in dense if id(p) not in in_cells] if self.factored else list(dense)
        self.log_counts_np = log_counts.numpy() if cpu32 and log_counts is not None else None
        # The GRU stack run directly through its kernels, without autograd: the same operations, less
        # per-step bookkeeping (the one-hot input layer of embedding mode "none" keeps autograd).
        self.direct = self.factored and net.onehot is None
        # The common case (every official best setting) as one native call: kernels.FusedStep. Around
        # the same kernels and products, the ~100 Python-level calls of this path cost 1.2 ms per
        # Yoochoose step (15%; 21% on RetailRocket), with the second core idle meanwhile.
        self.fused = self.direct and self.shared and len(net.cells) == 1 and HAVE_BLOCK_GEMM
        self._fused = self._make_fused() if self.fused else None

    def dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, p, training=True)
        return x * self.dropout_mask(x, p)

    def dropout_mask(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """CPU: 0 or 1 / (1 - p) for each element of ``x``, drawn with numpy's generator (~5x faster
        than torch's CPU bernoulli)."""
        keep = self.rng.random(x.shape, dtype=np.float32) >= p
        return torch.from_numpy(keep * np.float32(1.0 / (1.0 - p)))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, samples: torch.Tensor, H: list[torch.Tensor]) -> torch.Tensor | float:
        if self.fused:
            return self.fused_call(x, y, samples, H)
        net, cfg, opt = self.net, self.cfg, self.opt
        n = len(x)
        table = net.input_table
        sink = [] if self.factored else None
        if self.direct:
            x_rows = table.detach().index_select(0, x)
            h, tape = self.gru_forward(x_rows, H)
        else:
            x_rows = table.detach().index_select(0, x).requires_grad_()
            h = net.step(x_rows, H, dropout=self.dropout, cell_fn=lambda cell, x, h: gru_cell(cell, x, h, sink))
            for i in range(len(H)):
                H[i] = H[i].detach()  # BPTT depth 1
        with torch.no_grad():
            Y = torch.cat((y, samples)) if len(samples) else y
            C = len(Y)
            hd = h.detach()
            # O and the gradient rows gW (where formed) live in two buffers kept across steps. Writing
            # gW over O (one buffer, 4 MB less through the cache) made that product 0.55 or 1.15 ms per
            # Yoochoose step depending on the run, against a steady 0.75 into a buffer of its own:
            # writing lines both cores have just read is slow here. Lockstep: 7.80 -> 7.59 and 7.74 -> 7.62 ms median.
            O = self._rows("O", C, hd)
            if self.columns_kernel:
                gather_rows(net.Wy.detach().numpy(), Y.numpy(), O.numpy())
            else:
                torch.index_select(net.Wy.detach(), 0, Y, out=O)
            # Scores R = h O^T + b. The thin products run 10-20% faster in torch's MKL on this 2-core
            # AMD CPU with the 2,000-row side first, so R and dh = dR O are computed as transposes,
            # (O h^T)^T and (O^T dR^T)^T, and the CPU's loss kernels work on R^T. Yoochoose 8.9 -> 8.5
            # ms per step; RetailRocket's BPR-max moved from rows of R to R^T later (-6%, -8%).
            if self.columns_kernel:  # biases, (logQ,) the loss and dR in one kernel, on R^T in place
                RT = torch.mm(O, hd.t())
                if cfg.loss == "cross-entropy":
                    loss, gb = xe_columns(RT.numpy(), net.By.detach().numpy(), Y.numpy(), n, self.log_counts_np,
                                          cfg.sample_alpha, cfg.logq, EPS, divisor=self.divisor)
                else:
                    loss, gb = bpr_max_columns(RT.numpy(), net.By.detach().numpy(), Y.numpy(), cfg.bpreg,
                                               cfg.elu_param, EPS, divisor=self.divisor)
                loss, gb, dR = torch.tensor(loss, dtype=torch.float64), torch.from_numpy(gb), RT.t()
            else:
                loss, dR = self.scores_and_loss(O, hd, Y, n)
                gb = dR.sum(0)
            dh = torch.mm(O.t(), dR.t()).t()
            if not self.columns_kernel:
                gW = self._rows("gW", C + n if self.shared else C, hd)
                torch.mm(dR.t(), hd, out=gW[:C])
        if self.direct:  # no dense parameters outside the GRU cells here
            grads = [self.gru_backward(dh, tape, sink)]
        else:
            grads = torch.autograd.grad(h, self.autograd_dense + [x_rows], dh)
        with torch.no_grad():
            # shared mode: the input and output rows of Wy are updated together, in one pass
            rows, extra = (torch.cat((Y, x)), grads[-1]) if self.shared else (Y, None)
            if self.columns_kernel:
                opt.step_rows_product(net.Wy, rows, dR.t(), hd, extra=extra, bias=(net.By, gb))
            else:
                if extra is not None:
                    gW[C:] = extra
                opt.step_rows(net.Wy, rows, gW, bias=(net.By, gb))
            if not self.shared:
                opt.step_rows(table, x, grads[-1])
            opt.step_dense(list(grads[:-1]), self.autograd_dense)
            for (w_ih, w_hh, b_ih, b_hh), (D_ih, X_ih), (D_hh, X_hh), g_biases in sink or ():
                opt.step_dense_product(w_ih, D_ih, X_ih)
                opt.step_dense_product(w_hh, D_hh, X_hh)
                opt.step_dense(list(g_biases), [b_ih, b_hh])
        return loss

    def fused_call(self, x: torch.Tensor, y: torch.Tensor, samples: torch.Tensor, H: list[torch.Tensor]) -> float:
        """The step as one native call. The dropouts' uniforms are drawn here, in gru_forward's order,
        so the masks equal that path's. Returns the loss as a float."""
        cfg, shape = self.cfg, (len(x), self.net.Wy.shape[1])
        emb_u = self.rng.random(shape, dtype=np.float32) if cfg.dropout_p_embed > 0 else _NO_DRAWS
        hid_u = self.rng.random(shape, dtype=np.float32) if cfg.dropout_p_hidden > 0 else _NO_DRAWS
        loss, hT = self._fused(x.numpy(), y.numpy(), samples.numpy(), H[0].numpy(), emb_u, hid_u)
        H[0] = torch.from_numpy(hT).t()  # transposed, as the other path leaves it
        return loss

    def start_epoch(self, slots: int) -> None:
        """The one-call path's carried state at the start of an epoch: zeros [slots, L], as init_hidden."""
        self.h, self.h_t = np.zeros((slots, self.net.Wy.shape[1]), dtype=np.float32), False

    def fused_rounds(self, rounds: list, store: SampleStore) -> tuple[float, int, int]:
        """Every step of ``rounds`` (a list of session_parallel_rounds' Rounds) in native calls, with the
        state resets and shrinking between rounds: the same weights, bit for bit, as the steps one by
        one through __call__ (the loss sum may differ in its last bits). Returns the loss sum and the
        numbers of steps and events."""
        chunk = _round_arrays(rounds)
        total, n_rounds = int(chunk[2].sum()), len(rounds)
        r = s = steps = events = 0
        loss = 0.0
        while True:
            # usually one call; two where the sample store runs out and is refilled in between
            rows = store.next_rows(total - steps)
            r, s, self.h, self.h_t, part, k, e = self._fused.rounds(self.rng, chunk, r, s, rows, self.h, self.h_t)
            loss, steps, events = loss + part, steps + k, events + e
            if r == n_rounds:
                return loss, steps, events

    def _make_fused(self) -> FusedStep:
        """Numpy views of the weights and optimizer state (both only ever change in place, loading
        a checkpoint included) and the step's constants."""
        net, opt, cfg = self.net, self.opt, self.cfg
        cell = net.cells[0]
        arrays = []
        for params in ([net.Wy, net.By], [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]):
            states = [opt.state_of(p) for p in params]
            # without momentum the accumulators stand in for the momenta (never read then)
            arrays += params + [a for a, _ in states] + [m if m is not None else a for a, m in states]
        return FusedStep(tuple(t.detach().numpy() for t in arrays), cfg.loss, self.log_counts_np, cfg.sample_alpha,
                         cfg.logq, cfg.bpreg, cfg.elu_param, EPS, cfg.dropout_p_embed, cfg.dropout_p_hidden,
                         opt.lr, opt.momentum, opt.eps, self.divisor)

    def gru_forward(self, x_rows: torch.Tensor, H: list[torch.Tensor]):
        """net.step through gru_cell.cell_forward, without autograd (CPU, float32, not mode "none").

        Returns the last layer's output and the tape for :meth:`gru_backward`. The dropout masks are
        drawn in net.step's order, so results equal the autograd path's."""
        cfg = self.cfg
        x, emb_mask = x_rows, None
        if cfg.dropout_p_embed > 0:
            emb_mask = self.dropout_mask(x, cfg.dropout_p_embed)
            x = x * emb_mask
        tape = []
        for i, cell in enumerate(self.net.cells):
            out, saved = cell_forward(x, H[i], cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            mask = None
            if cfg.dropout_p_hidden > 0:
                mask = self.dropout_mask(out, cfg.dropout_p_hidden)
                out = out * mask
            tape.append((cell, saved, mask))
            H[i] = x = out  # the dropped-out state is carried, as in the reference
        return x, (emb_mask, tape)

    def gru_backward(self, dh: torch.Tensor, tape, sink: list) -> torch.Tensor:
        """Back through :meth:`gru_forward`: the gradient to ``x_rows``; appends the GRU weights'
        gradient factors to ``sink`` as gru_cell's autograd backward does."""
        emb_mask, layers = tape
        d = dh
        for cell, saved, mask in reversed(layers):
            if mask is not None:
                d = d * mask
            d, f_ih, f_hh, g_b = cell_backward(d, saved, cell.weight_ih)
            sink.append(((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), f_ih, f_hh, g_b))
        return d * emb_mask if emb_mask is not None else d

    def _rows(self, name, rows, like):
        """The first ``rows`` rows of the step's persistent buffer ``name``, shaped like ``like``'s rows."""
        buf = self.__dict__.get(name)
        fits = buf is not None and buf.shape[0] >= rows and buf.shape[1] == like.shape[1] \
            and buf.dtype == like.dtype and buf.device == like.device
        if not fits:
            buf = self.__dict__[name] = torch.empty((rows, like.shape[1]), dtype=like.dtype, device=like.device)
        return buf[:rows]

    def scores_and_loss(self, O, hd, Y, n):
        """R = h O^T + b and the loss with dR, through torch ops (GPUs, BPR-max, float64)."""
        cfg = self.cfg
        b = self.net.By.detach().index_select(0, Y)
        if cfg.loss == "bpr-max":
            return bpr_max(torch.addmm(b, hd, O.t()), cfg.bpreg, cfg.elu_param, self.divisor)
        R = torch.mm(O, hd.t()).t().add_(b)  # torch's softmax takes R^T as it is
        logq = None
        if self.log_counts is not None:
            lq = self.log_counts.index_select(0, Y)
            lq[n:] *= cfg.sample_alpha  # in-batch columns: count; sampled columns: count^alpha
            logq = lq.mul_(cfg.logq)
        return cross_entropy(R, logq, self.divisor)


class _GraphedStep:
    """On a GPU: the full-batch step captured once as a CUDA graph, then replayed with new inputs.

    Launched one by one from Python, a step's ~90 small kernels left an H100 idle most of the time
    (Yoochoose: 4 ms per step, 0.35 ms of it GPU work). The same kernels run, so results equal the
    plain step's. Shrunk batches at the end of an epoch run the plain step, and so does everything
    after a failed capture (with a warning).
    """

    WARMUP = 3  # plain steps on a side stream first, as CUDA graph capture requires

    def __init__(self, step: _Step, batch_size: int):
        self.step, self.batch_size = step, batch_size
        self.graph = None
        self.failed = False
        self.warmed = 0

    def __call__(self, x, y, samples, H):
        if self.failed or len(x) != self.batch_size:
            return self.step(x, y, samples, H)
        if self.graph is None:
            if self.warmed < self.WARMUP:
                self.warmed += 1
                return self._on_side_stream(x, y, samples, H)
            if not self._capture(x, y, samples, H):
                return self.step(x, y, samples, H)
        else:
            self.x.copy_(x)
            self.y.copy_(y)
            self.samples.copy_(samples)
            for h_in, h in zip(self.H_in, H):
                h_in.copy_(h)
        self.graph.replay()
        H[:] = self.H_out  # overwritten by the next replay, after that replay has read them
        return self.loss

    def _on_side_stream(self, x, y, samples, H):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = self.step(x, y, samples, H)
        torch.cuda.current_stream().wait_stream(side)
        return loss

    def _capture(self, x, y, samples, H) -> bool:
        """Record the step on static copies of this step's inputs (recording runs nothing)."""
        self.x, self.y, self.samples = x.clone(), y.clone(), samples.clone()
        self.H_in = [h.clone() for h in H]
        graph = torch.cuda.CUDAGraph()
        out = list(self.H_in)
        try:
            with torch.cuda.graph(graph):
                self.loss = self.step(self.x, self.y, self.samples, out)
        except RuntimeError as err:
            warnings.warn(f"GRU4Rec: CUDA graph capture failed ({err}); training continues without it, more slowly.")
            self.failed = True
            return False
        self.graph, self.H_out = graph, out
        return True
