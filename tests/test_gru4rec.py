"""GRU4Rec end to end on a tiny synthetic dataset with a strong sequential signal.

Sessions follow item i -> i+1 (mod 30) 90% of the time, so a model that learned anything ranks
the true next item near the top, while chance is Recall@5 = 5/30.
"""
import contextlib
import functools
import json
import pickle
import struct

import numpy as np
import pandas as pd
import pytest
import torch

from nextitem.data import SessionData
from nextitem.evaluation import evaluate_sessions
from nextitem.models.gru4rec import GRU4Rec

N_ITEMS = 30
CHANCE_R5 = 5 / N_ITEMS


def item_id(i, kind):
    return f"itém-{i}" if kind == "str" else 1000 + 7 * i  # non-contiguous ints; non-ascii text


def make_sessions(n_sessions, seed, kind="int", noise=0.1, first_session=0):
    rng = np.random.default_rng(seed)
    rows, t = [], 1_000_000 * seed
    for s in range(n_sessions):
        item = int(rng.integers(N_ITEMS))
        for _ in range(int(rng.integers(2, 9))):
            rows.append((first_session + s, item_id(item, kind), t))
            t += 1
            item = (item + 1) % N_ITEMS if rng.random() > noise else int(rng.integers(N_ITEMS))
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


@functools.lru_cache(maxsize=None)
def train_df(kind="int"):
    return make_sessions(300, seed=0, kind=kind)


@functools.lru_cache(maxsize=None)
def heldout_df(kind="int"):
    return make_sessions(60, seed=1, kind=kind, first_session=10_000)


MODES = {
    "shared": dict(constrained_embedding=True),
    "separate16": dict(constrained_embedding=False, embedding=16),
    "separate_layersize": dict(constrained_embedding=False, embedding="layersize"),
    "none": dict(constrained_embedding=False, embedding=0),
}
LAYERS = {"20": (20,), "16-24": (16, 24)}


def params(mode, loss="cross-entropy", layers="16-24", dropout=0.0, **extra):
    p = dict(MODES[mode], layers=list(LAYERS[layers]), loss=loss, batch_size=16, n_sample=20, n_epochs=3,
             learning_rate=0.1, dropout_p_embed=dropout, dropout_p_hidden=dropout / 2)
    p.update(extra)
    return p


@functools.lru_cache(maxsize=None)
def trained(mode, loss="cross-entropy", layers="16-24", dropout=0.0, kind="int"):
    return GRU4Rec(**params(mode, loss, layers, dropout)).fit(train_df(kind), sample_store_size=2000)


def heldout(model, kind="int"):
    return SessionData.from_frame(heldout_df(kind), vocab=model.vocab)


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("layers", list(LAYERS))
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("mode", list(MODES))
def test_training_learns(mode, loss, layers, dropout):
    model = trained(mode, loss, layers, dropout)
    cfg = model.config
    net = model.net
    sizes = list(LAYERS[layers])
    # the configured structure
    assert net.mode == {"shared": "shared", "separate16": "separate", "separate_layersize": "separate", "none": "none"}[mode]
    assert tuple(net.Wy.shape) == (N_ITEMS, sizes[-1]) and tuple(net.By.shape) == (N_ITEMS,)
    if mode == "shared":
        assert net.input_table is net.Wy
    elif mode == "none":
        assert tuple(net.input_table.shape) == (N_ITEMS, 3 * sizes[0])
    else:
        assert tuple(net.input_table.shape) == (N_ITEMS, 16 if mode == "separate16" else sizes[0])
    assert [h.shape[1] for h in net.init_hidden(2)] == sizes
    # it trained: finite, decreasing loss, all events used each epoch
    hist = model.history
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    losses = [h["loss"] for h in hist]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    n_pred = SessionData.from_frame(train_df()).n_predictions()
    assert all(h["events"] == n_pred for h in hist)  # n_sample > 0: every event is used
    assert all(torch.isfinite(p).all() for p in net.parameters())
    # and it learned the sequential signal
    res = evaluate_sessions(model, heldout(model), cutoffs=(5,))
    assert res.metrics["recall@5"] > 3 * CHANCE_R5, res.metrics
    assert cfg.layers == sizes


def test_untrained_model_is_near_chance():
    model = GRU4Rec(**params("shared", n_epochs=0)).fit(train_df(), sample_store_size=2000)
    assert model.history == []
    r5 = evaluate_sessions(model, heldout(model), cutoffs=(5,)).metrics["recall@5"]
    assert r5 < 2 * CHANCE_R5
    assert evaluate_sessions(trained("shared"), heldout(model), cutoffs=(5,)).metrics["recall@5"] > r5 + 0.3


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_training_without_samples_and_with_logq_momentum(loss):
    p = params("shared", loss, "20", n_sample=0, momentum=0.5, logq=1.0 if loss == "cross-entropy" else 0.0)
    model = GRU4Rec(**p).fit(train_df(), sample_store_size=2000)
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < losses[0]
    n_pred = SessionData.from_frame(train_df()).n_predictions()
    assert all(0 < h["events"] <= n_pred for h in model.history)  # stops below 2 slots
    assert evaluate_sessions(model, heldout(model), cutoffs=(5,)).metrics["recall@5"] > 3 * CHANCE_R5


@pytest.mark.parametrize("mode", ["shared", "none"])
def test_same_seed_same_weights(mode):
    p = params(mode, "bpr-max", dropout=0.3, momentum=0.3, n_epochs=2)
    a = GRU4Rec(**p).fit(train_df(), sample_store_size=500)
    b = GRU4Rec(**p).fit(train_df(), sample_store_size=500)
    for (name, x), y in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(x, y), name
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = GRU4Rec(**dict(p, seed=7)).fit(train_df(), sample_store_size=500)
    assert not torch.equal(a.net.Wy, c.net.Wy)


# ---------------------------------------------------------------------------------- scoring
def histories(model, kind="int"):
    data = heldout(model, kind)
    out = []
    for s in range(0, 12):
        items = data.items[data.offsets[s]:data.offsets[s + 1]].tolist()
        out.append(items[: 1 + s % len(items)])
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_score_batch_equals_each_alone(mode):
    model = trained(mode)
    hs = histories(model)
    assert len({len(h) for h in hs}) > 2
    batch = model.score(hs)
    assert tuple(batch.shape) == (len(hs), N_ITEMS)
    for i, h in enumerate(hs):
        torch.testing.assert_close(batch[i], model.score([h])[0], rtol=1e-5, atol=1e-5)


def test_score_rejects_empty_history_and_unfitted_model():
    with pytest.raises(ValueError):
        trained("shared").score([[1], []])
    with pytest.raises(RuntimeError, match="not fitted"):
        GRU4Rec(layers=[8]).score([[0]])


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("mode", ["shared", "none"])
def test_live_session_matches_score(mode, kind):
    model = trained(mode, kind=kind)
    i1, i2 = item_id(3, kind), item_id(17, kind)
    rec = model.new_session().add(i1).add(i2).recommend(k=7)
    idx = model.vocab.index_of([i1, i2]).tolist()
    scores = model.score([idx])[0]
    top = torch.topk(scores, 7)
    assert list(rec["item"]) == list(model.vocab.to_ids(top.indices.numpy()))
    np.testing.assert_allclose(rec["score"].to_numpy(), top.values.numpy(), rtol=1e-5, atol=1e-5)
    # the learned signal: after 17 comes 18 (90% of the time in training); a tiny 3-epoch model
    # need not put it first, but it must be near the top of 30
    assert item_id(18, kind) in list(rec["item"].iloc[:3])
    # exclude_seen
    seen = model.new_session().add(i1).add(item_id(4, kind)).add(i1)
    rec = seen.recommend(k=N_ITEMS, exclude_seen=True)
    masked = model.score([model.vocab.index_of([i1, item_id(4, kind), i1]).tolist()])[0]
    masked[model.vocab.index_of([i1, item_id(4, kind)])] = float("-inf")
    expect = torch.topk(masked, N_ITEMS - 2)
    assert len(rec) == N_ITEMS  # k larger than the number of unseen items: seen ones come last
    assert list(rec["item"][: N_ITEMS - 2]) == list(model.vocab.to_ids(expect.indices.numpy()))
    assert set(rec["item"][: N_ITEMS - 2]).isdisjoint({i1, item_id(4, kind)})


def test_live_session_errors():
    model = trained("shared")
    session = model.new_session()
    with pytest.raises(ValueError):
        session.recommend()
    with pytest.raises(KeyError):
        session.add(123456789)
    with pytest.raises(KeyError):
        session.add("itém-3")  # a text id against an integer vocabulary
    assert session.items == []


def test_live_session_state_is_per_session():
    model = trained("separate16")
    a = model.new_session().add(item_id(1, "int")).add(item_id(2, "int"))
    b = model.new_session().add(item_id(2, "int"))
    ref_b = model.score([model.vocab.index_of([item_id(2, "int")]).tolist()])[0]
    np.testing.assert_allclose(b.recommend(k=5)["score"].to_numpy(), torch.topk(ref_b, 5).values.numpy(), rtol=1e-5, atol=1e-5)
    assert a.items == [item_id(1, "int"), item_id(2, "int")]


# ---------------------------------------------------------------------------------- save / load
def safetensors_header(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


@contextlib.contextmanager
def no_pickle():
    """Fails if pickle or torch.load runs inside the block.

    Only around the load itself: numba reads its own compiled-kernel cache with pickle, which the
    evaluation afterwards may trigger in a fresh process.
    """
    def refuse(*a, **k):
        raise AssertionError("pickle used while loading a model")

    with pytest.MonkeyPatch.context() as mp:
        for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
            mp.setattr(module, name, refuse)
        yield


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("mode", list(MODES))
def test_save_load_round_trip(tmp_path, mode, kind):
    model = trained(mode, kind=kind)
    path = tmp_path / "model.safetensors"
    model.save(path)
    header = safetensors_header(path)
    assert header["__metadata__"]["format"].startswith("nextitem.gru4rec")
    assert all(isinstance(v, dict) and "dtype" in v for k, v in header.items() if k != "__metadata__")
    with no_pickle():
        loaded = GRU4Rec.load(path)
    assert loaded.config == model.config
    assert list(loaded.vocab.ids) == list(model.vocab.ids)
    if kind == "int":
        assert pd.api.types.is_integer_dtype(loaded.vocab.ids.dtype)
    else:
        assert all(isinstance(x, str) for x in loaded.vocab.ids)
    for (name, a), b in zip(model.net.state_dict().items(), loaded.net.state_dict().values()):
        assert torch.equal(a, b), name
    hs = histories(model, kind)
    assert torch.equal(model.score(hs), loaded.score(hs))
    data = heldout(model, kind)
    r1 = evaluate_sessions(model, data, cutoffs=(1, 5, 20), batch_size=7)
    r2 = evaluate_sessions(loaded, heldout(loaded, kind), cutoffs=(1, 5, 20), batch_size=7)
    assert r1.metrics == r2.metrics and r1.n_predictions == r2.n_predictions
    # the loaded model takes raw ids of the training type
    rec1 = model.new_session().add(item_id(5, kind)).recommend(k=3)
    rec2 = loaded.new_session().add(item_id(5, kind)).recommend(k=3)
    assert list(rec1["item"]) == list(rec2["item"])
    assert all(type(x) is type(y) or (kind == "int" and isinstance(x, (int, np.integer)))
               for x, y in zip(rec2["item"], rec1["item"]))


def test_load_refuses_a_pickle_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError):
        GRU4Rec.load(path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        GRU4Rec.load(tmp_path / "missing.safetensors")


def test_save_unfitted_model_fails(tmp_path):
    with pytest.raises(RuntimeError):
        GRU4Rec(layers=[8]).save(tmp_path / "m.safetensors")


# ---------------------------------------------------------------------------------- evaluation
def brute_force_eval(model, df, cutoffs, tol=1e-5):
    """Score each session prefix from a zero state with model.score; standard ranks.

    Returns (best-case metrics, worst-case metrics, n_predictions, n_unseen, n_ambiguous): two
    scores within ``tol`` of each other count as possibly tied, so that float rounding between a
    batched and a single-session forward pass cannot make the comparison flaky.
    """
    known = set(model.vocab.ids.tolist())
    n_unseen = int((~df["ItemId"].isin(known)).sum())
    ranks_lo, ranks_hi = [], []
    for _, g in df.groupby("SessionId", sort=False):
        g = g.sort_values("Time", kind="stable")
        items = [x for x in g["ItemId"] if x in known]
        idx = model.vocab.index_of(items).tolist()
        for p in range(1, len(idx)):
            s = model.score([idx[:p]])[0].double()
            st = s[idx[p]]
            others = torch.cat((s[: idx[p]], s[idx[p] + 1:]))
            ranks_lo.append(1 + int((others > st + tol).sum()))
            ranks_hi.append(1 + int((others > st - tol).sum()))

    def metrics(ranks):
        out = {}
        for k in cutoffs:
            out[f"recall@{k}"] = sum(r <= k for r in ranks) / len(ranks)
            out[f"mrr@{k}"] = sum(1 / r for r in ranks if r <= k) / len(ranks)
        return out

    n_amb = sum(a != b for a, b in zip(ranks_lo, ranks_hi))
    return metrics(ranks_lo), metrics(ranks_hi), len(ranks_lo), n_unseen, n_amb


def eval_test_df():
    df = make_sessions(14, seed=5, noise=0.4, first_session=500)
    extra = pd.DataFrame({
        "SessionId": [900, 900, 900, 900, 901, 901, 902, 903, 903],
        "ItemId": [item_id(2, "int"), 424242, item_id(3, "int"), item_id(9, "int"),  # unseen in the middle
                   424243, item_id(1, "int"),  # unseen + one known: nothing to predict
                   item_id(4, "int"),  # a length-1 session
                   item_id(8, "int"), item_id(9, "int")],
        "Time": [5, 6, 7, 8, 1, 2, 3, 4, 4],
    })
    df = pd.concat([df, extra], ignore_index=True)
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)  # unsorted file


@pytest.mark.parametrize("batch_size", [1, 3, 512])
@pytest.mark.parametrize("mode", ["shared", "none", "separate_layersize"])
def test_evaluate_equals_brute_force(mode, batch_size):
    model = trained(mode, "bpr-max")
    df = eval_test_df()
    data = SessionData.from_frame(df, vocab=model.vocab)
    cutoffs = (1, 3, 5, 10)
    res = evaluate_sessions(model, data, cutoffs=cutoffs, batch_size=batch_size)
    best, worst, n_pred, n_unseen, n_amb = brute_force_eval(model, df, cutoffs)
    assert n_unseen == 2 and res.n_unseen == n_unseen
    assert res.n_predictions == n_pred
    assert n_amb <= 0.05 * n_pred  # the comparison below is (almost) exact
    for key, value in res.metrics.items():
        assert worst[key] - 1e-12 <= value <= best[key] + 1e-12, (key, value, worst[key], best[key])
    assert res.cutoffs == list(cutoffs)
    assert res.lines()[0].startswith("Recall@1: ") and " MRR@1: " in res.lines()[0]


def test_evaluate_without_reset_would_differ():
    """Sanity check of the brute force: carrying the state over sessions gives other scores."""
    model = trained("shared", "bpr-max")
    a, b = [model.vocab.index_of([item_id(i, "int")]).tolist() for i in (3, 20)]
    assert not torch.allclose(model.score([b])[0], model.score([a + b])[0], atol=1e-4)
