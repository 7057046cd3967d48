"""LoRA tuning of the LLM reranker as in LlamaRec: one prompt per training user, answer letter only.

A training pool is the user's true next training item plus 19 items drawn uniformly from those
the user never had in training, shuffled with a seeded generator (so the answer's letter is
random). Validation ranks the given pools (retrieved or sampled) and keeps the adapter with the
best NDCG@10; patience counts validations without improvement.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.histories import LeaveOneOut, Split
from .candidates import Candidates, evaluate_reranked


@dataclass
class Examples:
    """Users' histories and targets (``split``) with the pools to rank (``pools``, aligned rows)."""

    split: Split
    pools: Candidates

    def __post_init__(self):
        self.pools = self.pools.align(self.split)

    def __len__(self) -> int:
        return len(self.split)


def training_examples(loo: LeaveOneOut, n_candidates: int = 20, seed: int = 0, max_users: int | None = None) -> Examples:
    """LlamaRec's training prompts: for each user with >= 2 training items, predict the last one."""
    rng = np.random.default_rng(seed)
    n_items = loo.n_items
    if n_items < n_candidates:
        raise ValueError(f"{n_candidates} candidates need at least that many items; the dataset has {n_items}.")
    users = np.array([u for u, h in enumerate(loo.train) if len(h) >= 2], dtype=np.int64)
    if max_users is not None and len(users) > max_users:
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    pools = np.empty((len(users), n_candidates), dtype=np.int64)
    for row, u in enumerate(users):
        history = loo.train[u]
        seen = set(history.tolist())
        negatives: list[int] = []
        while len(negatives) < n_candidates - 1:
            for item in rng.integers(0, n_items, size=2 * n_candidates).tolist():
                if item not in seen:
                    seen.add(item)
                    negatives.append(item)
                    if len(negatives) == n_candidates - 1:
                        break
            if len(seen) >= n_items and len(negatives) < n_candidates - 1:
                raise ValueError(f"user index {u} has seen almost every item: fewer than {n_candidates - 1} negatives left.")
        pools[row] = rng.permutation(np.array([history[-1], *negatives], dtype=np.int64))
    split = Split(users=users, inputs=[loo.train[u][:-1] for u in users],
                  targets=np.array([loo.train[u][-1] for u in users], dtype=np.int64), name="train")
    return Examples(split, Candidates("train", users.copy(), pools, np.zeros(pools.shape, np.float32)))


def validate(reranker, valid: Examples) -> float:
    return _validate(reranker, valid)[0]


def _validate(reranker, valid: Examples) -> tuple[float, np.ndarray]:
    scores = reranker.score_candidates(valid.split, valid.pools)
    return evaluate_reranked(scores, valid.pools, valid.split, cutoffs=(10,)).metrics["ndcg@10"], scores


def fit(reranker, train: Examples, valid: Examples | None = None, epochs: int = 1, lr: float = 1e-4,
        batch_size: int = 8, patience: int = 20, eval_every: int | None = None, max_grad_norm: float = 1.0,
        seed: int = 0, log=print, progress: bool = False) -> list[dict]:
    """LoRA-tune ``reranker`` (adapters are added if it has none); returns the validation history.

    ``eval_every``: validate every so many optimizer steps (default: once per epoch). With
    ``valid``, the best adapter weights are restored at the end, and ``reranker.valid_scores``
    holds their scores of the validation examples ({"users", "items", "scores"}), so that fitting
    a fusion weight afterwards need not score them again. ``progress``: a bar per epoch with the
    running loss (a CPU step takes seconds, so silence would look like a hang).
    """
    if len(train) == 0:
        raise ValueError("no training examples (users need at least 2 training items).")
    if train.pools.k > reranker.config.n_candidates:
        raise ValueError(f"training pools have {train.pools.k} candidates; the reranker takes {reranker.config.n_candidates}.")
    if not getattr(reranker.model, "peft_config", None):
        reranker.add_lora()
    model = reranker.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    hit = train.pools.items == train.split.targets.reshape(-1, 1)
    if not hit.any(1).all():
        raise ValueError("every training pool must hold its user's target (the answer letter is its position).")
    answers = hit.argmax(1)
    prompt_ids = reranker.encode(reranker.prompts(train.split.inputs, train.pools.items))
    steps_per_epoch = math.ceil(len(train) / batch_size)
    eval_every = eval_every or steps_per_epoch
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    best, best_state, bad, step = -math.inf, None, 0, 0
    started = time.perf_counter()
    stop = False
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        bar = tqdm(total=steps_per_epoch, desc=f"LoRA epoch {epoch + 1}", leave=False, disable=not progress, dynamic_ncols=True)
        for start in range(0, len(train), batch_size):
            rows = order[start:start + batch_size]
            batch = reranker.training_batch([prompt_ids[r] for r in rows], answers[rows])
            loss = reranker.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if valid is None or step % eval_every:
                continue
            ndcg, scores = _validate(reranker, valid)
            history.append({"epoch": epoch + 1, "step": step, "loss": loss.item(), "valid_ndcg@10": ndcg,
                            "seconds": time.perf_counter() - started})
            log(f"epoch {epoch + 1} step {step}: loss {loss.item():.4f}, valid NDCG@10 {ndcg:.4f}")
            if ndcg > best:
                best, bad = ndcg, 0
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                reranker.valid_scores = {"users": valid.split.users.copy(), "items": valid.pools.items.copy(), "scores": scores}
            else:
                bad += 1
                stop = bad >= patience
                if stop:
                    log(f"early stop: no better NDCG@10 in {patience} validations (best {best:.4f})")
                    break
        bar.close()
        if stop:
            break
    if best_state is not None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in best_state:
                    p.copy_(best_state[n])
    model.eval()
    return history
