"""A fused training step equals a plain autograd step with the reference formulas.

The fast step (closed-form loss gradients, one kernel for the touched rows, hand-written GRU
backward) must update every parameter exactly as: autograd through the direct loss formulas of the
reference, summed over the rows and divided by the batch size (also when the batch has shrunk),
then Adagrad(+momentum) on the dense weights and on the touched rows of the item tables.
"""
import copy

import numpy as np
import pytest
import torch

from nextitem.models.gru4rec import GRU4RecConfig, GRU4RecNet
from nextitem.training.gru4rec import _Step
from nextitem.training.kernels import gemm_adagrad, rows_product_adagrad
from nextitem.training.optim import AdagradM

N_ITEMS = 40


def reference_loss(R, divisor, cfg, counts, y, samples):
    if cfg.loss == "cross-entropy":
        if cfg.logq > 0:
            q = torch.cat([counts[y], counts[samples] ** cfg.sample_alpha])
            R = R - cfg.logq * torch.log(q)
        P = torch.softmax(R, 1)
        return -torch.log(torch.diagonal(P) + 1e-24).sum() / divisor
    S = torch.nn.functional.elu(R, cfg.elu_param) if cfg.elu_param > 0 else R
    mask = 1 - torch.eye(*S.shape)
    e = torch.exp(S * mask - (S * mask).max(1, keepdim=True).values) * mask
    s = e / e.sum(1, keepdim=True)
    t = torch.diagonal(S).unsqueeze(1)
    loss = -torch.log((torch.sigmoid(t - S) * s).sum(1) + 1e-24) + cfg.bpreg * (S * S * s).sum(1)
    return loss.sum() / divisor


def adagrad_reference(p, g, state, lr, mu, rows=None):
    """Dense reference; with ``rows`` only those rows change (lazy momentum)."""
    acc, mom = state
    sel = slice(None) if rows is None else rows
    acc[sel] += g[sel] ** 2
    step = -lr * g[sel] / torch.sqrt(acc[sel] + 1e-6)
    if mu > 0:
        mom[sel] = mu * mom[sel] + step
        p[sel] += mom[sel]
    else:
        p[sel] += step


@pytest.mark.parametrize("mode", ["shared", "separate", "none"])
@pytest.mark.parametrize("loss,momentum", [("cross-entropy", 0.0), ("cross-entropy", 0.3), ("bpr-max", 0.4)])
@pytest.mark.parametrize("path", ["factored", "formed", "torch ops"])
def test_fused_step_equals_autograd_reference(mode, loss, momentum, path, monkeypatch):
    """factored: the CPU kernels with the GRU weight gradients as factors (MKL); formed: the same with
    the gradients formed (torch without MKL); torch ops: float64, which takes the ops a GPU runs."""
    check_against_reference(mode, loss, momentum, path, [8, 10] if mode != "none" else [10, 8], monkeypatch)


@pytest.mark.parametrize("loss,momentum", [("cross-entropy", 0.0), ("cross-entropy", 0.3), ("bpr-max", 0.4)])
def test_one_native_call_step_equals_autograd_reference(loss, momentum, monkeypatch):
    """One GRU layer with the shared embedding (every official best setting) runs as one native call
    on the CPU (kernels.FusedStep)."""
    from nextitem.training.kernels import HAVE_BLOCK_GEMM, FusedStep

    if not HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL: no native step")
    calls = []
    real = FusedStep.__call__
    monkeypatch.setattr(FusedStep, "__call__", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    check_against_reference("shared", loss, momentum, "native", [10], monkeypatch)
    assert len(calls) == 3


def check_against_reference(mode, loss, momentum, path, layers, monkeypatch):
    import nextitem.training.optim as optim

    if path in ("factored", "native") and not optim.HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL: the GRU weight gradients are always formed")
    monkeypatch.setattr(optim, "HAVE_BLOCK_GEMM", path in ("factored", "native"))
    dtype = torch.float64 if path == "torch ops" else torch.float32
    kw = {"shared": {}, "separate": dict(constrained_embedding=False, embedding=6),
          "none": dict(constrained_embedding=False, embedding=0)}[mode]
    cfg = GRU4RecConfig(layers=layers, loss=loss, momentum=momentum, batch_size=8,
                        learning_rate=0.1, logq=1.0 if loss == "cross-entropy" else 0.0, sample_alpha=0.5,
                        elu_param=0.5, bpreg=1.5, **kw)
    torch.manual_seed(0)
    net = GRU4RecNet(cfg, N_ITEMS).to(dtype)
    with torch.no_grad():
        net.By.normal_()  # non-zero biases so that their update is checked too
        for c in net.cells:
            c.bias_ih.normal_(0, 0.1)
    ref = copy.deepcopy(net)
    counts = torch.randint(1, 50, (N_ITEMS,)).float()
    dense = net.dense_parameters()
    opt = AdagradM(dense, net.sparse_parameters(), cfg.learning_rate, cfg.momentum)
    step = _Step(net, opt, dense, cfg, torch.log(counts) if cfg.logq else None, np.random.default_rng(0))
    assert step.fused == (path == "native")
    # float64 takes autograd's weight gradients and the torch-op loss, as a GPU does
    assert step.factored == (dtype == torch.float32)
    assert step.columns_kernel == (dtype == torch.float32)
    blocked = []  # calls of the block kernel: the "factored" path only
    monkeypatch.setattr(optim, "gemm_adagrad", lambda *a, **k: (blocked.append(1), gemm_adagrad(*a, **k)))
    row_blocks = []  # the output rows' gradient never formed: CPU float32 with MKL
    monkeypatch.setattr(optim, "rows_product_adagrad",
                        lambda *a, **k: (row_blocks.append(1), rows_product_adagrad(*a, **k)))
    ref_state = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in ref.named_parameters()}
    g = torch.Generator().manual_seed(1)
    H = [h.to(dtype) for h in net.init_hidden(cfg.batch_size)]
    H_ref = [h.to(dtype) for h in ref.init_hidden(cfg.batch_size)]
    # a full batch, then one shrunk to 6 and to 5 rows as at the end of an epoch: each row's loss
    # keeps the weight 1 / batch_size (a mean over the rows left would fail here)
    for it, n in enumerate([8, 6, 5]):
        keep = torch.arange(len(H[0])) < n
        H[:], H_ref[:] = [h[keep] for h in H], [h[keep] for h in H_ref]
        x = torch.randint(0, N_ITEMS, (n,), generator=g)
        y = torch.randint(0, N_ITEMS, (n,), generator=g)
        samples = torch.randint(0, N_ITEMS, (9,), generator=g)  # duplicates with y and x are likely
        x[0] = y[1]  # an input row that is also an output row
        loss = step(x, y, samples, H)
        # reference: plain autograd, whole-table gradients, then Adagrad on touched rows
        ref.zero_grad()
        h = ref.step(ref.input_table[x], H_ref)
        Y = torch.cat([y, samples])
        R = h @ ref.Wy[Y].t() + ref.By[Y]
        ref_loss = reference_loss(R, cfg.batch_size, cfg, counts, y, samples)
        ref_loss.backward()
        torch.testing.assert_close(float(loss), float(ref_loss.detach()), rtol=1e-5, atol=0, msg=f"loss at step {it}")
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if p is ref.By or p is ref.Wy or p is ref.input_table:
                    touched = torch.unique(Y) if p is not ref.input_table else torch.unique(x)
                    if p is ref.Wy and mode == "shared":
                        touched = torch.unique(torch.cat([Y, x]))
                    adagrad_reference(p, p.grad, ref_state[name], cfg.learning_rate, cfg.momentum, touched)
                else:
                    adagrad_reference(p, p.grad, ref_state[name], cfg.learning_rate, cfg.momentum)
        H_ref = [t.detach() for t in H_ref]
        for (name, a), b in zip(net.named_parameters(), ref.parameters()):
            # float32 rounding, amplified where Adagrad divides a tiny gradient by its own size, reaches
            # ~1.6e-6; a step weighted wrongly (the loss divided by the rows left) moves weights by ~1e-2
            torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-6, msg=lambda m: f"{name} after step {it}: {m}")
        for a, b in zip(H, H_ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-6)
    assert bool(blocked) == (path == "factored")  # the native step calls the block kernels directly
    assert bool(row_blocks) == (path == "factored")


@pytest.mark.parametrize("loss,momentum,p_embed,p_hidden,n_sample", [("cross-entropy", 0.0, 0.0, 0.4, 9),
                                                                     ("cross-entropy", 0.3, 0.3, 0.0, 9),
                                                                     ("bpr-max", 0.4, 0.3, 0.4, 9),
                                                                     ("cross-entropy", 0.0, 0.0, 0.0, 0)])
def test_native_step_is_bit_identical_to_the_direct_path(loss, momentum, p_embed, p_hidden, n_sample):
    """The one-call step repeats the direct path's operations in its layouts: with dropout, momentum,
    a batch that shrinks and carried states in both layouts, the losses, every parameter, the
    optimizer state and the carried state come out bit-identical."""
    from nextitem.training.kernels import HAVE_BLOCK_GEMM

    if not HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL: no native step")
    cfg = GRU4RecConfig(layers=[10], loss=loss, momentum=momentum, learning_rate=0.1, logq=1.0, sample_alpha=0.5,
                        elu_param=0.5, bpreg=1.5, dropout_p_embed=p_embed, dropout_p_hidden=p_hidden)

    def batches(g, H):
        for it in range(6):
            if it == 3:  # as the iterator does between rounds: reset a slot, then drop two
                H[:] = [h.index_fill(0, torch.tensor([1]), 0.0).index_select(0, torch.tensor([0, 1, 3, 4])) for h in H]
            n = len(H[0])
            x, y = torch.randint(0, N_ITEMS, (n,), generator=g), torch.randint(0, N_ITEMS, (n,), generator=g)
            x[0] = y[1]
            yield x, y, torch.randint(0, N_ITEMS, (n_sample,), generator=g)

    assert_bit_identical(run_with_and_without(cfg, "fused", batches, random_biases=True))


def run_with_and_without(cfg, switch, batches, random_biases=False):
    """Train a fresh network on the same batches twice, with the step's ``switch`` (a path it takes
    when it can) on, then off; each run's (losses, weights, optimizer state, carried state).
    ``batches(g, H)`` yields (x, y, samples) from the generator ``g`` and may reshape ``H``."""
    counts = torch.randint(1, 50, (N_ITEMS,)).float()
    runs = []
    for on in (True, False):
        torch.manual_seed(0)
        net = GRU4RecNet(cfg, N_ITEMS)
        if random_biases:
            with torch.no_grad():
                net.By.normal_()
        dense = net.dense_parameters()
        opt = AdagradM(dense, net.sparse_parameters(), cfg.learning_rate, cfg.momentum)
        step = _Step(net, opt, dense, cfg, torch.log(counts), np.random.default_rng(0))
        assert getattr(step, switch)
        setattr(step, switch, on)
        H = net.init_hidden(6)
        losses = [float(step(x, y, samples, H)) for x, y, samples in batches(torch.Generator().manual_seed(1), H)]
        runs.append((losses, {k: v.clone() for k, v in net.state_dict().items()},
                     {k: v.clone() for k, v in opt.state_dict().items()}, [h.clone() for h in H]))
    return runs


def assert_bit_identical(runs):
    (l1, s1, o1, h1), (l2, s2, o2, h2) = runs
    assert l1 == l2
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    assert all(torch.equal(a, b) for a, b in zip(h1, h2))


@pytest.mark.parametrize("a_t", [False, True])
@pytest.mark.parametrize("b_t", [False, True])
def test_native_matmul_is_torch_mm(a_t, b_t):
    """The native step's products make torch.mm's BLAS call: equal to the last bit."""
    from nextitem.training.kernels import HAVE_BLOCK_GEMM, matmul

    if not HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL")
    g = np.random.default_rng(0)
    M, K, N = 67, 45, 9
    A = g.standard_normal((K, M) if a_t else (M, K)).astype(np.float32)
    B = g.standard_normal((N, K) if b_t else (K, N)).astype(np.float32)
    ref = torch.mm(torch.from_numpy(A).t() if a_t else torch.from_numpy(A),
                   torch.from_numpy(B).t() if b_t else torch.from_numpy(B)).numpy()
    assert np.array_equal(matmul(A, a_t, B, b_t), ref)
    np.testing.assert_allclose(ref, (A.T if a_t else A).astype(np.float64) @ (B.T if b_t else B), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_direct_gru_path_equals_the_autograd_path(mode):
    """On the CPU (float32) the GRU stack runs without autograd (_Step.direct); with dropout on both
    the embedding and the hidden layers, two layers and momentum, the losses, every parameter, the
    optimizer state and the carried state must come out bit-identical to the autograd path."""
    kw = {"shared": {}, "separate": dict(constrained_embedding=False, embedding=6)}[mode]
    cfg = GRU4RecConfig(layers=[8, 10], loss="cross-entropy", momentum=0.3, learning_rate=0.1, logq=1.0,
                        sample_alpha=0.5, dropout_p_embed=0.3, dropout_p_hidden=0.4, **kw)

    def batches(g, H):
        for _ in range(4):
            x, y = torch.randint(0, N_ITEMS, (6,), generator=g), torch.randint(0, N_ITEMS, (6,), generator=g)
            yield x, y, torch.randint(0, N_ITEMS, (9,), generator=g)

    runs = run_with_and_without(cfg, "direct", batches)
    assert_bit_identical(runs)
    assert any((h == 0).any() for h in runs[0][3])  # dropout did zero some of the carried state


def test_direct_path_is_off_for_onehot_input_and_float64():
    cfg = GRU4RecConfig(layers=[8], constrained_embedding=False, embedding=0)
    net = GRU4RecNet(cfg, N_ITEMS)
    opt = AdagradM(net.dense_parameters(), net.sparse_parameters(), 0.1)
    assert not _Step(net, opt, net.dense_parameters(), cfg, None, np.random.default_rng(0)).direct
    net64 = GRU4RecNet(GRU4RecConfig(layers=[8]), N_ITEMS).double()
    opt = AdagradM(net64.dense_parameters(), net64.sparse_parameters(), 0.1)
    assert not _Step(net64, opt, net64.dense_parameters(), net64.config, None, np.random.default_rng(0)).direct


@pytest.mark.parametrize("kw", [dict(layers=[8, 8]), dict(layers=[8], constrained_embedding=False, embedding=6)])
def test_native_step_is_off_for_stacks_and_separate_embeddings(kw):
    cfg = GRU4RecConfig(**kw)
    net = GRU4RecNet(cfg, N_ITEMS)
    opt = AdagradM(net.dense_parameters(), net.sparse_parameters(), 0.1)
    step = _Step(net, opt, net.dense_parameters(), cfg, None, np.random.default_rng(0))
    assert step.direct and not step.fused


@pytest.mark.parametrize("loss,momentum,p_embed,p_hidden,n_sample", [("cross-entropy", 0.0, 0.0, 0.3, 5),
                                                                     ("bpr-max", 0.4, 0.3, 0.4, 5),
                                                                     ("cross-entropy", 0.2, 0.2, 0.0, 0)])
@pytest.mark.parametrize("rounds_per_call", [3, 64])
def test_training_in_chunks_of_rounds_equals_step_by_step(loss, momentum, p_embed, p_hidden, n_sample,
                                                          rounds_per_call, monkeypatch):
    """Training runs the one-call step over chunks of rounds (_Step.fused_rounds): its resets and
    shrinking between rounds, the state handed from call to call, the dropout draws and a sample store
    refilled mid-chunk (7 rows) must leave the weights and optimizer state of the step-by-step direct
    path, bit for bit, over two epochs that end with one slot left."""
    import pandas as pd

    import nextitem.training.gru4rec as trainer
    from nextitem.models.gru4rec import GRU4Rec
    from nextitem.training.kernels import HAVE_BLOCK_GEMM

    if not HAVE_BLOCK_GEMM:
        pytest.skip("torch without MKL: no native step")
    rng = np.random.default_rng(3)
    lengths = list(rng.integers(2, 9, size=40)) + [16]  # the last, longest session ends alone
    sessions = np.repeat(np.arange(len(lengths)), lengths)
    df = pd.DataFrame({"SessionId": sessions, "ItemId": rng.integers(0, 30, size=len(sessions)),
                       "Time": np.arange(len(sessions))})
    cfg = GRU4RecConfig(layers=[12], loss=loss, momentum=momentum, batch_size=8, n_epochs=2, learning_rate=0.1,
                        logq=1.0, sample_alpha=0.5, elu_param=0.5, bpreg=1.5, dropout_p_embed=p_embed,
                        dropout_p_hidden=p_hidden, n_sample=n_sample)
    monkeypatch.setattr(trainer, "_ROUNDS_PER_CALL", rounds_per_call)
    calls = []
    real = trainer._Step.fused_rounds
    monkeypatch.setattr(trainer._Step, "fused_rounds", lambda *a: (calls.append(1), real(*a))[1])
    chunked = GRU4Rec(cfg).fit(df, sample_store_size=35)
    n_calls = len(calls)
    assert n_calls > 2 if rounds_per_call == 3 else n_calls == 2  # several calls per epoch, or one
    monkeypatch.setattr(trainer, "HAVE_BLOCK_GEMM", False)  # no one-call step: the direct path, step by step
    stepwise = GRU4Rec(cfg).fit(df, sample_store_size=35)
    assert len(calls) == n_calls  # the second run made no chunked call
    for k, v in chunked.net.state_dict().items():
        assert torch.equal(v, stepwise.net.state_dict()[k]), k
    for a, b in zip(chunked.history, stepwise.history):
        assert (a["minibatches"], a["events"]) == (b["minibatches"], b["events"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
