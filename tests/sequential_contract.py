"""Checks every user-history model must pass; a model's test file subclasses ContractTests.

    class TestSASRec(ContractTests):
        model_class = SASRec
        params = {"hidden": 16, "max_len": 12}
"""
import os

import numpy as np
import pytest
import torch

from nextitem.config import ConfigError


def toy_histories(n_users=24, n_items=30, seed=0, min_len=3, max_len=15):
    """Histories with a learnable pattern: after item i usually comes i + 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        start = rng.integers(0, n_items)
        length = rng.integers(min_len, max_len + 1)
        h = (start + np.arange(length)) % n_items
        noise = rng.random(length) < 0.1
        h[noise] = rng.integers(0, n_items, size=noise.sum())
        out.append(h.astype(np.int64))
    return out


def history_frame(histories, user="u{}", item="i{}"):
    """UserId / ItemId / Time rows of ``histories`` (Time = position in the history)."""
    import pandas as pd

    rows = [(user.format(u), item.format(int(i)), t) for u, h in enumerate(histories) for t, i in enumerate(h)]
    return pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])


def write_history_folder(path, histories):
    """A dataset folder with interactions.tsv, as ``nextitem train`` reads it."""
    path.mkdir(parents=True, exist_ok=True)
    history_frame(histories).to_csv(path / "interactions.tsv", sep="\t", index=False)
    return path


def adam_steps(net, histories, rng, steps=30, lr=1e-2, batch=None):
    """Train ``net`` with Adam on ``histories`` (a new batch per step unless ``batch`` is given); the losses."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, n = net(batch if batch is not None else net.make_batch(histories, rng))
        loss = loss / n
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


class ContractTests:
    model_class = None
    params: dict = {}
    n_items = 30

    def make(self, seed=0, **params):
        return self.model_class(**{**self.params, **params}).init(self.n_items, seed=seed)

    def test_scores_all_items_and_never_padding(self):
        model = self.make()
        scores = model.score([np.array([1, 2, 3]), np.array([4])])
        assert scores.shape == (2, self.n_items) and torch.isfinite(scores).all()

    def test_padding_does_not_change_scores(self):
        model = self.make()
        h = np.array([3, 4, 5, 6])
        alone = model.score([h])
        # batched with a longer history, h gets more left padding
        together = model.score([h, np.arange(model.net.max_len) % self.n_items])
        torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-4)

    def test_history_is_used(self):
        model = self.make()
        a, b = model.score([np.array([1, 2, 3])]), model.score([np.array([7, 8, 9])])
        assert not torch.allclose(a, b)

    def test_only_the_last_max_len_items_count(self):
        model = self.make()
        L = model.net.max_len
        long = np.arange(L + 5) % self.n_items
        torch.testing.assert_close(model.score([long]), model.score([long[-L:]]), rtol=1e-4, atol=1e-4)

    def test_training_batch_is_repeatable_and_loss_is_finite(self):
        model = self.make()
        hs = toy_histories()
        b1 = model.net.make_batch(hs, np.random.default_rng(7))
        b2 = model.net.make_batch(hs, np.random.default_rng(7))
        assert b1.keys() == b2.keys() and all(torch.equal(b1[k], b2[k]) for k in b1)
        assert all(len(v) == len(hs) for v in b1.values())  # rows = users, so DDP can split them
        loss, n = model.net(b1)
        assert torch.isfinite(loss) and int(n) > 0

    def test_a_few_adam_steps_lower_the_loss(self):
        model = self.make(seed=1)
        hs = toy_histories()
        net = model.net
        net.train()
        batch = net.make_batch(hs, np.random.default_rng(0))
        torch.manual_seed(0)
        first = adam_steps(net, hs, None, steps=30, batch=batch)[0]
        net.eval()
        with torch.no_grad():
            loss, n = net(batch)
        assert float(loss / n) < 0.8 * first

    def test_save_load_gives_identical_scores(self, tmp_path):
        model = self.make(seed=3)
        hs = [np.array([1, 2, 3]), np.array([5, 9])]
        model.save(tmp_path / "m.safetensors")
        back = self.model_class.load(tmp_path / "m.safetensors")
        assert back.config == model.config
        torch.testing.assert_close(back.score(hs), model.score(hs), rtol=0, atol=0)
        umask = os.umask(0o022)
        os.umask(umask)
        # a saved model reads like any new file (not the 0600 of the temporary file it was written to)
        assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask

    def test_unknown_parameter_suggests_the_nearest_name(self):
        name = next(iter(self.params), "max_len")
        with pytest.raises(ConfigError, match=f"Did you mean '{name}'"):
            self.model_class(**{name + "x": 1})

    def test_empty_history_is_a_clear_error(self):
        with pytest.raises(ValueError, match="at least one item"):
            self.make().score([np.array([], dtype=np.int64)])
