"""The closed-form losses and gradients of losses.py against autograd on the direct formulas (doc 1.5)."""
import numpy as np
import pytest
import torch

from nextitem.training.kernels import _exp_into, xe_columns
from nextitem.training.losses import bpr_max, cross_entropy

EPS = 1e-24


def ref_cross_entropy(R, logq=None):
    """Row softmax over R - logq; row loss -log(p_ii + 1e-24); mean over rows."""
    n = R.shape[0]
    Z = R - logq if logq is not None else R
    P = torch.softmax(Z, dim=1)
    return -torch.log(P[torch.arange(n), torch.arange(n)] + EPS).mean()


def ref_bpr_max(R, bpreg, elu_param):
    """ELU (linear when elu_param == 0); softmax over negatives only; mean over rows of
    -log(sum_j s_ij sigmoid(r_ii - r_ij) + 1e-24) + bpreg * sum_j s_ij r_ij^2."""
    n, C = R.shape
    S = torch.nn.functional.elu(R, alpha=elu_param) if elu_param > 0 else R
    diag = torch.zeros(n, C, dtype=torch.bool)
    diag[torch.arange(n), torch.arange(n)] = True
    s = torch.softmax(S.masked_fill(diag, float("-inf")), dim=1)  # diagonal weight is exactly 0
    r_t = S[torch.arange(n), torch.arange(n)].unsqueeze(1)
    sig = torch.sigmoid(r_t - S)
    rows = -torch.log((s * sig).sum(1) + EPS) + bpreg * (s * S * S).sum(1)
    return rows.mean()


def reference(fn, R, *args):
    R = R.detach().to(torch.float64).requires_grad_()
    args = [a.to(torch.float64) if isinstance(a, torch.Tensor) else a for a in args]
    loss = fn(R, *args)
    (grad,) = torch.autograd.grad(loss, R)
    return loss.detach(), grad


def scores(n, k, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n + k, generator=g, dtype=torch.float64) * scale


SHAPES = [(1, 0), (1, 3), (4, 0), (5, 7), (16, 50)]
SCALES = [0.1, 1.0, 5.0, 40.0]


def check(loss, grad, ref_loss, ref_grad, dtype, fn=None, R=None, args=()):
    """Compare with the float64 autograd reference.

    float64: tight. The one approximation in bpr_max, exp(m - r_t) clamped at exp(80), moves a
    gradient by at most exp(-80) / 1e-24 ~ 2e-11 (only where the target is > 80 below a negative).
    float32: no worse than autograd on the same formula in float32 (cancellation in the bpreg term
    at large scores is inherent to the precision), and never worse than 1e-4 relative / 1e-6 absolute.
    """
    if dtype == torch.float64:
        torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-10)
        return
    R32 = R.detach().to(torch.float32).requires_grad_()
    args32 = [a.to(torch.float32) if isinstance(a, torch.Tensor) else a for a in args]
    loss32 = fn(R32, *args32)
    (grad32,) = torch.autograd.grad(loss32, R32)
    atol_loss = max(1e-6, 4 * abs(float(loss32.detach()) - float(ref_loss)))
    atol_grad = max(1e-6, 4 * float((grad32.to(torch.float64) - ref_grad).abs().max()))
    torch.testing.assert_close(loss.to(torch.float64), ref_loss, rtol=1e-4, atol=atol_loss)
    torch.testing.assert_close(grad.to(torch.float64), ref_grad, rtol=1e-4, atol=atol_grad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("with_logq", [False, True])
def test_cross_entropy(n, k, scale, dtype, with_logq):
    R = scores(n, k, scale, seed=n * 31 + k)
    logq = None
    if with_logq:
        g = torch.Generator().manual_seed(7 + k)
        logq = torch.log(torch.randint(1, 1000, (n + k,), generator=g).to(torch.float64)) * 0.8
    ref_loss, ref_grad = reference(ref_cross_entropy, R, logq)
    loss, grad = cross_entropy(R.to(dtype), None if logq is None else logq.to(dtype))
    assert grad.shape == R.shape and grad.dtype == dtype
    check(loss, grad, ref_loss, ref_grad, dtype, ref_cross_entropy, R, (logq,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n,k", [s for s in SHAPES if s[0] + s[1] >= 2])  # a row needs a negative
@pytest.mark.parametrize("elu_param,bpreg", [(0.0, 0.0), (0.0, 1.0), (0.5, 1.0), (1.0, 0.0), (1.0, 1.95), (0.5, 0.3)])
def test_bpr_max(n, k, scale, dtype, elu_param, bpreg):
    R = scores(n, k, scale, seed=n * 17 + k)
    ref_loss, ref_grad = reference(ref_bpr_max, R, bpreg, elu_param)
    loss, grad = bpr_max(R.to(dtype), bpreg, elu_param)
    assert grad.shape == R.shape and grad.dtype == dtype
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    check(loss, grad, ref_loss, ref_grad, dtype, ref_bpr_max, R, (bpreg, elu_param))


def test_cross_entropy_does_not_modify_input():
    R = scores(4, 3, 1.0, 0).to(torch.float32)
    logq = torch.rand(7)
    R0, q0 = R.clone(), logq.clone()
    cross_entropy(R, logq)
    cross_entropy(R)
    assert torch.equal(R, R0) and torch.equal(logq, q0)


def test_cross_entropy_target_far_below_the_rest():
    # p_ii underflows (to 0 in the float32 kernel): the row's loss is -log(1e-24) and its gradient ~0,
    # as the formula gives; the other rows are unaffected
    R = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    R[0] += 30.0
    R[0, 0] = -200.0
    logq = torch.rand(7, dtype=torch.float64)
    ref_loss, ref_grad = reference(ref_cross_entropy, R, logq)
    for dtype in (torch.float64, torch.float32):
        loss, grad = cross_entropy(R.to(dtype), logq.to(dtype))
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        assert grad[0].abs().max() < 1e-12
        check(loss, grad, ref_loss, ref_grad, dtype, ref_cross_entropy, R, (logq,))


@pytest.mark.parametrize("elu_param", [0.0, 0.5])
def test_bpr_max_does_not_modify_input(elu_param):
    R = scores(4, 3, 1.0, 0).to(torch.float32)
    R0 = R.clone()
    bpr_max(R, 1.0, elu_param)
    assert torch.equal(R, R0)


@pytest.mark.parametrize("elu_param,bpreg", [(0.0, 1.0), (0.5, 0.5)])
def test_bpr_max_target_far_below_negatives(elu_param, bpreg):
    # the target scores far below every negative (sigmoids underflow): finite, and equal to the formula
    R = torch.full((3, 6), 30.0, dtype=torch.float64)
    R += torch.arange(18, dtype=torch.float64).view(3, 6) * 0.01
    R[torch.arange(3), torch.arange(3)] = -200.0 if elu_param == 0 else -1e4
    ref_loss, ref_grad = reference(ref_bpr_max, R, bpreg, elu_param)
    for dtype in (torch.float64, torch.float32):
        loss, grad = bpr_max(R.to(dtype), bpreg, elu_param)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        check(loss, grad, ref_loss, ref_grad, dtype, ref_bpr_max, R, (bpreg, elu_param))


# ---------------------------------------------------------------- the user-history models' softmax
@pytest.mark.parametrize("keep", [0, 1 << 30, 3 * 5 * 40])  # recompute all, keep all, keep 3 of 5 chunks
@pytest.mark.parametrize("with_bias", [True, False])
def test_chunked_softmax_cross_entropy_equals_full_softmax(monkeypatch, keep, with_bias):
    import torch.nn.functional as F

    from nextitem.models import sequential

    monkeypatch.setattr(sequential, "LOGIT_CHUNK", 5 * 40)  # 5 rows per chunk: 23 rows = 5 chunks
    monkeypatch.setattr(sequential, "KEEP_GRAD", keep)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 6, generator=g, requires_grad=True)
    W = torch.randn(40, 6, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True) if with_bias else None
    y = torch.randint(0, 40, (23,), generator=g)
    ours = sequential.softmax_cross_entropy(h, W, y, b) * 0.7
    ref = F.cross_entropy(h @ W.T + (b if with_bias else 0), y, reduction="sum") * 0.7
    torch.testing.assert_close(ours, ref)
    wrt = (h, W, b) if with_bias else (h, W)
    for a, r in zip(torch.autograd.grad(ours, wrt), torch.autograd.grad(ref, wrt)):
        torch.testing.assert_close(a, r)


def test_vectorized_exp_matches_float64_exp():
    """The BPR-max kernel's own float32 exp: within 1.5 ulp of float64 exp on [-87, 88], exactly 0 below
    (no denormals), inf above, NaN for NaN; in place as the kernel calls it."""
    def exp(x):
        x = np.asarray(x, dtype=np.float32)
        out = np.empty_like(x)
        _exp_into(x, out, np.empty(len(x), dtype=np.int32))
        return out

    x = np.concatenate([np.linspace(-87.0, 88.0, 200_001), np.random.default_rng(0).normal(0, 3, 10_000),
                        [-1e-7, 0.0, 1e-7]]).astype(np.float32)
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(exp(x) - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.5  # numpy's own float32 exp is off by up to 2.3 ulp here
    np.testing.assert_array_equal(exp([-87.01, -100.0, -1e30, -np.inf]), 0.0)
    assert np.isposinf(exp([88.01, 1e30, np.inf])).all()
    assert np.isnan(exp([np.nan])).all()
    same = x.copy()
    _exp_into(same, same, np.empty(len(x), dtype=np.int32))
    np.testing.assert_array_equal(same, exp(x))


def xe_columns_reference(R, By, Y, n, log_counts, alpha, logq):
    """The direct formula in float64: softmax over R + By[Y] - logq * log q, q = count (in-batch) or count^alpha."""
    R = R.to(torch.float64).requires_grad_()
    w = torch.ones(len(Y), dtype=torch.float64)
    w[n:] = alpha
    shift = By.to(torch.float64)[Y]
    if log_counts is not None:
        shift = shift - logq * w * log_counts.to(torch.float64)[Y]
    loss = ref_cross_entropy(R + shift)
    (grad,) = torch.autograd.grad(loss, R)
    return loss.detach(), grad


@pytest.mark.parametrize("n,C,chunks", [(6, 15, 2), (6, 15, 4), (1, 1, 2), (3, 3, 5), (5, 40, 3), (48, 2096, 2)])
@pytest.mark.parametrize("with_logq", [False, True])
def test_xe_columns_kernel_equals_formula(n, C, chunks, with_logq):
    g = torch.Generator().manual_seed(n * 7 + C)
    n_items = 30
    Y = torch.randint(0, n_items, (C,), generator=g)
    By = torch.randn(n_items, generator=g)
    log_counts = torch.log(torch.randint(1, 500, (n_items,), generator=g).float()) if with_logq else None
    R = torch.randn(n, C, generator=g) * 3
    ref_loss, ref_grad = xe_columns_reference(R, By, Y, n, log_counts, 0.3, 0.8)
    RT = R.t().contiguous()
    loss, gb = xe_columns(RT.numpy(), By.numpy(), Y.numpy(), n, None if log_counts is None else log_counts.numpy(),
                          0.3, 0.8, EPS, n_chunks=chunks)
    assert abs(loss - float(ref_loss)) < 1e-5
    torch.testing.assert_close(RT.t().to(torch.float64), ref_grad, rtol=1e-4, atol=1e-7)  # RT now holds dR^T
    torch.testing.assert_close(torch.from_numpy(gb).to(torch.float64), ref_grad.sum(0), rtol=1e-4, atol=1e-6)


def test_xe_columns_kernel_target_far_below_the_rest():
    # p_00 underflows in float32: row 0's loss is -log(1e-24) and its gradient 0, as the formula gives
    g = torch.Generator().manual_seed(3)
    R = torch.randn(3, 7, generator=g)
    R[0] += 30.0
    R[0, 0] = -200.0
    Y, By = torch.arange(7), torch.zeros(7)
    ref_loss, ref_grad = xe_columns_reference(R, By, Y, 3, None, 1.0, 0.0)
    RT = R.t().contiguous()
    loss, gb = xe_columns(RT.numpy(), By.numpy(), Y.numpy(), 3, None, 1.0, 0.0, EPS)
    assert np.isfinite(loss) and np.isfinite(RT.numpy()).all()
    assert abs(loss - float(ref_loss)) < 1e-5 and RT[:, 0].abs().max() < 1e-12
    torch.testing.assert_close(RT.t().to(torch.float64), ref_grad, rtol=1e-4, atol=1e-7)


def test_xe_columns_kernel_with_all_threads():
    """The parallel path (the rest of the suite runs numba on one thread)."""
    import numba

    from .conftest import DEFAULT_NUMBA_THREADS

    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    try:
        test_xe_columns_kernel_equals_formula(48, 2096, None, True)
        test_xe_columns_kernel_equals_formula(5, 40, 3, True)
    finally:
        numba.set_num_threads(old)


def bpr_max_columns_reference(R, By, Y, bpreg, elu_param):
    """The direct formula in float64 over R + By[Y]."""
    R = R.to(torch.float64).requires_grad_()
    loss = ref_bpr_max(R + By.to(torch.float64)[Y], bpreg, elu_param)
    (grad,) = torch.autograd.grad(loss, R)
    return loss.detach(), grad


@pytest.mark.parametrize("n,C,chunks", [(6, 15, 2), (6, 15, 4), (2, 2, 2), (3, 3, 5), (5, 40, 3), (80, 2128, 2)])
@pytest.mark.parametrize("elu_param,bpreg", [(0.0, 0.0), (0.5, 1.95), (1.0, 0.9)])
def test_bpr_max_columns_kernel_equals_formula(n, C, chunks, elu_param, bpreg):
    from nextitem.training.kernels import bpr_max_columns

    g = torch.Generator().manual_seed(n * 11 + C)
    n_items = 30  # fewer items than columns: repeated items, as samples repeat
    Y = torch.randint(0, n_items, (C,), generator=g)
    By = torch.randn(n_items, generator=g) * 0.5
    R = torch.randn(n, C, generator=g) * 2
    ref_loss, ref_grad = bpr_max_columns_reference(R, By, Y, bpreg, elu_param)
    RT = R.t().contiguous()
    loss, gb = bpr_max_columns(RT.numpy(), By.numpy(), Y.numpy(), bpreg, elu_param, EPS, n_chunks=chunks)
    assert abs(loss - float(ref_loss)) < 1e-5
    torch.testing.assert_close(RT.t().to(torch.float64), ref_grad, rtol=1e-4, atol=1e-7)  # RT now holds dR^T
    torch.testing.assert_close(torch.from_numpy(gb).to(torch.float64), ref_grad.sum(0), rtol=1e-4, atol=1e-6)


def test_bpr_max_columns_kernel_with_all_threads():
    """The parallel path (the rest of the suite runs numba on one thread)."""
    import numba

    from .conftest import DEFAULT_NUMBA_THREADS

    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    try:
        test_bpr_max_columns_kernel_equals_formula(80, 2128, None, 0.5, 1.95)
        test_bpr_max_columns_kernel_equals_formula(5, 40, 3, 1.0, 0.9)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("loss_name,dtype", [("cross_entropy", torch.float64), ("cross_entropy", torch.float32),
                                             ("bpr_max", torch.float64), ("bpr_max", torch.float32),
                                             ("xe_columns", torch.float32), ("bpr_max_columns", torch.float32)])
def test_losses_divide_by_the_given_divisor(loss_name, dtype):
    """A batch shrunk to 5 of 8 rows: the loss and every gradient are the row sum over 8, as in the
    reference (each event weighs 1 / batch_size); the default is the mean over the rows."""
    from nextitem.training.kernels import bpr_max_columns

    g = torch.Generator().manual_seed(5)
    n, C = 5, 12
    R = torch.randn(n, C, generator=g, dtype=torch.float64).to(dtype)

    def run(**kw):
        if loss_name == "cross_entropy":
            loss, grad = cross_entropy(R.clone(), **kw)
            return float(loss), grad.to(torch.float64), None
        if loss_name == "bpr_max":
            loss, grad = bpr_max(R.clone(), 1.5, 0.5, **kw)
            return float(loss), grad.to(torch.float64), None
        RT = R.t().contiguous().numpy()
        Y, By = np.arange(C), np.linspace(-1, 1, C).astype(np.float32)
        if loss_name == "xe_columns":
            loss, gb = xe_columns(RT, By, Y, n, None, 1.0, 0.0, EPS, **kw)
        else:
            loss, gb = bpr_max_columns(RT, By, Y, 1.5, 0.5, EPS, **kw)
        return loss, torch.from_numpy(RT).t().to(torch.float64), torch.from_numpy(gb).to(torch.float64)

    mean_loss, mean_grad, mean_gb = run()
    loss, grad, gb = run(divisor=8)
    tol = dict(rtol=1e-6, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    assert loss == pytest.approx(mean_loss * n / 8, rel=tol["rtol"])
    assert grad.abs().max() > 1e-3  # not a zero gradient, which any scale would pass
    torch.testing.assert_close(grad, mean_grad * n / 8, **tol)
    if gb is not None:
        torch.testing.assert_close(gb, mean_gb * n / 8, **tol)
