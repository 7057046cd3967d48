"""SASRec: the shared contract, causality, and its two losses against direct formulas."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nextitem.config import ConfigError
from nextitem.models.sasrec import SASRec

from .sequential_contract import ContractTests, toy_histories


class TestSASRecPostLN(ContractTests):
    model_class = SASRec
    params = {"hidden": 16, "max_len": 12, "heads": 2, "dropout": 0.1, "loss": "bce"}


class TestSASRecPreLNCrossEntropy(ContractTests):
    model_class = SASRec
    params = {"hidden": 16, "max_len": 12, "norm_first": True, "loss": "ce"}


@pytest.mark.parametrize("norm_first", [False, True])
def test_a_position_never_sees_later_items(norm_first):
    net = SASRec(hidden=16, max_len=10, norm_first=norm_first).init(20).net.eval()
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9, 10]])
    changed = tokens.clone()
    changed[0, 6:] = torch.tensor([1, 2, 1, 2])
    a, b = net.encode(tokens), net.encode(changed)
    torch.testing.assert_close(a[0, :6], b[0, :6])
    assert not torch.allclose(a[0, 6:], b[0, 6:])


def test_training_targets_are_the_next_items_and_negatives_unseen():
    net = SASRec(hidden=8, max_len=6).init(30).net
    hs = toy_histories(n_users=10, n_items=30, max_len=12)
    batch = net.make_batch(hs, np.random.default_rng(0))
    for row, h in enumerate(hs):
        inputs, targets, neg = batch["inputs"][row], batch["targets"][row], batch["negatives"][row]
        real = targets > 0
        tail = h[-(6 + 1):] + 1
        assert inputs[real].tolist() == tail[:-1].tolist() and targets[real].tolist() == tail[1:].tolist()
        assert (neg[~real] == 0).all() and set(neg[real].tolist()).isdisjoint((h + 1).tolist())


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_loss_equals_the_direct_formula(loss):
    net = SASRec(hidden=8, max_len=6, dropout=0.0, loss=loss).init(15).net.eval()
    batch = net.make_batch(toy_histories(n_users=5, n_items=15), np.random.default_rng(1))
    total, n = net(batch)
    h = net.encode(batch["inputs"])
    E = net.item_emb.weight
    expected = 0.0
    for b in range(h.shape[0]):
        for t in range(h.shape[1]):
            y = int(batch["targets"][b, t])
            if y == 0:
                continue
            if loss == "ce":
                expected += -F.log_softmax(h[b, t] @ E[1:].T, 0)[y - 1]
            else:
                expected += -F.logsigmoid(h[b, t] @ E[y]) - F.logsigmoid(-(h[b, t] @ E[int(batch["negatives"][b, t])]))
    assert int(n) == int((batch["targets"] > 0).sum())
    torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-4)


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="hidden=10 must be divisible by heads=3"):
        SASRec(hidden=10, heads=3)
    with pytest.raises(ConfigError, match="loss='bpr' is not allowed"):
        SASRec(loss="bpr")


def test_batches_are_as_wide_as_their_longest_row_and_padding_changes_nothing():
    net = SASRec(hidden=8, max_len=10, dropout=0.0, loss="ce").init(15).net.eval()
    hs = [np.array([1, 2, 3, 4]), np.array([5, 6])]
    batch = net.make_batch(hs, np.random.default_rng(0))
    assert batch["inputs"].shape == (2, 3)
    wider = {k: F.pad(v, (7, 0)) for k, v in batch.items()}  # the same rows left-padded to max_len
    torch.testing.assert_close(net(batch)[0], net(wider)[0])
