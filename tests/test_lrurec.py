"""LRURec against brute force: the blocked scan against the step-by-step recurrence, the whole
network against a per-user complex128 loop (the chunked loss is tested in test_losses.py).

Shapes are tiny but longer than one scan block (CHUNK), so the block chaining is exercised.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nextitem.config import ConfigError
from nextitem.models.lrurec import LRURec, LRURecNet, lru_scan
from nextitem.models.sequential import left_pad

from .sequential_contract import ContractTests, adam_steps

N_ITEMS = 13


def small_net(seed=0, **kw) -> LRURecNet:
    torch.manual_seed(seed)
    cfg = LRURec.Config(**{"hidden": 8, "max_len": 40, **kw})
    return LRURecNet(cfg, N_ITEMS).eval()


def random_histories(rng, n, lo=1, hi=40):
    return [rng.integers(0, N_ITEMS, size=int(rng.integers(lo, hi + 1))) for _ in range(n)]


def stepwise_scan(u, nu, theta):
    """h_t = lambda h_{t-1} + u_t one step at a time, in complex128."""
    lam = torch.exp(torch.complex(-nu.double(), theta.double()))
    uc = torch.complex(u[:, :, 0].double(), u[:, :, 1].double())
    h, out = torch.zeros_like(uc[:, 0]), []
    for t in range(uc.shape[1]):
        h = lam * h + uc[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("L", [1, 5, 16, 17, 40, 100])
def test_scan_equals_stepwise_recurrence_values_and_gradients(L):
    g = torch.Generator().manual_seed(L)
    D = 6
    u = torch.randn(3, L, 2, D, generator=g, requires_grad=True)
    u.data[1, : L // 2] = 0  # a left-padded row: zero inputs
    nu = (torch.rand(D, generator=g) * 0.3 + 0.005).requires_grad_()  # |lambda| from 0.74 to 0.995
    theta = (torch.rand(D, generator=g) * 6.28).requires_grad_()
    fast = lru_scan(u, nu, theta)
    ref = stepwise_scan(u, nu, theta)
    assert fast.shape == (3, L, 2, D)
    torch.testing.assert_close(fast[:, :, 0].double(), ref.real, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast[:, :, 1].double(), ref.imag, rtol=1e-4, atol=1e-4)
    w = torch.randn(3, L, 2, D, generator=g)
    grads = torch.autograd.grad((fast * w).sum(), (u, nu, theta))
    ref_loss = (ref.real * w[:, :, 0].double()).sum() + (ref.imag * w[:, :, 1].double()).sum()
    ref_grads = torch.autograd.grad(ref_loss, (u, nu, theta))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b.double(), rtol=2e-3, atol=2e-3)


def reference_states(net: LRURecNet, history) -> torch.Tensor:
    """Hidden state after every item of one unpadded history: the network as a plain complex128 loop."""
    p = {k: v.double() for k, v in net.state_dict().items()}
    d = net.cfg.hidden

    def norm(x, name):
        return F.layer_norm(x, (d,), p[f"{name}.weight"], p[f"{name}.bias"])

    x = norm(p["item_emb.weight"][torch.as_tensor(history) + 1], "emb_norm")
    for i in range(net.cfg.blocks):
        q = f"lru.{i}."
        W, b = p[q + "in_proj.weight"], p[q + "in_proj.bias"]
        B, bb = torch.complex(W[0::2], W[1::2]), torch.complex(b[0::2], b[1::2])  # (Re, Im) interleaved
        lam = torch.exp(torch.complex(-p[q + "nu_log"].exp(), p[q + "theta_log"].exp()))
        gamma = p[q + "gamma_log"].exp()
        h, ys = torch.zeros(2 * d, dtype=torch.complex128), []
        for t in range(len(x)):
            h = lam * h + gamma * (B @ x[t].to(torch.complex128) + bb)
            ys.append(p[q + "out_proj.weight"] @ torch.stack([h.real, h.imag], 1).flatten() + p[q + "out_proj.bias"])
        x = norm(x + torch.stack(ys), q + "norm")
        f = f"ffn.{i}."
        inner = F.gelu(x @ p[f + "w1.weight"].T + p[f + "w1.bias"])
        x = norm(x + inner @ p[f + "w2.weight"].T + p[f + "w2.bias"], f + "norm")
    return x


def test_network_equals_stepwise_reference_with_padding():
    net = small_net()
    rng = np.random.default_rng(0)
    hist = random_histories(rng, 5, hi=net.max_len) + [rng.integers(0, N_ITEMS, size=net.max_len)]
    tokens = left_pad(hist, net.max_len)
    with torch.no_grad():
        scores = net.score_tokens(tokens)
        packed = net.encode(tokens)  # the training path: every real position
    E, b = net.item_emb.weight[1:].double(), net.bias.double()
    start = 0
    for row, h in enumerate(hist):
        ref = reference_states(net, h)
        torch.testing.assert_close(packed[start:start + len(h)].double(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(scores[row].double(), ref[-1] @ E.T + b, rtol=1e-4, atol=1e-4)
        start += len(h)


def test_padding_is_never_used_or_scored():
    net = small_net()
    rng = np.random.default_rng(1)
    hist = random_histories(rng, 4, hi=30)
    tokens = left_pad(hist, 30)
    batch = net.make_batch(hist, rng)
    with torch.no_grad():
        scores, loss = net.score_tokens(tokens), net(batch)[0]
        assert scores.shape == (4, N_ITEMS)  # items only, no padding column
        more = F.pad(tokens, (25, 0))  # prepend padding
        torch.testing.assert_close(net.score_tokens(more), scores, rtol=1e-5, atol=1e-5)
        wider = {k: F.pad(v, (25, 0)) for k, v in batch.items()}
        torch.testing.assert_close(net(wider)[0], loss, rtol=1e-5, atol=1e-5)
        net.item_emb.weight[0].normal_()  # the padding token's vector must play no part
        torch.testing.assert_close(net.score_tokens(tokens), scores, rtol=0, atol=0)
        torch.testing.assert_close(net(batch)[0], loss, rtol=0, atol=0)
        # Other users in the batch do not change a user's scores.
        torch.testing.assert_close(net.score_tokens(tokens[:1]), scores[:1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="row 1 ends in padding"):
        net.score_tokens(torch.tensor([[1, 2, 3], [4, 5, 0]]))


def test_causal_and_target_not_visible():
    net = small_net()
    rng = np.random.default_rng(2)
    tokens = torch.from_numpy(rng.integers(1, N_ITEMS + 1, size=(2, 35)))
    with torch.no_grad():
        base = net.encode(tokens).view(2, 35, -1)
        for t in (0, 16, 20, 33):
            changed = tokens.clone()
            changed[:, t + 1] = changed[:, t + 1] % N_ITEMS + 1  # the target of position t
            changed[:, t + 2:] = torch.from_numpy(rng.integers(1, N_ITEMS + 1, size=(2, 35 - t - 2)))
            after = net.encode(changed).view(2, 35, -1)
            torch.testing.assert_close(after[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-6)
            assert not torch.allclose(after[:, t + 1], base[:, t + 1])  # the test can fail


def test_make_batch_crops_and_shifts():
    net = small_net(max_len=4)
    rng = np.random.default_rng(0)
    b = net.make_batch([np.array([0, 1, 2, 3, 4, 5, 6]), np.array([7, 8]), np.array([9])], rng)
    assert b["inputs"].tolist() == [[3, 4, 5, 6], [0, 0, 0, 8], [0, 0, 0, 0]]
    assert b["targets"].tolist() == [[4, 5, 6, 7], [0, 0, 0, 9], [0, 0, 0, 0]]
    b = net.make_batch([np.array([1, 2, 3])], rng)  # padded to the longest row, not max_len
    assert b["inputs"].tolist() == [[2, 3]] and b["targets"].tolist() == [[3, 4]]


def test_loss_decreases_and_learns_a_sequence():
    net = small_net(hidden=16, dropout=0.0, attn_dropout=0.0, max_len=20).train()
    rng = np.random.default_rng(0)
    # Users walk i -> i+1 (mod N_ITEMS): the next item is fully determined by the last one.
    hist = [(int(rng.integers(N_ITEMS)) + np.arange(int(rng.integers(5, 25)))) % N_ITEMS for _ in range(32)]
    losses = adam_steps(net, hist, rng, steps=40)
    assert losses[-1] < 0.3 * losses[0], losses
    model = LRURec(hidden=16, max_len=20)
    model.net = net
    top = model.score([np.array([3, 4, 5]), np.array([11, 12])]).argmax(1)
    assert top.tolist() == [6, 0]


def test_save_load_gives_identical_scores(tmp_path):
    model = LRURec(hidden=8, blocks=1, max_len=30).init(N_ITEMS, seed=3)
    hist = random_histories(np.random.default_rng(3), 5, hi=30)
    model.save(tmp_path / "m.safetensors")
    loaded = LRURec.load(tmp_path / "m.safetensors")
    assert loaded.config == model.config
    assert torch.equal(loaded.score(hist), model.score(hist))


def test_config_errors_name_the_value_and_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'hidden'"):
        LRURec(hiden=32)
    with pytest.raises(ConfigError, match="Did you mean 'attn_dropout'"):
        LRURec(attn_droput=0.1)
    for bad, what in [({"hidden": 0}, "hidden=0"), ({"dropout": 1.0}, "dropout=1.0"),
                      ({"r_min": 0.0}, "r_min=0.0"), ({"r_max": 1.0}, "r_max=1.0"),
                      ({"r_min": 0.9, "r_max": 0.5}, "r_max=0.5"), ({"max_len": "abc"}, "max_len")]:
        with pytest.raises(ConfigError, match=what):
            LRURec(**bad)
    assert LRURec(hidden="32").config.hidden == 32  # strings from the command line are converted


class TestLRURecContract(ContractTests):
    model_class = LRURec
    params = {"hidden": 16, "max_len": 12}
