"""CPU kernels for the per-step hot spots that PyTorch cannot fuse on its own.

GRU4Rec makes ~10k small steps per epoch. Apart from its matrix products, their cost is framework
overhead and memory traffic: the sparse Adagrad-with-momentum update of the touched item rows (and
their biases) is a dozen torch ops over the same rows, BPR-max ~20 passes over the score matrix;
here each is one kernel.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic


@njit(cache=True, nogil=True)
def _row_groups(idx):  # pragma: no cover - compiled
    """The positions of ``idx`` in stable sorted order, and where each run of equal indices starts
    in it: group g is order[starts[g]:starts[g + 1]], for g < n_groups."""
    order = np.argsort(idx, kind="mergesort")
    n = idx.shape[0]
    starts = np.empty(n + 1, dtype=np.int64)
    n_groups = 0
    for k in range(n):
        if k == 0 or idx[order[k]] != idx[order[k - 1]]:
            starts[n_groups] = k
            n_groups += 1
    starts[n_groups] = n
    return order, starts, n_groups


@njit(cache=True, nogil=True, inline="always")
def _adagrad_row(W, acc, mom, r, G, q, lr, mu, eps, use_mom):  # pragma: no cover - compiled
    """Adagrad(+momentum) on row r of W with the gradient row q of G (the three row kernels' update).
    Plain 2-D indexing rather than row views: the momentum loop runs 1.4x faster."""
    if use_mom:
        for d in range(W.shape[1]):
            g = G[q, d]
            v = acc[r, d] + g * g
            acc[r, d] = v
            m = mu * mom[r, d] - lr * g / np.sqrt(v + eps)
            mom[r, d] = m
            W[r, d] += m
    else:
        for d in range(W.shape[1]):
            g = G[q, d]
            v = acc[r, d] + g * g
            acc[r, d] = v
            W[r, d] -= lr * g / np.sqrt(v + eps)


@njit(cache=True, nogil=True, inline="always")
def _bias_row_update(Bv, accB, momB, gB, n_bias, order, a, b, r, lr, mu, eps, use_mom):  # pragma: no cover - compiled
    """Adagrad(+momentum) on the bias row r with the gradients of the group's positions below n_bias."""
    gb = np.float32(0.0)
    hit = False
    for k in range(a, b):
        o = order[k]
        if o < n_bias:
            gb += gB[o]
            hit = True
    if hit:
        v = accB[r] + gb * gb
        accB[r] = v
        if use_mom:
            m = mu * momB[r] - lr * gb / np.sqrt(v + eps)
            momB[r] = m
            Bv[r] += m
        else:
            Bv[r] -= lr * gb / np.sqrt(v + eps)


@njit(parallel=True, cache=True, nogil=True)
def _adagrad_rows(W, acc, mom, idx, G, lr, mu, eps, use_mom, Bv, accB, momB, gB, n_bias):  # pragma: no cover - compiled
    order, starts, n_groups = _row_groups(idx)
    L = W.shape[1]
    for gi in prange(n_groups):
        a, b = starts[gi], starts[gi + 1]
        first = order[a]
        r = idx[first]
        for k in range(a + 1, b):  # coalesce duplicate rows into the first one
            for d in range(L):
                G[first, d] += G[order[k], d]
        _adagrad_row(W, acc, mom, r, G, first, lr, mu, eps, use_mom)
        if n_bias > 0:  # the bias rows: gradients for the first n_bias indices, summed per row
            _bias_row_update(Bv, accB, momB, gB, n_bias, order, a, b, r, lr, mu, eps, use_mom)
    return n_groups


@njit(parallel=True, cache=True, nogil=True)
def _adagrad_dense(W, acc, mom, G, lr, mu, eps, use_mom):  # pragma: no cover - compiled
    # One flat loop per case, with no branch inside: LLVM vectorizes it (7x faster than a loop that
    # tests use_mom per element: 0.13 ms instead of 0.94 ms for a 480x1440 GRU matrix).
    n = W.shape[0]
    if use_mom:
        for i in prange(n):
            g = G[i]
            v = acc[i] + g * g
            acc[i] = v
            m = mu * mom[i] - lr * g / np.sqrt(v + eps)
            mom[i] = m
            W[i] += m
    else:
        for i in prange(n):
            g = G[i]
            v = acc[i] + g * g
            acc[i] = v
            W[i] -= lr * g / np.sqrt(v + eps)


# exp in float32 by range reduction, exp(x) = 2^k * exp(r) with |r| <= ln2 / 2, in two flat loops
# that LLVM vectorizes: numba's np.exp is a scalar libm call (no SVML here), and the exps were 80%
# of the BPR-max kernel.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with 9 bits so k * _LN2_HI is exact
_LN2_LO = np.float32(-2.1219444005469057e-04)


@njit(cache=True, nogil=True, inline="always")
def _exp_into(x, out, pow2):  # pragma: no cover - compiled
    """out[j] = exp(x[j]) (x and out may be the same row); pow2 is int32 scratch of the same length.

    Within 1.5 ulp for -87 <= x <= 88 (the kernel's arguments are <= 0); 0 below, inf above, NaN for NaN.
    """
    lo, hi, zero, inf = np.float32(-87.0), np.float32(88.0), np.float32(0.0), np.float32(np.inf)
    for j in range(x.shape[0]):
        v = x[j]
        w = min(max(v, lo), hi)
        k = np.floor(w * _LOG2E + np.float32(0.5))
        r = w - k * _LN2_HI - k * _LN2_LO
        p = np.float32(1.0 / 5040.0)  # Taylor to r^7: truncation error < 6e-9 for |r| <= ln2 / 2
        p = p * r + np.float32(1.0 / 720.0)
        p = p * r + np.float32(1.0 / 120.0)
        p = p * r + np.float32(1.0 / 24.0)
        p = p * r + np.float32(1.0 / 6.0)
        p = p * r + np.float32(0.5)
        p = p * r + np.float32(1.0)
        p = p * r + np.float32(1.0)
        p = zero if v < lo else p  # selects, not branches: the loop stays vectorized
        p = inf if v > hi else p
        out[j] = v if v != v else p
        pow2[j] = (np.int32(k) + np.int32(127)) << np.int32(23)  # the float32 bits of 2^k
    scale = pow2.view(np.float32)
    for j in range(x.shape[0]):
        out[j] *= scale[j]


# ---- The two losses over R^T (xe_columns, bpr_max_columns) split the C columns into one chunk per
# thread; each chunk keeps its own per-row maxima and sums, merged between the parallel passes.

def _n_chunks(n_chunks: int | None, C: int) -> int:
    """The number of column chunks: ``n_chunks`` (default: one per thread), at most one per column."""
    return max(1, min(n_chunks or get_num_threads(), C))


@njit(cache=True, nogil=True, inline="always")
def _max_over_chunks(part_m):  # pragma: no cover - compiled
    """Per row (column of ``part_m``) the maximum over the chunks (its rows)."""
    M = part_m[0].copy()
    for t in range(1, part_m.shape[0]):
        for i in range(M.shape[0]):
            M[i] = max(M[i], part_m[t, i])
    return M


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath={"contract"})  # fused multiply-adds
def _bpr_max_columns(RT, By, Y, bpreg, alpha, eps, div, ET, SG, gb, part_m, part_sums, row_loss):  # pragma: no cover - compiled
    # The scores come transposed, as in _xe_columns: row j of RT is column j of R for the whole batch,
    # so every loop runs over contiguous memory and vectorizes (exps included), and the product
    # before and the two after take the faster layout. The chunks' row sums are float64.
    # RT ends as d (summed loss / div) / dR, transposed; ET and SG are scratch (softmax weights, sigmoids).
    C, n = RT.shape
    T = part_m.shape[0]
    size = (C + T - 1) // T
    one, zero, two = np.float32(1.0), np.float32(0.0), np.float32(2.0)
    for t in prange(T):  # 1: biases added, ELU taken (in place); row maxima
        lo, hi = t * size, min(C, (t + 1) * size)
        m = part_m[t]
        pow2 = np.empty(n, dtype=np.int32)
        for i in range(n):
            m[i] = -np.inf
        for j in range(lo, hi):
            shift = By[Y[j]]
            s, a = RT[j], ET[j]
            for i in range(n):
                s[i] += shift
            if alpha > 0:  # max(r, 0) + alpha * (exp(min(r, 0)) - 1)
                for i in range(n):
                    a[i] = min(s[i], zero)
                _exp_into(a, a, pow2)
                for i in range(n):
                    s[i] = max(s[i], zero) + alpha * (a[i] - one)
            for i in range(n):
                m[i] = max(m[i], s[i])
    M = _max_over_chunks(part_m)
    c = np.empty(n, dtype=np.float32)
    rt = np.empty(n, dtype=np.float32)
    for i in range(n):
        rt[i] = RT[i, i]
        c[i] = np.exp(min(M[i] - rt[i], np.float32(80.0)))  # bounded so that e * c cannot overflow
    for t in prange(T):  # 2: softmax weights over the negatives, sigmoid(r_i - s_j), row sums
        lo, hi = t * size, min(C, (t + 1) * size)
        Z, A, B, Q = part_sums[t, 0], part_sums[t, 1], part_sums[t, 2], part_sums[t, 3]
        for i in range(n):
            Z[i] = A[i] = B[i] = Q[i] = 0.0
        pow2 = np.empty(n, dtype=np.int32)
        for j in range(lo, hi):
            s, e, sig = RT[j], ET[j], SG[j]
            for i in range(n):
                e[i] = s[i] - M[i]
            _exp_into(e, e, pow2)
            if j < n:
                e[j] = zero  # the target is not its own negative
            for i in range(n):
                sg = one / (one + e[i] * c[i])
                sig[i] = sg
                ei, si, sgi = np.float64(e[i]), np.float64(s[i]), np.float64(sg)
                Z[i] += ei
                A[i] += ei * sgi
                B[i] += ei * sgi * sgi
                Q[i] += ei * si * si
    k_sig = np.empty(n, dtype=np.float32)
    k_reg = np.empty(n, dtype=np.float32)
    k_0 = np.empty(n, dtype=np.float32)
    d = np.empty(n, dtype=np.float32)
    for i in range(n):
        Z = A = B = Q = 0.0
        for t in range(T):
            Z += part_sums[t, 0, i]
            A += part_sums[t, 1, i]
            B += part_sums[t, 2, i]
            Q += part_sums[t, 3, i]
        A, B, Q = A / Z, B / Z, Q / Z
        row_loss[i] = bpreg * Q - np.log(A + eps)
        inv = 1.0 / (A + eps)
        k_sig[i] = -inv / (Z * div)
        k_reg[i] = bpreg / (Z * div)
        k_0[i] = (A * inv - bpreg * Q) / (Z * div)
        dt = -inv * (A - B) / div  # the target's own column
        if alpha > 0 and rt[i] <= 0:  # ELU's slope there: alpha * exp(r) = s + alpha
            dt *= rt[i] + alpha
        d[i] = dt
    for t in prange(T):  # 3: d loss / dR through the softmax and sigmoids, then ELU's slope
        lo, hi = t * size, min(C, (t + 1) * size)
        for j in range(lo, hi):
            s, e, sig = RT[j], ET[j], SG[j]
            for i in range(n):
                si, sg = s[i], sig[i]
                g = e[i] * (sg * sg * k_sig[i] + (si * si + two * si) * k_reg[i] + k_0[i])
                if alpha > 0:
                    g *= one if si > 0 else si + alpha
                s[i] = g
            if j < n:
                s[j] = d[j]
            total = np.float32(0.0)
            for i in range(n):
                total += s[i]
            gb[j] = total


def bpr_max_columns(RT: np.ndarray, By: np.ndarray, Y: np.ndarray, bpreg: float, elu_param: float, eps: float,
                    n_chunks: int | None = None, divisor: int | None = None) -> tuple[float, np.ndarray]:
    """BPR-max (see losses.bpr_max) over the columns of R, given transposed: RT [C, n], float32.

    Column j's score is shifted by By[Y[j]]; row i's target is column i. The loss is summed over
    the rows and divided by ``divisor`` (default n; see losses.cross_entropy). Overwrites RT with
    d loss / d R, transposed; returns (loss, its gradient to the biases of the C columns).
    The columns are split into ``n_chunks`` (default: one per thread).
    """
    C, n = RT.shape
    div = n if divisor is None else divisor
    T = _n_chunks(n_chunks, C)
    gb = np.empty(C, dtype=np.float32)
    row_loss = np.empty(n, dtype=np.float64)
    _bpr_max_columns(RT, By, Y, np.float32(bpreg), np.float32(elu_param), np.float64(eps), np.float64(div),
                     np.empty_like(RT), np.empty_like(RT), gb, np.empty((T, n), dtype=np.float32),
                     np.empty((T, 4, n)), row_loss)
    return float(row_loss.sum() / div), gb


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _xe_columns(RT, By, Y, log_counts, n_in, alpha, logq, eps, div, gb, part_m, part_s):  # pragma: no cover - compiled
    # RT holds the scores transposed: row j is column j of R for the whole batch, so each loop runs
    # over contiguous memory. The columns are split into one chunk per thread; each chunk keeps its
    # own row maxima and exp sums, merged in between the two parallel passes.
    C, n = RT.shape
    T = part_m.shape[0]
    size = (C + T - 1) // T
    one = np.float32(1.0)
    for t in prange(T):
        lo, hi = t * size, min(C, (t + 1) * size)
        m = part_m[t]
        s = part_s[t]
        pow2 = np.empty(n, dtype=np.int32)
        for i in range(n):
            m[i] = -np.inf
            s[i] = 0.0
        for j in range(lo, hi):
            item = Y[j]
            shift = By[item]
            if logq > 0:  # logQ: in-batch columns' targets come with frequency count, samples with count^alpha
                shift -= logq * (alpha if j >= n_in else one) * log_counts[item]
            for i in range(n):
                v = RT[j, i] + shift
                RT[j, i] = v
                m[i] = max(m[i], v)
        for j in range(lo, hi):
            for i in range(n):
                RT[j, i] -= m[i]
            _exp_into(RT[j], RT[j], pow2)
            for i in range(n):
                s[i] += RT[j, i]
    M = _max_over_chunks(part_m)
    S = np.zeros(n)
    for t in range(T):
        for i in range(n):
            S[i] += part_s[t, i] * np.exp(part_m[t, i] - M[i])
    f = np.empty(n)  # d loss / d log p_ii, as in losses.cross_entropy
    loss = 0.0
    for i in range(n):
        t = i // size
        p = RT[i, i] * np.exp(part_m[t, i] - M[i]) / S[i]
        loss -= np.log(p + eps)
        f[i] = p / (p + eps) / div
    for t in range(T):  # part_m becomes each chunk's scale: exp(m_t - M) / S * f
        for i in range(n):
            part_m[t, i] = np.exp(part_m[t, i] - M[i]) / S[i] * f[i]
    for t in prange(T):
        lo, hi = t * size, min(C, (t + 1) * size)
        scale = part_m[t].astype(np.float32)
        for j in range(lo, hi):
            for i in range(n):
                RT[j, i] *= scale[i]
            if j < n:
                RT[j, j] -= np.float32(f[j])
            g = np.float32(0.0)
            for i in range(n):
                g += RT[j, i]
            gb[j] = g
    return loss / div


def xe_columns(RT: np.ndarray, By: np.ndarray, Y: np.ndarray, n_in: int, log_counts: np.ndarray | None, alpha: float,
               logq: float, eps: float, n_chunks: int | None = None, divisor: int | None = None) -> tuple[float, np.ndarray]:
    """GRU4Rec's softmax cross-entropy over the columns of R, given transposed: RT [C, n], float32.

    Column j's score is shifted by By[Y[j]] and, with ``logq`` > 0, by -logq * log count of its item
    (times ``alpha`` for the sampled columns, j >= n_in). Row i's target is column i. The loss is
    summed over the rows and divided by ``divisor`` (default n; see losses.cross_entropy). Overwrites
    RT with d loss / d R, transposed; returns (loss, its gradient to the biases of the C columns).
    The columns are split into ``n_chunks`` (default: one per thread).
    """
    gb = np.empty(RT.shape[0], dtype=np.float32)
    T = _n_chunks(n_chunks, RT.shape[0])
    part_m, part_s = np.empty((T, RT.shape[1])), np.empty((T, RT.shape[1]))
    lc = log_counts if log_counts is not None else np.zeros(0, dtype=np.float32)
    loss = _xe_columns(RT, By, Y, lc, n_in, np.float32(alpha), np.float32(logq if log_counts is not None else 0.0),
                       eps, np.float64(RT.shape[1] if divisor is None else divisor), gb, part_m, part_s)
    return loss, gb


@njit(cache=True, nogil=True, inline="always")
def _sigmoid_into(a, out, pow2):  # pragma: no cover - compiled
    """out[b] = 1 / (1 + exp(-a[b])) (a and out may be the same row)."""
    for b in range(a.shape[0]):
        out[b] = -a[b]
    _exp_into(out, out, pow2)
    for b in range(a.shape[0]):
        out[b] = np.float32(1.0) / (np.float32(1.0) + out[b])


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _gru_forward(giT, ghT, b_ih, b_hh, hT, outT):  # pragma: no cover - compiled
    # Row j of each gate block holds one hidden unit for the whole batch, so every loop below runs
    # over contiguous memory and LLVM vectorizes it, exps included (_exp_into). In place: giT's
    # blocks become r, z and n, ghT's third block W_hn h + b_hn: what the backward needs.
    L, B = outT.shape
    one, two = np.float32(1.0), np.float32(2.0)
    for j in prange(L):
        a = np.empty(B, dtype=np.float32)
        pow2 = np.empty(B, dtype=np.int32)
        for g in range(2):  # the reset gate r, then the update gate z
            k = g * L + j
            for b in range(B):
                a[b] = giT[k, b] + b_ih[k] + ghT[k, b] + b_hh[k]
            _sigmoid_into(a, giT[k], pow2)
        m = 2 * L + j
        for b in range(B):
            ghn = ghT[m, b] + b_hh[m]
            ghT[m, b] = ghn
            a[b] = two * (giT[m, b] + b_ih[m] + giT[j, b] * ghn)
        _exp_into(a, a, pow2)
        for b in range(B):
            n = one - two / (a[b] + one)  # tanh(v) = 1 - 2 / (exp(2v) + 1): +-1 at the extremes
            giT[m, b] = n
            outT[j, b] = n + giT[L + j, b] * (hT[j, b] - n)  # (1 - z) n + z h


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _gru_backward(doutT, giT, ghT, hT, dgiT, dghT, db_ih, db_hh):  # pragma: no cover - compiled
    # The gate gradients of _gru_forward's saved r, z, n and W_hn h + b_hn, and the bias
    # gradients (their sums over the batch) in the same pass.
    L, B = doutT.shape
    one = np.float32(1.0)
    for j in prange(L):
        k, m = L + j, 2 * L + j
        s_r = s_z = s_n = s_nh = np.float32(0.0)
        for b in range(B):
            r, z, n, d = giT[j, b], giT[k, b], giT[m, b], doutT[j, b]
            dn = d * (one - z) * (one - n * n)
            dr = dn * ghT[m, b] * r * (one - r)
            dz = d * (hT[j, b] - n) * z * (one - z)
            dnh = dn * r
            dgiT[j, b] = dr
            dgiT[k, b] = dz
            dgiT[m, b] = dn
            dghT[j, b] = dr
            dghT[k, b] = dz
            dghT[m, b] = dnh
            s_r += dr
            s_z += dz
            s_n += dn
            s_nh += dnh
        db_ih[j] = s_r
        db_ih[k] = s_z
        db_ih[m] = s_n
        db_hh[j] = s_r
        db_hh[k] = s_z
        db_hh[m] = s_nh


def gru_forward(giT: np.ndarray, ghT: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, hT: np.ndarray) -> np.ndarray:
    """A GRU cell's gates from the products giT = W_ih x^T and ghT = W_hh h^T ([3L, B], float32).

    Returns the new state transposed, [L, B]. Overwrites giT with r, z, n and the third block of ghT
    with W_hn h + b_hn, for :func:`gru_backward`. ``hT`` is the previous state transposed (any strides).
    """
    outT = np.empty_like(giT[: hT.shape[0]])
    _gru_forward(giT, ghT, b_ih, b_hh, hT, outT)
    return outT


def gru_backward(doutT: np.ndarray, giT: np.ndarray, ghT: np.ndarray, hT: np.ndarray):
    """Gradients to the gate pre-activations of both products ([3L, B] each) and to both biases."""
    dgiT, dghT = np.empty_like(giT), np.empty_like(giT)
    db_ih, db_hh = np.empty(giT.shape[0], np.float32), np.empty(giT.shape[0], np.float32)
    _gru_backward(doutT, giT, ghT, hT, dgiT, dghT, db_ih, db_hh)
    return dgiT, dghT, db_ih, db_hh


def adagrad_dense(W: np.ndarray, acc: np.ndarray, mom: np.ndarray | None, G: np.ndarray, lr: float, momentum: float,
                  eps: float) -> None:
    """In-place Adagrad(+momentum) update of a whole (flattened, contiguous) parameter, in one pass."""
    use_mom = mom is not None
    _adagrad_dense(W, acc, mom if use_mom else acc, G, np.float32(lr), np.float32(momentum), np.float32(eps), use_mom)


def adagrad_rows(W: np.ndarray, acc: np.ndarray, mom: np.ndarray | None, idx: np.ndarray, G: np.ndarray,
                 lr: float, momentum: float, eps: float, bias: tuple | None = None) -> int:
    """In-place Adagrad(+momentum) update of rows ``idx`` of ``W`` (2-D) with gradients ``G``.

    Duplicate indices are summed first (``G`` is used as scratch). ``bias=(b, acc, mom, g)`` also
    updates the 1-D table ``b`` at ``idx[:len(g)]`` with gradients ``g`` in the same pass, which
    saves the bias its own sort of the indices. Returns the number of rows.
    """
    use_mom = mom is not None
    Bv, accB, momB, gB = _bias_arrays(bias, use_mom, W.dtype)
    return _adagrad_rows(W, acc, mom if use_mom else acc, idx, G, np.float32(lr), np.float32(momentum),
                         np.float32(eps), use_mom, Bv, accB, momB, gB, len(gB))


def _bias_arrays(bias: tuple | None, use_mom: bool, dtype) -> tuple:
    """The row kernels' (b, acc, mom, g) bias arguments: empty arrays without a bias, and acc standing
    in for the unused momentum (numba needs an array there)."""
    if bias is None:
        empty = np.zeros(0, dtype=dtype)
        return empty, empty, empty, empty
    Bv, accB, momB, gB = bias
    return Bv, accB, momB if use_mom else accB, gB


# ---- Adagrad on a dense matrix whose gradient is a product, G = D @ X, taken block by block -----
# A GRU weight's gradient (1440 x 480 on Yoochoose) would be written by one matrix product and read
# back by the update; here each thread multiplies a block of rows into a scratch that stays in its
# cache and updates those rows at once. The products come from the MKL inside torch, called from the
# kernel through its address (numba cannot cache code that holds a ctypes function).

@intrinsic
def _call_blas(typingctx, addr, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12):  # pragma: no cover - compiled
    """Call the Fortran-style BLAS routine at ``addr`` with 13 pointer arguments (sgemm_'s)."""
    sig = types.void(types.uintp, *([types.uintp] * 13))

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fn = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [ptr] * 13).as_pointer())
        builder.call(fn, [builder.inttoptr(a, ptr) for a in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_int_int(typingctx, addr, value):  # pragma: no cover - compiled
    """Call the C function ``int f(int)`` at ``addr`` (MKL_Set_Num_Threads_Local)."""
    sig = types.int32(types.uintp, types.int32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = builder.inttoptr(args[0], ir.FunctionType(i32, [i32]).as_pointer())
        return builder.call(fn, [args[1]])

    return sig, codegen


def _torch_mkl_addresses() -> tuple[int, int]:
    """(sgemm_, MKL_Set_Num_Threads_Local) of the MKL linked into torch's CPU library, or (0, 0)."""
    import torch

    if not torch.backends.mkl.is_available():
        return 0, 0
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return (ctypes.cast(lib.sgemm_, ctypes.c_void_p).value or 0,
                ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value or 0)
    except (OSError, AttributeError):  # another platform's library name or a build without these symbols
        return 0, 0


_SGEMM, _MKL_LOCAL_THREADS = _torch_mkl_addresses()
HAVE_BLOCK_GEMM = _SGEMM != 0 and _MKL_LOCAL_THREADS != 0


@njit(cache=True, nogil=True, inline="always")
def _mm(sgemm, C, A, a_t, B, b_t):  # pragma: no cover - compiled
    """C [M, N] = op(A) @ op(B) for C-contiguous float32 arrays, op(X) = X.T when ``a_t`` / ``b_t``:
    the sgemm_ call torch.mm makes for these layouts (C^T = op(B)^T op(A)^T, column-major), on as many
    MKL threads as the calling thread has (all of them, unless set locally as :func:`_sgemm_rows` does)."""
    M, N = C.shape
    K = A.shape[0] if a_t else A.shape[1]
    ints = np.empty(6, dtype=np.int32)
    ints[0], ints[1], ints[2] = N, M, K
    ints[3] = K if b_t else N  # B's row length
    ints[4] = M if a_t else K  # A's row length
    ints[5] = N
    scal = np.empty(2, dtype=np.float32)
    scal[0], scal[1] = 1.0, 0.0
    trans = np.empty(2, dtype=np.uint8)
    trans[0] = 84 if b_t else 78  # 'T' / 'N'
    trans[1] = 84 if a_t else 78
    _call_blas(sgemm, trans.ctypes.data, trans[1:].ctypes.data, ints.ctypes.data, ints[1:].ctypes.data,
               ints[2:].ctypes.data, scal.ctypes.data, B.ctypes.data, ints[3:].ctypes.data, A.ctypes.data,
               ints[4:].ctypes.data, scal[1:].ctypes.data, C.ctypes.data, ints[5:].ctypes.data)


@njit(cache=True, nogil=True, inline="always")
def _sgemm_rows(sgemm, local_threads, D, X, x_transposed, G):  # pragma: no cover - compiled
    """G [rows, N] = D [rows, K] @ X (row-major), X given as [K, N] or, x_transposed, as [N, K], on one
    MKL thread (the calling kernel's threads split the rows)."""
    before = _call_int_int(local_threads, 1)
    _mm(sgemm, G, D, False, X, x_transposed)
    _call_int_int(local_threads, before)


def _check_blas_layout(caller: str, **arrays) -> None:
    # MKL gets raw pointers and leading dimensions that assume these layouts: anything else would be
    # read wrongly without an error
    for name, a in arrays.items():
        if a is not None and not (a.dtype == np.float32 and a.flags.c_contiguous):
            raise ValueError(f"{caller}: {name} must be a C-contiguous float32 array (got {a.dtype}, "
                             f"strides {a.strides}); pass np.ascontiguousarray({name}, dtype=np.float32).")


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _gemm_adagrad(sgemm, local_threads, D, X, x_transposed, W, acc, mom, lr, mu, eps, use_mom, block):  # pragma: no cover - compiled
    R, K = D.shape
    N = W.shape[1]
    for bi in prange((R + block - 1) // block):
        r0 = bi * block
        rows = min(block, R - r0)
        G = np.empty((rows, N), dtype=np.float32)
        _sgemm_rows(sgemm, local_threads, D[r0 : r0 + rows], X, x_transposed, G)
        for i in range(rows):
            _adagrad_row(W, acc, mom, r0 + i, G, i, lr, mu, eps, use_mom)


def gemm_adagrad(D: np.ndarray, X: np.ndarray, x_transposed: bool, W: np.ndarray, acc: np.ndarray,
                 mom: np.ndarray | None, lr: float, momentum: float, eps: float, block: int = 32) -> None:
    """Adagrad(+momentum) on the 2-D float32 ``W`` [R, N] with the gradient D @ X, never materialized.

    ``D`` [R, K] is row-major; ``X`` is [K, N] row-major, or with ``x_transposed`` its transpose
    [N, K] row-major. Needs :data:`HAVE_BLOCK_GEMM`. The same result as the product followed by
    :func:`adagrad_dense` (MKL computes each block's product exactly as the whole one here).
    """
    if not HAVE_BLOCK_GEMM:
        raise RuntimeError("gemm_adagrad needs the MKL inside torch; check kernels.HAVE_BLOCK_GEMM first")
    _check_blas_layout("gemm_adagrad", D=D, X=X, W=W, acc=acc, mom=mom)
    use_mom = mom is not None
    _gemm_adagrad(_SGEMM, _MKL_LOCAL_THREADS, D, X, x_transposed, W, acc, mom if use_mom else acc,
                  np.float32(lr), np.float32(momentum), np.float32(eps), use_mom, block)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_memory(mmap_threshold_mb: int = 32) -> bool:
    """Stop glibc from returning every freed large tensor to the OS.

    A training step allocates dozens of ~1 MB temporaries. With glibc's defaults each is a fresh
    mmap that the kernel must zero and fault in page by page, which made elementwise ops up to ten
    times slower than on reused memory. Keeping freed memory in the heap costs RSS: blocks up to
    ``mmap_threshold_mb`` stay in the heap (SASRec on ml-1m: 32 MB gave a 1.35 GB peak at 48.5 s per
    epoch, 4 MB gave 0.99 GB at 59.8 s). The setting is process-wide.
    """
    try:
        libc = _libc()
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb * 1024 * 1024) and \
            libc.mallopt(_M_TRIM_THRESHOLD, 512 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False


def _rss_gb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):  # no procfs (macOS)
        return None


class FreedMemoryTrimmer:
    """Gives the heap's free pages back to the OS (glibc's malloc_trim) once RSS has grown by
    ``slack_gb`` since the last trim; call it after every step.

    With freed memory kept (above), batches whose tensor sizes vary from step to step (LRURec packs
    the real positions of each batch) fragment the heap, and RSS crept up by 0.6 GB per ml-1m epoch:
    2.8 GB after two epochs, 0.62 GB once trimmed. Models with steady sizes never reach the slack,
    so they keep their reused memory and their speed.
    """

    def __init__(self, slack_gb: float = 1.0):
        self.slack_gb, self.base = slack_gb, None
        try:
            self._trim = _libc().malloc_trim
        except (OSError, AttributeError):  # not glibc: its allocator manages this itself
            self._trim = None

    def __call__(self) -> bool:
        now = _rss_gb() if self._trim is not None else None
        if now is None:
            return False
        if self.base is None or now < self.base:
            self.base = now
        if now <= self.base + self.slack_gb:
            return False
        self._trim(0)
        self.base = _rss_gb()
        return True


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _rows_product_adagrad(sgemm, local_threads, W, acc, mom, idx, D, X, E, lr, mu, eps, use_mom,
                          Bv, accB, momB, gB, n_bias, block):  # pragma: no cover - compiled
    # Rows idx[k] of W get gradient D[k] @ X for k < len(D), E[k - len(D)] after that; duplicates summed.
    # Per block of distinct rows: their D rows summed (K floats each), one small product, the update.
    n_prod, K = D.shape
    N = W.shape[1]
    order, starts, n_groups = _row_groups(idx)
    for bi in prange((n_groups + block - 1) // block):
        g0 = bi * block
        rows = min(block, n_groups - g0)
        Dc = np.zeros((rows, K), dtype=np.float32)
        for q in range(rows):
            for t in range(starts[g0 + q], starts[g0 + q + 1]):
                o = order[t]
                if o < n_prod:
                    for c in range(K):
                        Dc[q, c] += D[o, c]
        G = np.empty((rows, N), dtype=np.float32)
        _sgemm_rows(sgemm, local_threads, Dc, X, False, G)
        for q in range(rows):
            a, b = starts[g0 + q], starts[g0 + q + 1]
            r = idx[order[a]]
            for t in range(a, b):
                o = order[t]
                if o >= n_prod:
                    for d in range(N):
                        G[q, d] += E[o - n_prod, d]
            _adagrad_row(W, acc, mom, r, G, q, lr, mu, eps, use_mom)
            if n_bias > 0:
                _bias_row_update(Bv, accB, momB, gB, n_bias, order, a, b, r, lr, mu, eps, use_mom)
    return n_groups


def rows_product_adagrad(W: np.ndarray, acc: np.ndarray, mom: np.ndarray | None, idx: np.ndarray, D: np.ndarray,
                         X: np.ndarray, E: np.ndarray, lr: float, momentum: float, eps: float,
                         bias: tuple | None = None, block: int = 32) -> int:
    """:func:`adagrad_rows` for the rows ``idx`` of ``W`` [V, N] whose gradient rows are ``D @ X``
    (D [C, K], X [K, N]) for the first C indices and the rows of ``E`` for the rest, never formed.

    Duplicate indices are summed first, on D's rows (K floats each) rather than on gradient rows;
    then each thread multiplies ``block`` distinct rows at a time (the MKL inside torch, as in
    :func:`gemm_adagrad`) and updates them while they are in cache. ``bias`` as in adagrad_rows.
    Equal to the product followed by adagrad_rows up to float rounding. Returns the number of rows.
    """
    if not HAVE_BLOCK_GEMM:
        raise RuntimeError("rows_product_adagrad needs the MKL inside torch; check kernels.HAVE_BLOCK_GEMM first")
    _check_blas_layout("rows_product_adagrad", W=W, acc=acc, mom=mom, D=D, X=X, E=E)
    use_mom = mom is not None
    Bv, accB, momB, gB = _bias_arrays(bias, use_mom, W.dtype)
    return _rows_product_adagrad(_SGEMM, _MKL_LOCAL_THREADS, W, acc, mom if use_mom else acc, idx, D, X, E,
                                 np.float32(lr), np.float32(momentum), np.float32(eps), use_mom,
                                 Bv, accB, momB, gB, len(gB), block)


@njit(parallel=True, cache=True, nogil=True)
def gather_rows(W, idx, out):  # pragma: no cover - compiled
    """out[k] = W[idx[k]] for 2-D float32 arrays. Rows that come from memory rather than cache
    (a step's output rows of a 33 MB item table) arrive ~25% sooner than through torch.index_select
    (360 against 475 us for Yoochoose's 2,096 rows of 480, cold)."""
    for k in prange(idx.shape[0]):
        out[k, :] = W[idx[k], :]


# ---- One whole CPU training step as one native call (shared embedding, one GRU layer) ------------
# Measured on Yoochoose and RetailRocket, the step's kernels and products left 1.2 ms per step
# (15-21%) to the ~100 Python-level calls around them (the interpreter, torch dispatch, wrappers),
# during which the second core waits. Here the same kernels and products run from one compiled
# function; the Python side only draws the dropouts' uniforms (numpy's generator, so the masks equal
# the other path's) and hands over the items and the carried state.

class FusedStep:
    """One GRU4Rec training step (shared embedding, one GRU layer, float32 CPU) as one native call.

    ``arrays`` = (Wy, By, acc_Wy, acc_By, mom_Wy, mom_By, W_ih, W_hh, b_ih, b_hh, their four
    accumulators, their four momenta), updated in place by every call (without momentum, pass the
    accumulators in the momenta's places). The constants are converted once, here. The two dropouts'
    draws are given per call: uniforms [n, L], or an empty array for no dropout. The loss is summed
    over the rows and divided by ``divisor`` (the batch size, also when a batch has shrunk).
    """

    def __init__(self, arrays: tuple, loss: str, log_counts: np.ndarray | None, alpha: float, logq: float,
                 bpreg: float, elu_param: float, loss_eps: float, p_embed: float, p_hidden: float, lr: float,
                 momentum: float, eps: float, divisor: int):
        self.arrays, self.divisor = arrays, divisor
        self.xe = loss == "cross-entropy"
        lc = log_counts if log_counts is not None else np.zeros(0, dtype=np.float32)
        f32 = np.float32
        self.constants = (f32(p_embed), f32(1.0 / (1.0 - p_embed)), f32(p_hidden), f32(1.0 / (1.0 - p_hidden)),
                          lc, f32(alpha), f32(logq if log_counts is not None else 0.0), f32(bpreg), f32(elu_param),
                          np.float64(loss_eps), np.float64(divisor), f32(lr), f32(momentum), f32(eps), momentum > 0,
                          get_num_threads())
        self.O = np.empty((0, arrays[0].shape[1]), dtype=np.float32)  # the output rows, kept across steps

    def __call__(self, x: np.ndarray, y: np.ndarray, samples: np.ndarray, h_prev: np.ndarray, emb_u: np.ndarray,
                 hid_u: np.ndarray) -> tuple[float, np.ndarray]:
        """Input items ``x`` and targets ``y`` [n], the shared ``samples``, the carried state ``h_prev``
        [n, L] (either layout), the uniform draws of the two dropouts (float32 [n, L]; empty: none).
        Returns (loss, the new state transposed [L, n])."""
        self._fit_output_rows(len(y) + len(samples))
        h_t = not h_prev.flags.c_contiguous and h_prev.T.flags.c_contiguous
        h_mem = h_prev.T if h_t else np.ascontiguousarray(h_prev)
        value, row_loss, hT = _fused_step(_SGEMM, _MKL_LOCAL_THREADS, self.xe, *self.arrays, x, y, samples, h_mem,
                                          h_t, emb_u, hid_u, self.O, *self.constants)
        return (value if self.xe else float(row_loss.sum() / self.divisor)), hT

    def rounds(self, rng: np.random.Generator, chunk: tuple, r: int, s: int, sample_rows: np.ndarray,
               h: np.ndarray, h_t: bool) -> tuple:
        """The steps of a chunk of session-parallel rounds (the arrays of training.gru4rec._round_arrays),
        from step ``s`` of round ``r`` on, as many as ``sample_rows`` [k, n_sample] has rows, with the
        resets and shrinking between rounds; the dropouts' uniforms drawn from ``rng`` as the Python
        caller of __call__ draws them. ``h`` is the carried state, [L, n] if ``h_t`` else [n, L].
        Returns (r, s) where it stopped, the state (h, h_t), the loss sum and the numbers of steps and
        events; the weights end as after the same steps through __call__, bit for bit."""
        self._fit_output_rows(int(chunk[3].max(initial=0)) + sample_rows.shape[1])
        return _fused_rounds(_SGEMM, _MKL_LOCAL_THREADS, self.xe, *self.arrays, rng, *chunk, r, s, sample_rows, h,
                             h_t, self.O, *self.constants)


    def _fit_output_rows(self, C: int) -> None:
        """Grow the output-row buffer to at least C rows (a step's targets and samples)."""
        if self.O.shape[0] < C:
            self.O = np.empty((C, self.O.shape[1]), dtype=np.float32)


def matmul(A: np.ndarray, a_t: bool, B: np.ndarray, b_t: bool) -> np.ndarray:
    """op(A) @ op(B) through :func:`_mm` (for tests; needs :data:`HAVE_BLOCK_GEMM`)."""
    _check_blas_layout("matmul", A=A, B=B)
    M = A.shape[1] if a_t else A.shape[0]
    N = B.shape[0] if b_t else B.shape[1]
    C = np.empty((M, N), dtype=np.float32)
    _matmul(_SGEMM, C, A, a_t, B, b_t)
    return C


@njit(cache=True, nogil=True)
def _matmul(sgemm, C, A, a_t, B, b_t):  # pragma: no cover - compiled
    _mm(sgemm, C, A, a_t, B, b_t)


@njit(cache=True, nogil=True, inline="always")
def _drop(a, u, p, scale, transposed):  # pragma: no cover - compiled
    """a *= 0 or scale where the uniform draw u [n, L] is < p or >= p: the other path's x * mask.
    ``a`` is [n, L], or [L, n] when ``transposed``."""
    zero = np.float32(0.0)
    n, L = u.shape
    for i in range(n):
        for j in range(L):
            if transposed:
                a[j, i] *= scale if u[i, j] >= p else zero
            else:
                a[i, j] *= scale if u[i, j] >= p else zero


@njit(cache=True, nogil=True)
def _fused_step(sgemm, local_threads, xe, Wy, By, accW, accB, momW, momB, Wih, Whh, bih, bhh,
                acc_ih, acc_hh, acc_bih, acc_bhh, mom_ih, mom_hh, mom_bih, mom_bhh, x, y, samples, h_mem, h_t,
                emb_u, hid_u, O, emb_p, emb_scale, hid_p, hid_scale, log_counts, alpha, logq, bpreg, elu,
                loss_eps, div, lr, mu, eps, use_mom, n_threads):  # pragma: no cover - compiled
    # The operations of _Step's direct CPU path (gru_forward, the output layer, gru_backward,
    # step_rows_product, step_dense_product, step_dense) in the same order and memory layouts, so
    # the results are bit-identical: the carried state lives transposed ([L, n], h_t) as torch's
    # elementwise ops leave it there, and each product is the sgemm_ call torch.mm makes. Dropout
    # multiplies by 0 or 1 / (1 - p) where the uniform draw u >= p, the other path's mask.
    n, L = x.shape[0], Wy.shape[1]
    C = n + samples.shape[0]
    Y = np.empty(C, dtype=np.int64)  # the columns: targets, then the samples
    Y[:n] = y
    Y[n:] = samples
    n_chunks = min(n_threads, C)  # as _n_chunks
    # GRU forward (dropout on the input rows and on the output, whose dropped-out state is carried)
    xr = np.empty((n, L), dtype=np.float32)
    for k in range(n):
        xr[k] = Wy[x[k]]
    emb, hid = emb_u.shape[0] > 0, hid_u.shape[0] > 0
    if emb:
        _drop(xr, emb_u, emb_p, emb_scale, False)
    giT = np.empty((3 * L, n), dtype=np.float32)
    ghT = np.empty((3 * L, n), dtype=np.float32)
    _mm(sgemm, giT, Wih, False, xr, True)
    _mm(sgemm, ghT, Whh, False, h_mem, not h_t)
    hT = np.empty((L, n), dtype=np.float32)  # the new state, transposed
    if h_t:
        _gru_forward(giT, ghT, bih, bhh, h_mem, hT)
    else:
        _gru_forward(giT, ghT, bih, bhh, h_mem.T, hT)
    if hid:
        _drop(hT, hid_u, hid_p, hid_scale, True)
    # scores over the columns Y, the loss and dR (transposed, in place), the bias gradients
    gather_rows(Wy, Y, O[:C])
    RT = np.empty((C, n), dtype=np.float32)
    _mm(sgemm, RT, O[:C], False, hT, False)
    gb = np.empty(C, dtype=np.float32)
    row_loss = np.empty(0 if xe else n)
    loss = 0.0
    if xe:
        loss = _xe_columns(RT, By, Y, log_counts, n, alpha, logq, loss_eps, div, gb,
                           np.empty((n_chunks, n)), np.empty((n_chunks, n)))
    else:
        _bpr_max_columns(RT, By, Y, bpreg, elu, loss_eps, div, np.empty_like(RT), np.empty_like(RT), gb,
                         np.empty((n_chunks, n), dtype=np.float32), np.empty((n_chunks, 4, n)), row_loss)
    dhT = np.empty((L, n), dtype=np.float32)
    _mm(sgemm, dhT, O[:C], True, RT, False)
    # GRU backward
    if hid:
        _drop(dhT, hid_u, hid_p, hid_scale, True)
    dgiT = np.empty_like(giT)
    dghT = np.empty_like(giT)
    db_ih = np.empty(3 * L, dtype=np.float32)
    db_hh = np.empty(3 * L, dtype=np.float32)
    if h_t:
        _gru_backward(dhT, giT, ghT, h_mem, dgiT, dghT, db_ih, db_hh)
    else:
        _gru_backward(dhT, giT, ghT, h_mem.T, dgiT, dghT, db_ih, db_hh)
    dxT = np.empty((L, n), dtype=np.float32)
    _mm(sgemm, dxT, Wih, True, dgiT, False)
    dx = np.empty((n, L), dtype=np.float32)  # the input rows' gradient
    h = np.empty((n, L), dtype=np.float32)
    for i in range(n):
        for j in range(L):
            dx[i, j] = dxT[j, i]
            h[i, j] = hT[j, i]
    if emb:
        _drop(dx, emb_u, emb_p, emb_scale, False)
    # updates: the item rows (output columns and inputs together), the GRU weights, their biases
    rows = np.empty(C + n, dtype=np.int64)
    rows[:C] = Y
    rows[C:] = x
    _rows_product_adagrad(sgemm, local_threads, Wy, accW, momW, rows, RT, h, dx, lr, mu, eps, use_mom,
                          By, accB, momB, gb, C, 32)
    _gemm_adagrad(sgemm, local_threads, dgiT, xr, False, Wih, acc_ih, mom_ih, lr, mu, eps, use_mom, 32)
    _gemm_adagrad(sgemm, local_threads, dghT, h_mem, h_t, Whh, acc_hh, mom_hh, lr, mu, eps, use_mom, 32)
    _adagrad_dense(bih, acc_bih, mom_bih, db_ih, lr, mu, eps, use_mom)
    _adagrad_dense(bhh, acc_bhh, mom_bhh, db_hh, lr, mu, eps, use_mom)
    return loss, row_loss, hT


@njit(cache=True, nogil=True)
def _fused_rounds(sgemm, local_threads, xe, Wy, By, accW, accB, momW, momB, Wih, Whh, bih, bhh,
                  acc_ih, acc_hh, acc_bih, acc_bhh, mom_ih, mom_hh, mom_bih, mom_bhh,
                  rng, X, Y, r_steps, r_n, r_off, fin, fin_off, fin_cnt, keep, keep_off, keep_cnt,
                  r, s, sample_rows, h, h_t, O, emb_p, emb_scale, hid_p, hid_scale, log_counts, alpha, logq,
                  bpreg, elu, loss_eps, div, lr, mu, eps, use_mom, n_threads):  # pragma: no cover - compiled
    # Steps of session-parallel rounds, from step s of round r on, one _fused_step each, while rows of
    # samples last; what FusedStep.__call__ and the Python loop around it do between steps is done
    # here the same way: the dropouts' uniforms drawn from the same generator in the same order, the
    # carried state in the layout that path would hand over ([L, n] = h_t, else [n, L]; torch's
    # index_fill keeps a layout, index_select gives [n, L]), so the weights are bit-identical.
    # Returns where it stopped, the state, the loss sum and the numbers of steps and events.
    L = Wy.shape[1]
    none = np.empty((0, 0), dtype=np.float32)
    loss_sum = 0.0
    n_steps = n_events = used = 0
    while r < r_steps.shape[0]:
        n = r_n[r]
        while s < r_steps[r]:
            if used == sample_rows.shape[0]:
                return r, s, h, h_t, loss_sum, n_steps, n_events
            off = r_off[r] + s * n
            emb_u = rng.random((n, L), np.float32) if emb_p > 0 else none
            hid_u = rng.random((n, L), np.float32) if hid_p > 0 else none
            value, row_loss, hT = _fused_step(sgemm, local_threads, xe, Wy, By, accW, accB, momW, momB, Wih, Whh,
                                              bih, bhh, acc_ih, acc_hh, acc_bih, acc_bhh, mom_ih, mom_hh, mom_bih,
                                              mom_bhh, X[off:off + n], Y[off:off + n], sample_rows[used], h, h_t,
                                              emb_u, hid_u, O, emb_p, emb_scale, hid_p, hid_scale, log_counts,
                                              alpha, logq, bpreg, elu, loss_eps, div, lr, mu, eps, use_mom, n_threads)
            loss_sum += value if xe else row_loss.sum() / div
            if n == 1 or L == 1:  # then hT^T counts as C-contiguous and goes in as [n, L]
                h, h_t = np.ascontiguousarray(hT.T), False
            else:
                h, h_t = hT, True
            s += 1
            used += 1
            n_steps += 1
            n_events += n
        for k in range(fin_off[r], fin_off[r] + fin_cnt[r]):  # the finished slots' state reset
            if h_t:
                h[:, fin[k]] = 0.0
            else:
                h[fin[k], :] = 0.0
        if keep_cnt[r] >= 0:  # the batch shrinks: the kept slots' rows, as [n, L]
            kept = np.empty((keep_cnt[r], L), dtype=np.float32)
            for q in range(keep_cnt[r]):
                j = keep[keep_off[r] + q]
                if h_t:
                    kept[q, :] = h[:, j]
                else:
                    kept[q, :] = h[j, :]
            h, h_t = kept, False
        r += 1
        s = 0
    return r, s, h, h_t, loss_sum, n_steps, n_events
