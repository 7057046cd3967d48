"""The GRU cell of training: torch.nn.GRUCell's math as one autograd node with a hand-written backward.

Same result as ``nn.GRUCell`` (r gates W_hn h + b_hn). One node instead of a dozen keeps the per-step
overhead of training small, and on the CPU (float32) the gates and their gradients are two fused
kernels (kernels.gru_forward / gru_backward) instead of ~25 small torch ops (with the fused
cross-entropy, 7% off a Yoochoose step). The gradient to the previous hidden state is not computed:
GRU4Rec truncates backpropagation through time at one step.
"""
from __future__ import annotations

import torch
from torch import nn

from .kernels import gru_backward, gru_forward


def cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """CPU float32: the new state (a transposed view, [B, L]) and what :func:`cell_backward` needs."""
    # Products written as (W @ x^T)^T: for these thin shapes torch's MKL is 10-20% faster with the
    # long side first (see nextitem.training.gru4rec._Step). The results stay transposed: the
    # elementwise ops and, through the new hidden state, later products take either layout.
    giT = torch.mm(w_ih.detach(), x.detach().t())
    ghT = torch.mm(w_hh.detach(), h.detach().t())
    outT = gru_forward(giT.numpy(), ghT.numpy(), b_ih.detach().numpy(), b_hh.detach().numpy(), h.detach().t().numpy())
    return torch.from_numpy(outT).t(), (x.detach(), h.detach(), giT, ghT)  # r, z, n, W_hn h + b_hn in giT, ghT


def cell_backward(dout, saved, w_ih, need_dx: bool = True):
    """Back through :func:`cell_forward`: (dx or None, (D_ih, X_ih), (D_hh, X_hh), (g_b_ih, g_b_hh)),
    the weight gradients as factors, d w_ih = D_ih @ X_ih and d w_hh = D_hh @ X_hh."""
    x, h, giT, ghT = saved
    dgiT, dghT, db_ih, db_hh = (torch.from_numpy(a) for a in gru_backward(
        dout.t().numpy(), giT.numpy(), ghT.numpy(), h.t().numpy()))
    dx = torch.mm(w_ih.detach().t(), dgiT).t() if need_dx else None  # = dgi @ w_ih, faster
    return dx, (dgiT, x), (dghT, h), (db_ih, db_hh)


class GRUCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h, w_ih, w_hh, b_ih, b_hh, sink=None):
        ctx.fused = x.device.type == "cpu" and x.dtype == torch.float32
        ctx.sink = sink
        if sink is not None:
            ctx.params = (w_ih, w_hh, b_ih, b_hh)  # leaves: held by reference, not saved for backward
        if ctx.fused:
            out, saved = cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
            ctx.save_for_backward(w_ih, *saved)
            return out
        giT = torch.mm(w_ih, x.t())  # transposed, as in cell_forward
        ghT = torch.mm(w_hh, h.t())
        L = h.shape[1]
        gi, gh = giT.t().add_(b_ih), ghT.t().add_(b_hh)
        rz = gi[:, : 2 * L].add_(gh[:, : 2 * L]).sigmoid_()
        r, z = rz[:, :L], rz[:, L:]
        ghn = gh[:, 2 * L :]
        n = torch.addcmul(gi[:, 2 * L :], r, ghn).tanh_()
        out = torch.lerp(n, h, z)  # (1 - z) * n + z * h
        ctx.save_for_backward(x, h, w_ih, rz, n, ghn)
        return out

    @staticmethod
    def backward(ctx, dout):
        if ctx.fused:
            w_ih, *saved = ctx.saved_tensors
            dx, (dgiT, x), (dghT, h), (db_ih, db_hh) = cell_backward(dout, saved, w_ih, ctx.needs_input_grad[0])
        else:
            x, h, w_ih, rz, n, ghn = ctx.saved_tensors
            L = h.shape[1]
            r, z = rz[:, :L], rz[:, L:]
            # laid out like the forward's transposed products (and dout), so the elementwise ops below
            # run over contiguous memory
            dgiT = torch.empty((3 * L, x.shape[0]), dtype=dout.dtype, device=dout.device)
            dgi = dgiT.t()
            dn = dgi[:, 2 * L :]
            torch.mul(dout, 1 - z, out=dn)
            dn.mul_(1 - n * n)  # through tanh
            dr = dgi[:, :L]
            torch.mul(dn, ghn, out=dr)
            dr.mul_(r * (1 - r))
            dz = dgi[:, L : 2 * L]
            torch.mul(dout, h - n, out=dz)
            dz.mul_(z * (1 - z))
            dghT = dgiT.clone()
            dghT[2 * L :].mul_(r.t())
            db_ih, db_hh = dgiT.sum(1), dghT.sum(1)
            dx = torch.mm(w_ih.t(), dgiT).t() if ctx.needs_input_grad[0] else None  # = dgi @ w_ih, faster
        if ctx.sink is not None:  # the weights' gradients as factors, for AdagradM.step_dense_product
            ctx.sink.append((ctx.params, (dgiT, x), (dghT, h), (db_ih, db_hh)))
            return dx, None, None, None, None, None, None
        return dx, None, dgiT @ x, dghT @ h, db_ih, db_hh, None


def gru_cell(cell: nn.GRUCell, x: torch.Tensor, h: torch.Tensor, sink: list | None = None) -> torch.Tensor:
    """``cell(x, h)`` through the single-node function above.

    With a ``sink`` list, the backward does not form the weight gradients: it appends
    ``((w_ih, w_hh, b_ih, b_hh), (D_ih, X_ih), (D_hh, X_hh), (g_b_ih, g_b_hh))`` with
    d w_ih = D_ih @ X_ih and d w_hh = D_hh @ X_hh, and gives those four parameters no gradient.
    """
    if h.requires_grad:  # the function has no gradient to h; GRU4Rec's carried states never need one
        return cell(x, h)
    return GRUCellFn.apply(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, sink)
