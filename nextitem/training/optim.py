"""Adagrad with (heavy-ball) momentum, as GRU4Rec trains: dense parameters and touched rows.

Dense:  acc += g^2;  step = -lr * g / sqrt(acc + eps);  mom = mu * mom + step;  p += mom.
Item tables are updated on the rows a mini-batch touched only (duplicate rows summed first);
untouched rows neither decay their momentum nor move ("lazy" momentum, as in the reference).
"""
from __future__ import annotations

import numpy as np
import torch

from .kernels import HAVE_BLOCK_GEMM, adagrad_dense, adagrad_rows, gemm_adagrad, rows_product_adagrad


class AdagradM:
    def __init__(self, dense: list[torch.Tensor], sparse: list[torch.Tensor], lr: float, momentum: float = 0.0, eps: float = 1e-6):
        self.lr, self.momentum, self.eps = lr, momentum, eps
        self.dense = list(dense)
        self._index = {id(p): i for i, p in enumerate(self.dense)}
        self.acc = [torch.zeros_like(p) for p in self.dense]
        self.mom = [torch.zeros_like(p) for p in self.dense] if momentum > 0 else None
        self.sparse_acc = {id(p): torch.zeros_like(p) for p in sparse}
        self.sparse_mom = {id(p): torch.zeros_like(p) for p in sparse} if momentum > 0 else None

    @torch.no_grad()
    def step_dense(self, grads: list[torch.Tensor], params: list[torch.Tensor] | None = None) -> None:
        """Update dense parameters with their gradients: every one (same order as ``dense``) or ``params``."""
        params = self.dense if params is None else params
        if not params:
            return
        index = [self._index[id(p)] for p in params]
        acc = [self.acc[i] for i in index]
        mom = None if self.mom is None else [self.mom[i] for i in index]
        if params[0].device.type == "cpu":
            def flat(t):  # a flat numpy view, no copy
                return t.detach().reshape(-1).numpy()

            for k, (p, g) in enumerate(zip(params, grads)):
                adagrad_dense(flat(p), flat(acc[k]), None if mom is None else flat(mom[k]),
                              flat(g.contiguous()), self.lr, self.momentum, self.eps)
            return
        torch._foreach_addcmul_(acc, grads, grads)
        denom = torch._foreach_add(acc, self.eps)
        torch._foreach_rsqrt_(denom)
        steps = torch._foreach_mul(grads, denom)
        if mom is not None:
            torch._foreach_mul_(mom, self.momentum)
            torch._foreach_add_(mom, steps, alpha=-self.lr)
            torch._foreach_add_(params, mom)
        else:
            torch._foreach_add_(params, steps, alpha=-self.lr)

    @torch.no_grad()
    def step_dense_product(self, param: torch.Tensor, D: torch.Tensor, X: torch.Tensor) -> None:
        """Update the 2-D dense ``param`` whose gradient is ``D @ X``.

        On the CPU (float32, torch with MKL) the product is never materialized: kernels.gemm_adagrad
        multiplies and updates a block of rows at a time. Elsewhere it is ``step_dense`` of the product.
        """
        if not (param.device.type == "cpu" and param.dtype == torch.float32 and HAVE_BLOCK_GEMM):
            self.step_dense([D @ X], [param])
            return
        i = self._index[id(param)]
        x_transposed = not X.is_contiguous() and X.t().is_contiguous()
        X = X.t() if x_transposed else X.contiguous()
        gemm_adagrad(D.contiguous().numpy(), X.detach().numpy(), x_transposed, param.detach().numpy(),
                     self.acc[i].numpy(), None if self.mom is None else self.mom[i].numpy(),
                     self.lr, self.momentum, self.eps)

    @torch.no_grad()
    def step_rows_product(self, param: torch.Tensor, rows: torch.Tensor, D: torch.Tensor, X: torch.Tensor,
                          extra: torch.Tensor | None = None, bias: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """``step_rows`` with the gradient rows ``D @ X`` (then ``extra``'s rows) for ``rows``.

        On the CPU (float32, torch with MKL) the rows of D are summed per distinct row first and the
        gradient is formed a block of rows at a time, in cache (kernels.rows_product_adagrad);
        elsewhere the product is formed and passed to ``step_rows``.
        """
        if not (param.device.type == "cpu" and param.dtype == torch.float32 and HAVE_BLOCK_GEMM):
            grad = D @ X
            self.step_rows(param, rows, grad if extra is None else torch.cat((grad, extra)), bias=bias)
            return
        acc, mom = self._sparse_state(param)
        E = extra.contiguous().numpy() if extra is not None else np.zeros((0, param.shape[1]), dtype=np.float32)
        rows_product_adagrad(param.data.numpy(), acc.numpy(), None if mom is None else mom.numpy(), rows.numpy(),
                             D.contiguous().numpy(), X.contiguous().numpy(), E, self.lr, self.momentum, self.eps,
                             bias=self._kernel_bias(bias))

    def state_of(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(accumulator, momentum or None) of any parameter, dense or item table."""
        if id(param) in self._index:
            i = self._index[id(param)]
            return self.acc[i], self.mom[i] if self.mom is not None else None
        return self._sparse_state(param)

    def _sparse_state(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(accumulator, momentum or None) of an item table."""
        return self.sparse_acc[id(param)], self.sparse_mom[id(param)] if self.sparse_mom is not None else None

    def _kernel_bias(self, bias: tuple[torch.Tensor, torch.Tensor] | None) -> tuple | None:
        """``bias=(b, g)`` as the row kernels take it: numpy (b, acc, mom or None, g)."""
        if bias is None:
            return None
        b, gb = bias
        acc, mom = self._sparse_state(b)
        return b.data.numpy(), acc.numpy(), None if mom is None else mom.numpy(), gb.contiguous().numpy()

    @torch.no_grad()
    def step_rows(self, param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor,
                  bias: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Update ``param[rows]`` with ``grad`` (one gradient row per index; duplicates are summed).

        ``bias=(b, g)``: also update the 1-D table ``b`` at ``rows[:len(g)]`` with ``g`` (on the CPU in
        the same kernel pass). ``grad`` may be overwritten. On the CPU one fused kernel does it all;
        elsewhere torch ops.
        """
        acc, mom = self._sparse_state(param)
        if param.device.type == "cpu" and param.dtype == torch.float32:
            view = (lambda t: t.view(-1, 1)) if param.dim() == 1 else (lambda t: t)
            adagrad_rows(view(param.data).numpy(), view(acc).numpy(), None if mom is None else view(mom).numpy(),
                         rows.numpy(), view(grad).contiguous().numpy(), self.lr, self.momentum, self.eps,
                         bias=self._kernel_bias(bias))
            return
        if bias is not None:
            b, gb = bias
            self.step_rows(b, rows[: len(gb)], gb)
        rows, grad = coalesce_rows(rows, grad)  # padded with repeats of its first row: write back with index_copy_
        a = acc.index_select(0, rows).addcmul_(grad, grad)
        acc.index_copy_(0, rows, a)
        step = a.add_(self.eps).rsqrt_().mul_(grad)  # reuses a's storage: acc already holds the new value
        if mom is not None:
            m = mom.index_select(0, rows).mul_(self.momentum).add_(step, alpha=-self.lr)
            mom.index_copy_(0, rows, m)
            param.index_copy_(0, rows, param.index_select(0, rows).add_(m))
        else:
            param.index_copy_(0, rows, param.index_select(0, rows).add_(step, alpha=-self.lr))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"acc.{i}": t for i, t in enumerate(self.acc)}
        if self.mom is not None:
            state.update({f"mom.{i}": t for i, t in enumerate(self.mom)})
        for j, t in enumerate(self.sparse_acc.values()):
            state[f"sparse_acc.{j}"] = t
        if self.sparse_mom is not None:
            for j, t in enumerate(self.sparse_mom.values()):
                state[f"sparse_mom.{j}"] = t
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, t in self.state_dict().items():
            t.copy_(state[key])


def coalesce_rows(index: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the rows of ``values`` that share an ``index``; returns (rows, summed rows), as long as ``index``.

    Each distinct index comes once with its sum, then the first (row, sum) pair repeats as padding,
    so writing results back with ``index_copy_`` writes the same value however often a row appears.
    A fixed length instead of ``torch.unique``'s: on a GPU no wait to learn the output size, and the
    step can be captured as a CUDA graph.
    """
    k = len(index)
    if k == 0:
        return index, values
    # duplicates summed in their given order; int32 keys (row numbers fit) take half the radix passes
    # of int64 ones on a GPU
    order = torch.sort(index.int(), stable=True).indices
    srt = index.index_select(0, order)
    starts = torch.ones(k, dtype=torch.bool, device=index.device)
    starts[1:] = srt[1:] != srt[:-1]
    seg = starts.cumsum(0) - 1  # run number of each sorted entry
    summed = torch.zeros_like(values).index_add_(0, seg, values.index_select(0, order))
    rows = torch.zeros_like(index).index_copy_(0, seg, srt)  # equal values for a run's duplicate writes
    valid = torch.arange(k, device=index.device) <= seg[-1]
    rows = torch.where(valid, rows, rows[0])
    summed = torch.where(valid.view((k,) + (1,) * (values.dim() - 1)), summed, summed[:1])
    return rows, summed
