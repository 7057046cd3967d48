"""Next-item evaluation of a session model over all items (the official GRU4Rec protocol).

Test sessions run session-parallel in order of their first event; the hidden state starts from zero
for every session; for each event but a session's last, every item is scored and the rank of the
next item is taken (items already seen in the session are not filtered). Test events whose item
the model never saw in training were dropped when the test data was mapped to the model's item
vocabulary (the session stitched around them); their number is reported.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..data import SessionData
from ..models.gru4rec import session_parallel_steps
from .metrics import RankAccumulator, target_ranks, target_ranks_transposed


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_predictions: int
    n_unseen: int
    seconds: float
    mode: str
    cutoffs: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The official run.py lines: ``Recall@N: x MRR@N: y``."""
        return [f"Recall@{k}: {self.metrics[f'recall@{k}']:.6f} MRR@{k}: {self.metrics[f'mrr@{k}']:.6f}" for k in self.cutoffs]


@torch.no_grad()
def evaluate_sessions(model, data: SessionData, cutoffs=(20,), mode: str = "standard", batch_size: int = 512,
                      progress: bool = False) -> EvalResult:
    """Recall@N and MRR@N of ``model`` (a fitted GRU4Rec) on ``data`` mapped with the model's vocabulary."""
    model._check_fitted()
    net = model.net
    net.eval()
    device = model.device
    acc = RankAccumulator(cutoffs)
    t0 = time.perf_counter()
    table = net.input_table
    H = net.init_hidden(min(batch_size, data.n_sessions), device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=data.n_predictions(), desc="evaluating", unit="pred", leave=False, mininterval=1.0)
    fast = device.type == "cpu" and net.Wy.dtype == torch.float32
    if fast:  # scores as Wy @ h^T into one reused buffer: the faster GEMM layout, no 100 MB allocations
        buffer = torch.empty(net.n_items * H[0].shape[0], dtype=torch.float32)
        Wy, By = net.Wy.detach(), net.By.detach()
    for x, y in session_parallel_steps(data, batch_size, H):
        h = net.step(table.index_select(0, x), H)
        if fast:
            st = torch.mm(Wy, h.t().contiguous(), out=buffer[: net.n_items * len(x)].view(net.n_items, len(x)))
            acc.add(target_ranks_transposed(st, By, y, mode))
        else:
            acc.add(target_ranks(net.score_all(h), y, mode))
        if bar is not None:
            bar.update(len(x))
    if bar is not None:
        bar.close()
    return EvalResult(acc.result(), acc.n, data.n_unseen, time.perf_counter() - t0, mode, acc.cutoffs)
