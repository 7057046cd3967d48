"""A training run stopped after an epoch and resumed from its checkpoint ends where an uninterrupted run ends."""
import numpy as np
import pandas as pd
import pytest
import torch

from nextitem.config import ConfigError
from nextitem.models import GRU4Rec


def _sessions(n_sessions=120, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for s in range(n_sessions):
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(2, 7))):
            rows.append((s, f"i{item}", t))
            t += 1
            item = (item + 1) % n_items if rng.random() < 0.8 else int(rng.integers(n_items))
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


@pytest.mark.parametrize("loss", ["bpr-max", "cross-entropy"])
def test_resume_matches_uninterrupted(tmp_path, loss):
    df = _sessions()
    params = dict(loss=loss, layers=[16], batch_size=8, n_sample=10, dropout_p_embed=0.2, dropout_p_hidden=0.1,
                  momentum=0.3, logq=1.0 if loss == "cross-entropy" else 0.0)
    # sample_store_size small enough that the store is refilled during an epoch
    full = GRU4Rec(n_epochs=3, **params).fit(df, sample_store_size=400)
    ck = tmp_path / "run.ckpt"
    GRU4Rec(n_epochs=1, **params).fit(df, sample_store_size=400, checkpoint=ck)  # "killed" after epoch 1
    assert ck.exists()
    resumed = GRU4Rec(n_epochs=3, **params).fit(df, sample_store_size=400, checkpoint=ck)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for (name, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_of_other_config_is_refused(tmp_path):
    df = _sessions()
    ck = tmp_path / "run.ckpt"
    GRU4Rec(n_epochs=1, layers=[8], batch_size=8, n_sample=5).fit(df, checkpoint=ck)
    with pytest.raises(ConfigError, match="another configuration"):
        GRU4Rec(n_epochs=2, layers=[12], batch_size=8, n_sample=5).fit(df, checkpoint=ck)

