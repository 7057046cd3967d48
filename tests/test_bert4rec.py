"""BERT4Rec: Cloze batches, what the network can see, the masked-position loss, save/load, config."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nextitem.config import ConfigError
from nextitem.models.bert4rec import IGNORE, BERT4Rec, BERT4RecConfig, BERT4RecNet
from nextitem.models.sequential import left_pad

from .sequential_contract import ContractTests, adam_steps

N_ITEMS = 40


def tiny(**params) -> BERT4RecNet:
    torch.manual_seed(0)
    cfg = BERT4RecConfig(**{"hidden": 16, "heads": 2, "max_len": 12, "dropout": 0.0, "attn_dropout": 0.0, **params})
    return BERT4RecNet(cfg, N_ITEMS).eval()


def histories(n, lo=1, hi=11, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, N_ITEMS, size=int(rng.integers(lo, hi))).astype(np.int32) for _ in range(n)]


# ---------------------------------------------------------------- Cloze batches
@pytest.mark.parametrize("rule", ["mask", "bert"])
def test_labels_exactly_at_masked_positions(rule):
    net, hs = tiny(mask_rule=rule), histories(64)
    batch = net.make_batch(hs, np.random.default_rng(1))
    tokens, labels = batch["tokens"], batch["labels"]
    original = left_pad(hs, tokens.shape[1])  # histories fit: no crop, same width as the batch
    assert tokens.shape[1] == max(len(h) for h in hs) and labels.shape == tokens.shape
    labelled = labels != IGNORE
    assert torch.equal(labels[labelled], original[labelled] - 1)  # label = the original item index
    assert not (labelled & (original == 0)).any()  # padding is never a target
    assert labelled.any(dim=1).all()  # at least one target per row
    assert torch.equal(tokens[~labelled], original[~labelled])  # unlabelled positions are untouched
    if rule == "mask":
        assert (tokens[labelled] == net.mask_token).all()
        assert not (tokens[~labelled] == net.mask_token).any()


@pytest.mark.parametrize("n", [3, 12])
def test_mask_rate_matches_mask_prob(n):
    p = 0.3
    net = tiny(mask_prob=p)
    rng = np.random.default_rng(2)
    hs = [np.arange(n, dtype=np.int32)] * 200
    counts = np.array([int((net.make_batch(hs, rng)["labels"] != IGNORE).sum()) for _ in range(50)])
    # a row of n items: n Bernoulli(p) draws, plus one forced target when none was drawn
    expected = len(hs) * (n * p + (1 - p) ** n)
    sd = np.sqrt(len(hs) * n * p * (1 - p))
    assert abs(counts.mean() - expected) < 4 * sd / np.sqrt(len(counts))
    if n == 12:  # the forced targets are rare here: the rate is mask_prob itself
        assert abs(counts.mean() / (len(hs) * n) - p) < 0.01


def test_bert_rule_shares():
    net = tiny(mask_prob=0.5, mask_rule="bert")
    hs = [np.arange(10, dtype=np.int32)] * 500
    batch = net.make_batch(hs, np.random.default_rng(3))
    labelled = batch["labels"] != IGNORE
    shown = batch["tokens"][labelled]
    masked = (shown == net.mask_token).float().mean()
    kept = (shown == batch["labels"][labelled] + 1).float().mean()  # 10% kept + rare random hits of the label
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1 - 0.1 / N_ITEMS) < 0.03


def test_long_histories_are_cropped_to_a_contiguous_window():
    net = tiny(max_len=8)
    hs = [np.arange(30, dtype=np.int32) + 3 * i % 7 for i in range(20)]
    batch = net.make_batch(hs, np.random.default_rng(4))
    rebuilt = torch.where(batch["labels"] != IGNORE, batch["labels"], batch["tokens"] - 1).numpy()
    starts = set()
    for h, row in zip(hs, rebuilt):
        s = int(row[0] - h[0])
        assert np.array_equal(row, h[s:s + 8])
        starts.add(s)
    assert len(starts) > 1  # random windows, not always the newest
    last = tiny(max_len=8, crop="last").make_batch(hs, np.random.default_rng(4))
    rebuilt = torch.where(last["labels"] != IGNORE, last["labels"], last["tokens"] - 1).numpy()
    assert np.array_equal(rebuilt, np.stack([h[-8:] for h in hs]))


def test_rng_is_the_only_randomness():
    net, hs = tiny(mask_rule="bert"), histories(16, hi=30)
    np.random.seed(1), torch.manual_seed(1)
    a = net.make_batch(hs, np.random.default_rng(5))
    np.random.seed(2), torch.manual_seed(2)
    b = net.make_batch(hs, np.random.default_rng(5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_empty_history_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one item"):
        tiny().make_batch([np.array([1, 2]), np.array([], dtype=np.int32)], np.random.default_rng(0))


# ---------------------------------------------------------------- what the network sees
def test_masked_target_is_invisible():
    net, hs = tiny(), histories(8)
    batch = net.make_batch(hs, np.random.default_rng(6))
    row, col = [int(i) for i in torch.nonzero(batch["labels"] != IGNORE)[0]]
    changed = [h.copy() for h in hs]
    offset = batch["tokens"].shape[1] - len(hs[row])  # left padding of that row
    changed[row][col - offset] = (changed[row][col - offset] + 1) % N_ITEMS
    other = net.make_batch(changed, np.random.default_rng(6))
    assert torch.equal(other["tokens"], batch["tokens"])
    assert int(other["labels"][row, col]) != int(batch["labels"][row, col])
    assert torch.equal(net.masked_states(other), net.masked_states(batch))


def test_padding_is_never_attended_to():
    net, hs = tiny(), histories(6, hi=9)
    base = net.score_tokens(net.tokens_for_scoring(hs))
    assert base.shape == (len(hs), N_ITEMS)  # real items only: neither padding nor [mask]
    wide = left_pad(hs, net.max_len, append=net.mask_token)  # more left padding
    assert torch.allclose(net.score_tokens(wide), base, atol=1e-5)
    for i, h in enumerate(hs):  # each history alone, with no padding at all
        alone = left_pad([h], len(h) + 1, append=net.mask_token)
        assert torch.allclose(net.score_tokens(alone)[0], base[i], atol=1e-5)
    with torch.no_grad():  # what sits at padding positions cannot matter
        net.item_emb.weight[0].normal_()
        net.pos_emb.weight[: net.max_len - 9].normal_()
    assert torch.allclose(net.score_tokens(wide), base, atol=1e-5)


def test_score_needs_the_mask_token_last():
    net = tiny()
    with pytest.raises(ValueError, match="tokens_for_scoring"):
        net.score_tokens(left_pad(histories(2), 5))


def test_masked_loss_equals_full_logits_cross_entropy():
    net, hs = tiny(), histories(10)
    batch = net.make_batch(hs, np.random.default_rng(7))
    loss, n_terms = net(batch)
    # brute force: every position against the whole embedding table, then keep real-item columns
    h = net.encode(batch["tokens"])
    z = net.head_norm(F.gelu(net.head(h), approximate="tanh")) @ net.item_emb.weight.t()
    full = z[..., 1:N_ITEMS + 1] + net.out_bias  # [B, W, n_items]
    # the sum over labelled positions written out: logsumexp minus the target's score
    labelled = torch.nonzero(batch["labels"] != IGNORE).tolist()
    ref = sum(torch.logsumexp(full[b, t], 0) - full[b, t, batch["labels"][b, t]] for b, t in labelled)
    assert int(n_terms) == len(labelled) > 0
    assert torch.allclose(loss, ref, rtol=1e-5)


def test_batch_splits_by_rows_for_data_parallel_ranks():
    net, hs = tiny(), histories(9)
    batch = net.make_batch(hs, np.random.default_rng(9))
    loss, n = net(batch)
    parts = [net({k: v[r::2] for k, v in batch.items()}) for r in range(2)]  # the trainer's split
    assert int(n) == sum(int(p[1]) for p in parts)
    assert torch.allclose(loss, sum(p[0] for p in parts), rtol=1e-5)
    loss, n = net({k: v[:0] for k, v in batch.items()})  # a rank left without rows by a short last batch
    assert float(loss.detach()) == 0.0 and int(n) == 0


def test_loss_decreases_and_learns_a_cycle():
    torch.manual_seed(0)
    net = BERT4RecNet(BERT4RecConfig(hidden=32, heads=2, max_len=10, dropout=0.0, attn_dropout=0.0, mask_prob=0.3), 12)
    rng = np.random.default_rng(8)
    hs = [(np.arange(int(rng.integers(3, 11))) + int(rng.integers(12))) % 12 for _ in range(48)]  # i -> i + 1 (mod 12)
    losses = adam_steps(net, hs, rng, steps=100)
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])
    net.eval()
    top = net.score_tokens(net.tokens_for_scoring([np.arange(3, 8), np.arange(9, 12), [5]])).argmax(1)
    assert top.tolist() == [8, 0, 6]


# ---------------------------------------------------------------- save / load, config
def test_save_load_gives_identical_scores(tmp_path):
    model = BERT4Rec(hidden=16, heads=4, max_len=9, mask_prob=0.4).init(N_ITEMS, seed=3)
    hs = histories(5)
    before = model.score(hs)
    model.save(tmp_path / "b.safetensors")
    loaded = BERT4Rec.load(tmp_path / "b.safetensors")
    assert loaded.config == model.config
    assert torch.equal(loaded.score(hs), before)


def test_unknown_key_suggests_the_nearest_name():
    with pytest.raises(ConfigError, match="'hidden'"):
        BERT4Rec(hiden=32)


@pytest.mark.parametrize("params, name", [
    ({"hidden": 64, "heads": 3}, "hidden"), ({"dropout": 1.0}, "dropout"), ({"attn_dropout": -0.1}, "attn_dropout"),
    ({"mask_prob": 0.0}, "mask_prob"), ({"max_len": 1}, "max_len"), ({"blocks": 0}, "blocks"),
    ({"d_ff": -1}, "d_ff"), ({"mask_rule": "random"}, "mask_rule"), ({"crop": "first"}, "crop"),
])
def test_bad_values_name_the_key(params, name):
    with pytest.raises(ConfigError, match=f"{name}="):
        BERT4Rec(**params)


class TestBERT4RecContract(ContractTests):
    model_class = BERT4Rec
    params = {"hidden": 16, "heads": 2, "max_len": 12}
