"""AdagradM against dense reference formulas (doc 1.6), in float64.

step_rows: scatter-add the row gradients into a dense gradient, then Adagrad(+momentum) on the
touched rows only; untouched rows keep their parameter, accumulator and momentum ("lazy momentum").
The CPU float32 path runs the fused numba kernel; any other parameter goes through the torch ops
(reached here with a float64 parameter on the CPU, the same code a GPU runs).
"""
import numba
import numpy as np
import pytest
import torch
from .conftest import DEFAULT_NUMBA_THREADS

from nextitem.training.kernels import HAVE_BLOCK_GEMM, adagrad_dense, adagrad_rows, gemm_adagrad
from nextitem.training.optim import AdagradM, coalesce_rows

EPS = 1e-6


class DenseRef:
    """Dense Adagrad with momentum in float64 on the CPU, updating the touched rows only."""

    def __init__(self, param, lr, mu):
        self.p = param.detach().cpu().to(torch.float64).clone()
        self.acc = torch.zeros_like(self.p)
        self.mom = torch.zeros_like(self.p)
        self.lr, self.mu = lr, mu

    def step_rows(self, rows, grad):
        G = torch.zeros_like(self.p)
        G.index_add_(0, rows, grad.to(torch.float64))
        touched = torch.zeros(len(self.p), dtype=torch.bool)
        touched[rows] = True
        acc = self.acc + G * G
        step = -self.lr * G / torch.sqrt(acc + EPS)
        mom = self.mu * self.mom + step if self.mu > 0 else step
        t = touched.view(-1, *([1] * (self.p.dim() - 1))).expand_as(self.p)
        self.acc = torch.where(t, acc, self.acc)
        if self.mu > 0:
            self.mom = torch.where(t, mom, self.mom)
        self.p = torch.where(t, self.p + mom, self.p)
        return touched


def random_rows(gen, n_rows, n_idx, dup_heavy):
    hi = max(n_rows // 3, 1) if dup_heavy else n_rows
    return torch.randint(0, hi, (n_idx,), generator=gen)


SHAPES = [(20,), (20, 1), (20, 7), (50, 33)]  # (n,) is a bias vector


@pytest.mark.parametrize("path", ["numba", "torch"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.0, 0.4, 0.9])
def test_step_rows_matches_dense_reference(path, shape, momentum):
    check_step_rows(path, shape, momentum)


def check_step_rows(path, shape, momentum):
    dtype = torch.float64 if path == "torch" else torch.float32
    device = "cuda" if path == "cuda" else "cpu"
    gen = torch.Generator().manual_seed(hash((shape, momentum)) % 1000)
    param = torch.randn(shape, generator=gen).to(device, dtype)
    lr = 0.07
    opt = AdagradM([], [param], lr, momentum)
    ref = DenseRef(param, lr, momentum)
    for it in range(8):
        rows = random_rows(gen, shape[0], n_idx=int(torch.randint(1, 25, (1,), generator=gen)), dup_heavy=it % 2 == 0)
        if it == 3:  # the same row many times, with gradients that cancel: still a touched row
            rows = torch.tensor([4, 4, 4, 9])
        grad = torch.randn((len(rows),) + shape[1:], generator=gen).to(dtype)
        if it == 3:
            grad[1] = -grad[0] - grad[2]
        before_p = param.detach().clone()
        before_acc = opt.sparse_acc[id(param)].clone()
        before_mom = opt.sparse_mom[id(param)].clone() if momentum > 0 else None
        touched = ref.step_rows(rows, grad.clone())
        opt.step_rows(param, rows.to(device), grad.clone().to(device))
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(param.cpu().to(torch.float64), ref.p, **tol)
        torch.testing.assert_close(opt.sparse_acc[id(param)].cpu().to(torch.float64), ref.acc, **tol)
        if momentum > 0:
            torch.testing.assert_close(opt.sparse_mom[id(param)].cpu().to(torch.float64), ref.mom, **tol)
        # untouched rows: bit-for-bit unchanged (no momentum decay, no movement)
        untouched = (~touched).to(device)
        assert torch.equal(param[untouched], before_p[untouched])
        assert torch.equal(opt.sparse_acc[id(param)][untouched], before_acc[untouched])
        if momentum > 0:
            assert torch.equal(opt.sparse_mom[id(param)][untouched], before_mom[untouched])
    assert opt.sparse_mom is None or momentum > 0


@pytest.mark.parametrize("path", ["numba", "torch"])
@pytest.mark.parametrize("momentum", [0.0, 0.4])
def test_step_rows_with_bias_matches_two_dense_references(path, momentum):
    """bias=(b, g): the table's rows and the bias entries of the first len(g) indices, in one call, as
    two separate updates would do (rows only in the tail, like GRU4Rec's input rows, leave b alone)."""
    dtype = torch.float64 if path == "torch" else torch.float32
    gen = torch.Generator().manual_seed(11)
    W = torch.randn(25, 6, generator=gen).to(dtype)
    b = torch.randn(25, generator=gen).to(dtype)
    opt = AdagradM([], [W, b], 0.05, momentum)
    ref_W, ref_b = DenseRef(W, 0.05, momentum), DenseRef(b, 0.05, momentum)
    for it in range(6):
        head = random_rows(gen, 25, 15, dup_heavy=it % 2 == 0)  # the output columns: W and b
        tail = torch.randint(0, 25, (5,), generator=gen)  # input rows: W only
        rows = torch.cat([head, tail])
        g = torch.randn(len(rows), 6, generator=gen).to(dtype)
        gb = torch.randn(len(head), generator=gen).to(dtype)
        before_b = b.clone()
        ref_W.step_rows(rows, g.clone())
        touched_b = ref_b.step_rows(head, gb.clone())
        opt.step_rows(W, rows, g.clone(), bias=(b, gb.clone()))
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(W.to(torch.float64), ref_W.p, **tol)
        torch.testing.assert_close(b.to(torch.float64), ref_b.p, **tol)
        torch.testing.assert_close(opt.sparse_acc[id(b)].to(torch.float64), ref_b.acc, **tol)
        assert torch.equal(b[~touched_b], before_b[~touched_b])


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_numba_and_torch_paths_agree(momentum):
    gen = torch.Generator().manual_seed(3)
    p32 = torch.randn(30, 5, generator=gen)
    p64 = p32.to(torch.float64)
    o32, o64 = AdagradM([], [p32], 0.1, momentum), AdagradM([], [p64], 0.1, momentum)
    for _ in range(5):
        rows = torch.randint(0, 30, (40,), generator=gen)
        g = torch.randn(40, 5, generator=gen)
        o32.step_rows(p32, rows, g.clone())
        o64.step_rows(p64, rows, g.to(torch.float64))
    torch.testing.assert_close(p32.to(torch.float64), p64, rtol=1e-5, atol=1e-6)


def test_numba_kernel_with_all_threads():
    """The parallel path of both kernels (the rest of the suite runs numba on one thread)."""
    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    try:
        gen = torch.Generator().manual_seed(11)
        for momentum in (0.0, 0.3):
            param = torch.randn(500, 16, generator=gen)
            ref = DenseRef(param, 0.05, momentum)
            opt = AdagradM([], [param], 0.05, momentum)
            for _ in range(3):
                rows = torch.randint(0, 500, (2000,), generator=gen)
                grad = torch.randn(2000, 16, generator=gen)
                ref.step_rows(rows, grad.clone())
                opt.step_rows(param, rows, grad.clone())
            torch.testing.assert_close(param.to(torch.float64), ref.p, rtol=1e-5, atol=1e-6)
            # dense kernel, long enough for several parallel chunks of 4096
            W = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
            G = np.random.default_rng(1).standard_normal(10_000).astype(np.float32)
            acc, mom = np.zeros_like(W), np.zeros_like(W)
            W0 = W.astype(np.float64)
            adagrad_dense(W, acc, mom if momentum else None, G, 0.05, momentum, EPS)
            step = -0.05 * G.astype(np.float64) / np.sqrt(G.astype(np.float64) ** 2 + EPS)
            np.testing.assert_allclose(W, W0 + step, rtol=1e-5, atol=1e-6)
    finally:
        numba.set_num_threads(old)


def test_rows_kernel_returns_number_of_distinct_rows():
    W = np.zeros((10, 2), np.float32)
    n = adagrad_rows(W, np.zeros_like(W), None, np.array([3, 1, 3, 3, 7], dtype=np.int64),
                     np.ones((5, 2), np.float32), 0.1, 0.0, EPS)
    assert n == 3


def test_coalesce_rows():
    index = torch.tensor([5, 2, 5, 0, 2, 5])
    values = torch.arange(12, dtype=torch.float64).view(6, 2)
    rows, summed = coalesce_rows(index, values)
    expect = {}
    for i, v in zip(index.tolist(), values):
        expect[i] = expect.get(i, 0) + v
    n = len(expect)
    assert len(rows) == len(index) and sorted(rows[:n].tolist()) == sorted(expect)
    for r, s in zip(rows.tolist(), summed):
        assert torch.equal(s, expect[r])  # the padding repeats a real (row, sum) pair
    assert (rows[n:] == rows[0]).all()
    one_d = coalesce_rows(index, values[:, 0])[1]
    assert one_d.shape == (6,) and torch.equal(one_d, summed[:, 0])


@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.9])
def test_step_dense_matches_formula(momentum):
    check_step_dense(momentum, "cpu")  # the CPU runs the numba kernel


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the torch step_rows path is covered on the CPU in float64)")
def test_torch_paths_on_cuda():
    """Off the CPU both updates run as torch ops; step_dense's torch path is reachable only there."""
    for momentum in (0.0, 0.3, 0.9):
        check_step_dense(momentum, "cuda")
        for shape in SHAPES:
            check_step_rows("cuda", shape, momentum)


def check_step_dense(momentum, device):
    gen = torch.Generator().manual_seed(5)
    params = [torch.randn(6, 4, generator=gen), torch.randn(9, generator=gen), torch.randn(3, 2, 5, generator=gen)]
    params = [p.to(device) for p in params]
    ref_p = [p.cpu().to(torch.float64).clone() for p in params]
    ref_acc = [torch.zeros_like(p) for p in ref_p]
    ref_mom = [torch.zeros_like(p) for p in ref_p]
    lr = 0.05
    opt = AdagradM(params, [], lr, momentum)
    for _ in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        grads[0] = grads[0].t().contiguous().t()  # a non-contiguous gradient
        for i, g in enumerate(grads):
            g = g.to(torch.float64)
            ref_acc[i] += g * g
            step = -lr * g / torch.sqrt(ref_acc[i] + EPS)
            if momentum > 0:
                ref_mom[i] = momentum * ref_mom[i] + step
                ref_p[i] += ref_mom[i]
            else:
                ref_p[i] += step
        opt.step_dense([g.to(device) for g in grads])
        for i, p in enumerate(params):
            torch.testing.assert_close(p.cpu().to(torch.float64), ref_p[i], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(opt.acc[i].cpu().to(torch.float64), ref_acc[i], rtol=1e-5, atol=1e-6)
            if momentum > 0:
                torch.testing.assert_close(opt.mom[i].cpu().to(torch.float64), ref_mom[i], rtol=1e-5, atol=1e-6)
    assert (opt.mom is None) == (momentum == 0)


def product_update_reference(W, acc, mom, D, X, lr, momentum):
    """The product taken whole by torch (MKL), then the flat dense kernel: what gemm_adagrad must equal."""
    G = (torch.from_numpy(D) @ torch.from_numpy(X)).numpy()
    adagrad_dense(W.reshape(-1), acc.reshape(-1), None if mom is None else mom.reshape(-1), G.reshape(-1), lr,
                  momentum, EPS)


@pytest.mark.skipif(not HAVE_BLOCK_GEMM, reason="torch without MKL: step_dense_product takes the product whole")
@pytest.mark.parametrize("threads", ["one", "all"])
@pytest.mark.parametrize("R,K,N,block", [(1440, 48, 480, 32), (7, 3, 5, 4), (33, 1, 2, 32), (70, 9, 40, 16)])
@pytest.mark.parametrize("x_transposed", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.4])
def test_gemm_adagrad_equals_product_then_update(threads, R, K, N, block, x_transposed, momentum):
    rng = np.random.default_rng(R + K + N)
    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS if threads == "all" else 1)
    try:
        W = rng.standard_normal((R, N), dtype=np.float32)
        acc, mom = rng.random((R, N), dtype=np.float32), rng.standard_normal((R, N), dtype=np.float32)
        ref = [W.copy(), acc.copy(), mom.copy()]
        for _ in range(2):
            D = rng.standard_normal((R, K), dtype=np.float32)
            X = rng.standard_normal((K, N), dtype=np.float32)
            product_update_reference(ref[0], ref[1], ref[2] if momentum else None, D, X, 0.05, momentum)
            Xa = np.ascontiguousarray(X.T) if x_transposed else X
            gemm_adagrad(D, Xa, x_transposed, W, acc, mom if momentum else None, 0.05, momentum, EPS, block=block)
        np.testing.assert_allclose(W, ref[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(acc, ref[1], rtol=1e-6, atol=1e-6)
        if momentum:
            np.testing.assert_allclose(mom, ref[2], rtol=1e-6, atol=1e-6)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_step_dense_product_and_subsets(momentum):
    """step_dense_product (block kernel in float32, the product whole in float64) and step_dense on a
    subset of the parameters both equal step_dense with the full gradients."""
    gen = torch.Generator().manual_seed(9)
    base = [torch.randn(12, 6, generator=gen), torch.randn(5, generator=gen)]
    D, Xt = torch.randn(12, 4, generator=gen), torch.randn(6, 4, generator=gen)
    gb = torch.randn(5, generator=gen)
    for dtype in (torch.float32, torch.float64):
        ref = [p.to(dtype).clone() for p in base]
        mine = [p.to(dtype).clone() for p in base]
        o_ref, o_mine = AdagradM(ref, [], 0.05, momentum), AdagradM(mine, [], 0.05, momentum)
        for _ in range(3):
            o_ref.step_dense([(D @ Xt.t()).to(dtype), gb.to(dtype)])
            o_mine.step_dense_product(mine[0], D.to(dtype), Xt.t().to(dtype))  # X given in transposed layout
            o_mine.step_dense([gb.to(dtype)], [mine[1]])
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(o_mine.state_dict().values(), o_ref.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not HAVE_BLOCK_GEMM, reason="torch without MKL: step_dense_product takes the product whole")
def test_gemm_adagrad_refuses_layouts_it_would_misread():
    W = np.zeros((4, 3), np.float32)
    D = np.asfortranarray(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="D must be a C-contiguous float32"):
        gemm_adagrad(D, np.ones((2, 3), np.float32), False, W, np.zeros_like(W), None, 0.1, 0.0, EPS)
    with pytest.raises(ValueError, match="X must be"):
        gemm_adagrad(np.ones((4, 2), np.float32), np.ones((2, 3)), False, W, np.zeros_like(W), None, 0.1, 0.0, EPS)
    assert not W.any()  # nothing was written


@pytest.mark.skipif(not HAVE_BLOCK_GEMM, reason="torch without MKL: step_rows_product forms the product")
@pytest.mark.parametrize("threads", ["one", "all"])
@pytest.mark.parametrize("V,C,n_extra,K,N,block", [(50, 40, 5, 6, 24, 4), (3000, 2096, 48, 48, 480, 32),
                                                   (5, 9, 0, 1, 3, 32)])
@pytest.mark.parametrize("momentum", [0.0, 0.4])
def test_rows_product_adagrad_equals_product_then_rows_update(threads, V, C, n_extra, K, N, block, momentum):
    """Duplicates among the product rows, among the extra rows and across both; biases on the first C."""
    from nextitem.training.kernels import rows_product_adagrad

    rng = np.random.default_rng(V + C)
    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS if threads == "all" else 1)
    try:
        W, acc = rng.standard_normal((V, N), dtype=np.float32), rng.random((V, N), dtype=np.float32)
        mom = rng.standard_normal((V, N), dtype=np.float32)
        B, accB, momB = (rng.standard_normal(V, dtype=np.float32), rng.random(V, dtype=np.float32),
                         rng.standard_normal(V, dtype=np.float32))
        ref = [a.copy() for a in (W, acc, mom, B, accB, momB)]
        W0 = W.copy()
        idx = rng.integers(0, min(V, C), C + n_extra)  # a narrow range: many duplicates
        D = rng.standard_normal((C, K), dtype=np.float32)
        X = rng.standard_normal((K, N), dtype=np.float32)
        E = rng.standard_normal((n_extra, N), dtype=np.float32)
        gb = rng.standard_normal(C, dtype=np.float32)
        use = (lambda a: a) if momentum else (lambda a: None)
        G = np.concatenate([D @ X, E]).astype(np.float32)
        adagrad_rows(ref[0], ref[1], use(ref[2]), idx, G, 0.05, momentum, EPS, bias=(ref[3], ref[4], use(ref[5]), gb))
        n_rows = rows_product_adagrad(W, acc, use(mom), idx, D, X, E, 0.05, momentum, EPS,
                                      bias=(B, accB, use(momB), gb), block=block)
        assert n_rows == len(np.unique(idx))
        for a, b in zip((W, acc, mom, B, accB, momB), ref):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
        assert not np.array_equal(W, W0)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("momentum", [0.0, 0.3])
@pytest.mark.parametrize("block_gemm", [True, False])
def test_step_rows_product_equals_step_rows(momentum, block_gemm, monkeypatch):
    """step_rows_product (block kernel, or the formed product without MKL) equals step_rows on D @ X."""
    import nextitem.training.optim as optim

    if block_gemm and not HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL")
    monkeypatch.setattr(optim, "HAVE_BLOCK_GEMM", block_gemm)
    gen = torch.Generator().manual_seed(4)
    table, bias = torch.randn(30, 8, generator=gen), torch.randn(30, generator=gen)
    rows = torch.randint(0, 12, (25,), generator=gen)
    D, X, extra = torch.randn(20, 3, generator=gen), torch.randn(3, 8, generator=gen).t().contiguous().t(), \
        torch.randn(5, 8, generator=gen)
    gb = torch.randn(20, generator=gen)
    mine = [table.clone(), bias.clone()]
    ref = [table.clone(), bias.clone()]
    o_mine, o_ref = AdagradM([], mine, 0.05, momentum), AdagradM([], ref, 0.05, momentum)
    for _ in range(2):
        o_mine.step_rows_product(mine[0], rows, D, X, extra=extra, bias=(mine[1], gb))
        o_ref.step_rows(ref[0], rows, torch.cat((D @ X, extra)), bias=(ref[1], gb))
    for a, b in zip(mine + list(o_mine.state_dict().values()), ref + list(o_ref.state_dict().values())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(mine[0], table)


@pytest.mark.skipif(not HAVE_BLOCK_GEMM, reason="torch without MKL")
def test_rows_product_adagrad_refuses_layouts_it_would_misread():
    from nextitem.training.kernels import rows_product_adagrad

    W = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="X must be a C-contiguous float32"):
        rows_product_adagrad(W, np.zeros_like(W), None, np.array([0, 1]), np.ones((2, 2), np.float32),
                             np.asfortranarray(np.ones((2, 3), np.float32)), np.zeros((0, 3), np.float32),
                             0.1, 0.0, EPS)
    assert not W.any()
