"""GRU4Rec's losses with their gradients computed in closed form.

Each function takes the score matrix R [n, C] (row i's target is column i; the other columns are
the in-batch targets of the other rows and then the shared samples) and returns the mean loss over
rows and dR = d loss / d R. Writing the gradient out saves autograd's per-op bookkeeping on the
largest tensor of the step; tests compare both with autograd on the direct formulas.
"""
from __future__ import annotations

import torch

EPS = 1e-24  # as in the reference: -log(p + 1e-24)


def cross_entropy(R: torch.Tensor, logq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy over the columns, optionally logQ-corrected: R_ij - log q_j."""
    n = R.shape[0]
    if logq is not None:
        R = R - logq
    P = torch.softmax(R, dim=1)
    p_target = P.diagonal()
    loss = -torch.log(p_target + EPS).sum() / n
    # d/dR of -log(p_ii + eps) is  p_ii / (p_ii + eps) * (P - onehot): equal to autograd's answer
    # even when p_ii underflows.
    factor = (p_target / (p_target + EPS)).unsqueeze(1) / n
    dR = P.mul_(factor)
    dR.diagonal().sub_(factor.squeeze(1))
    return loss, dR


def bpr_max(R: torch.Tensor, bpreg: float, elu_param: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR-max (Hidasi & Karatzoglou, CIKM 2018) over ELU(R) (linear when elu_param is 0).

    Row loss = -log(sum_j s_j sigmoid(r_i - r_j) + eps) + bpreg * sum_j s_j r_j^2 with s the
    softmax over the row's negatives only (the target column excluded).
    """
    n = R.shape[0]
    if elu_param > 0:
        S = torch.nn.functional.elu(R, alpha=elu_param)
    else:
        S = R
    diag_mask = torch.eye(n, R.shape[1], dtype=torch.bool, device=R.device)
    # softmax over negatives: exclude the target column from max and sum
    neg = S.masked_fill(diag_mask, float("-inf"))
    s = torch.softmax(neg, dim=1)  # s_ii = 0
    r_t = S.diagonal().unsqueeze(1)
    sig = torch.sigmoid(r_t - S)  # sigma(r_i - r_j)
    A = (s * sig).sum(1)
    S2 = S * S
    Q = (s * S2).sum(1)
    loss = (-torch.log(A + EPS) + bpreg * Q).sum() / n
    inv = (1.0 / (A + EPS)).unsqueeze(1)
    # d/dr_j (j != i): -s_j (sig_j^2 - A) / (A + eps) + bpreg * s_j (r_j^2 - Q + 2 r_j)
    G = sig * sig
    G.sub_(A.unsqueeze(1)).mul_(-inv)
    if bpreg:
        G.add_((S2 - Q.unsqueeze(1) + 2 * S).mul_(bpreg))
    G.mul_(s)
    # d/dr_i: -(1 / (A + eps)) * sum_j s_j sig_j (1 - sig_j)
    d_target = -(s * sig * (1 - sig)).sum(1) * inv.squeeze(1)
    G.diagonal().copy_(d_target)
    G.div_(n)
    if elu_param > 0:
        # ELU'(x) = 1 for x > 0, else elu(x) + alpha
        G = torch.where(R > 0, G, G * (S + elu_param))
    return loss, G
