"""One trainer for the user-history models (SASRec, BERT4Rec, LRURec).

Reads top to bottom: seed everything, (resume from a checkpoint,) then per epoch shuffle users,
build batches with the model's ``make_batch``, step Adam/AdamW, evaluate the validation split,
keep the best weights, stop after ``patience`` evaluations without improvement, and write a
checkpoint. Under ``torchrun`` it trains data-parallel (DDP; gloo on CPU, nccl on CUDA): every
rank builds the same global batch from the same generator and takes its share of the rows, and
the loss is normalised by the global number of terms, so N processes take the step one process
would take on the whole batch.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

from ..config import ConfigError, to_dict
from ..data.histories import LeaveOneOut
from ..data.io import DataError, atomic_write
from ..evaluation.ranking import SEQUENTIAL_METRICS, evaluate_ranking
from .kernels import FreedMemoryTrimmer, keep_freed_memory


@dataclass
class TrainConfig:
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10  # evaluations without improvement before stopping; 0 = never stop early
    metric: str = "ndcg@10"  # validation metric for early stopping and model selection
    eval_every: int = 1  # epochs between validations
    eval_batch_size: int = 256
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    seed: int = 42
    ties: Literal["standard", "conservative", "median"] = "conservative"
    # Long histories: False trains on each user's newest max_len items (SASRec); True also on the
    # older windows, every target once per epoch (the official LRURec / BERT4Rec-VAE data).
    windows: bool = False
    # Hand large temporaries back to the OS after each use instead of keeping them in the heap:
    # SASRec on ml-1m peaks at 0.99 GB instead of 1.35 GB, and its epochs take ~25% longer.
    low_memory: bool = False

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"{name}={getattr(self, name)!r}: {why}")
        for name in ("lr", "batch_size", "epochs", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                bad(name, "must be positive.")
        for name in ("weight_decay", "patience", "grad_clip"):
            if getattr(self, name) < 0:
                bad(name, "must not be negative.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            bad("betas", "needs two values in [0, 1), e.g. 0.9/0.98.")
        name, _, k = self.metric.partition("@")
        if name not in SEQUENTIAL_METRICS or not k.isdigit() or int(k) < 1:
            bad("metric", f"use NAME@K with NAME one of {', '.join(SEQUENTIAL_METRICS)}, e.g. ndcg@10.")

    @property
    def cutoffs(self) -> tuple[int, ...]:
        return tuple(sorted({5, 10, 20, int(self.metric.split("@")[1])}))


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("NEXTITEM_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def make_optimizer(net, cfg: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def train(model, data: LeaveOneOut, cfg: TrainConfig, checkpoint: str | os.PathLike | None = None,
          log=print, progress: bool = True) -> list[dict]:
    """Train ``model`` (a SequentialRecommender) on ``data.train``; returns the per-epoch history.

    ``checkpoint``: written after every epoch; if it exists when training starts, training resumes
    from it and ends where the uninterrupted run would have ended.
    """
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {world} processes of the data-parallel run.")
    log = log if rank == 0 else (lambda *a, **k: None)
    device = model.device
    if device.type == "cuda" and world > 1:
        device = model.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.init(data.n_items, data.data.vocab, seed=cfg.seed)
    net = model.net
    opt = make_optimizer(net, cfg)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed + 1 + rank)  # dropout differs per rank, as in any DDP run
    state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad_evals": 0, "history": []}
    best_weights = copy.deepcopy(net.state_dict())
    if checkpoint and os.path.exists(checkpoint):
        best_weights = _load_checkpoint(checkpoint, model, opt, rng, state, cfg)
        log(f"Resumed from {checkpoint} after epoch {state['epoch']}")
    wrapped = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    # the step's large temporaries: reused heap memory, not fresh page faults (unless low_memory)
    keep_freed_memory(4 if cfg.low_memory else 32)
    trim = FreedMemoryTrimmer()  # ... but not without bound when batch shapes vary (LRURec)

    sequences = training_sequences(data.train, net.max_len, cfg.windows)
    trainable = np.arange(len(sequences))
    steps = math.ceil(len(trainable) / cfg.batch_size)
    while state["epoch"] < cfg.epochs and not (cfg.patience and state["bad_evals"] >= cfg.patience):
        epoch = state["epoch"] + 1
        net.train()
        order = rng.permutation(trainable)
        total, terms, t0 = 0.0, 0, time.perf_counter()
        bar = _bar(steps, f"epoch {epoch}", progress and rank == 0)
        for step in range(steps):
            users = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            batch = net.make_batch([sequences[u] for u in users], rng)  # the global batch, same on every rank
            local = {k: v[rank::world].to(device, non_blocking=True) for k, v in batch.items()}
            loss_sum, n = wrapped(local)
            n_global = n.detach().clone().float()
            if world > 1:
                dist.all_reduce(n_global)
            # DDP averages gradients over ranks; scaling by world makes that the global mean.
            loss = loss_sum * world / n_global.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            value = float(loss.detach()) / world
            if not math.isfinite(value):
                raise FloatingPointError(f"epoch {epoch}, step {step + 1}: the loss is {value}; lower lr (now {cfg.lr}) "
                                         "or set grad_clip.")
            total, terms = total + value, terms + 1
            trim()
            bar.update(1)
            bar.set_postfix(loss=f"{total / terms:.4f}", refresh=False)
        bar.close()
        record = {"epoch": epoch, "loss": total / max(terms, 1), "train_s": round(time.perf_counter() - t0, 2)}
        if (peak := peak_rss_gb()) is not None:  # in the checkpoint too, so a killed long run keeps it
            record["peak_rss_gb"] = peak
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
            result = evaluate_ranking(model.score, data.valid, data.n_items, cutoffs=cfg.cutoffs, mode=cfg.ties,
                                      batch_size=cfg.eval_batch_size)
            value = result.metrics[cfg.metric]
            record.update({"valid": result.metrics, "eval_s": round(time.perf_counter() - t1, 2)})
            if value > state["best"]:
                state.update(best=value, best_epoch=epoch, bad_evals=0)
                best_weights = copy.deepcopy(net.state_dict())
            else:
                state["bad_evals"] += 1
            log(f"Epoch {epoch}: loss {record['loss']:.4f} ({record['train_s']:.1f}s), valid {cfg.metric} {value:.4f} "
                f"(best {state['best']:.4f} at epoch {state['best_epoch']}) ({record['eval_s']:.1f}s)")
        else:
            log(f"Epoch {epoch}: loss {record['loss']:.4f} ({record['train_s']:.1f}s)")
        state["history"].append(record)
        state["epoch"] = epoch
        if checkpoint and rank == 0:
            _save_checkpoint(checkpoint, model, opt, rng, state, best_weights, cfg)
    if cfg.patience and state["bad_evals"] >= cfg.patience:
        log(f"Stopped early: no better valid {cfg.metric} for {cfg.patience} evaluations; best epoch {state['best_epoch']}.")
    net.load_state_dict(best_weights)
    net.eval()
    model.history = state["history"]
    model.best_epoch = state["best_epoch"]
    return state["history"]


def training_sequences(histories: list[np.ndarray], max_len: int, windows: bool) -> list[np.ndarray]:
    """What one epoch trains on: each history of >= 2 items, or with ``windows`` its windows of
    max_len + 1 items from the newest backwards, overlapping by one so every target occurs once."""
    out = []
    for h in histories:
        if len(h) < 2:
            continue
        if not windows:
            out.append(h)
            continue
        end = len(h)
        while end >= 2:
            out.append(h[max(0, end - max_len - 1):end])
            end -= max_len
    return out


def peak_rss_gb() -> float | None:
    """This process's peak resident memory so far (Linux / macOS; None elsewhere)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1e9 if sys.platform == "darwin" else 1e6), 3)  # bytes on macOS, KiB on Linux


def _bar(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------- checkpoints
# torch.save of tensors, plain dicts and numbers; loaded with weights_only=True, so no code runs.

def _save_checkpoint(path, model, opt, rng, state, best_weights, cfg) -> None:
    payload = {
        "model": model.name,
        "model_config": to_dict(model.config),
        "train_config": to_dict(cfg),
        "net": model.net.state_dict(),
        "best_net": best_weights,
        "optimizer": opt.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "state": state,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _load_checkpoint(path, model, opt, rng, state, cfg):
    try:
        payload = torch.load(path, map_location=model.device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and what to do
        raise DataError(f"{path}: not a readable nextitem checkpoint ({e}); delete it to start afresh.") from None
    same_model = payload.get("model") == model.name and payload.get("model_config") == to_dict(model.config)
    # Epochs and patience may be raised on resume, and memory use changed; everything that shapes
    # the run must match.
    free = ("epochs", "patience", "low_memory", "eval_batch_size")
    fixed = {k: v for k, v in to_dict(cfg).items() if k not in free}
    same_train = {k: v for k, v in payload.get("train_config", {}).items() if k not in free} == fixed
    if not (same_model and same_train):
        raise ConfigError(f"{path}: this checkpoint was written by a run with other settings; "
                          "use the same model and training parameters to resume, or delete the file to start afresh.")
    model.net.load_state_dict(payload["net"])
    opt.load_state_dict(payload["optimizer"])
    rng.bit_generator.state = payload["rng"]
    torch.set_rng_state(payload["torch_rng"])
    state.update(payload["state"])
    return payload["best_net"]

