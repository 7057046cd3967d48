"""Score fusion of reranker and retriever: standardisation, the weight's end points, fitting on validation."""
import numpy as np
import pytest

from nextitem.data.histories import Split
from nextitem.pipeline.two_stage import rerank_results
from nextitem.rerank.candidates import Candidates, evaluate_reranked
from nextitem.rerank.fusion import fit_weight, fuse, parse_fusion, standardise


def pools(n=200, k=10, seed=0):
    """n users whose target sits at a random place of a k-item pool."""
    rng = np.random.default_rng(seed)
    items = np.stack([rng.permutation(50)[:k] for _ in range(n)]) + 1
    targets = items[np.arange(n), rng.integers(0, k, n)]
    split = Split(np.arange(n), [np.array([0])] * n, targets, "valid")
    return split, items, rng


def informative(items, targets, rng, strength):
    """Scores that put the target higher the larger ``strength`` is (0: pure noise)."""
    return (rng.normal(size=items.shape) + strength * (items == targets[:, None])).astype(np.float32)


def test_standardise_keeps_each_rows_order_and_masked_items():
    s = np.array([[3.0, 1.0, 2.0, -np.inf], [5.0, 5.0, 5.0, 5.0]])
    z = standardise(s)
    assert list(np.argsort(-z[0])) == list(np.argsort(-s[0]))
    assert z[0, 3] == -np.inf
    assert z[0, :3].mean() == pytest.approx(0) and z[0, :3].std() == pytest.approx(1)
    assert np.all(z[1] == 0)  # a constant row does not divide by zero


def test_fusion_weight_ends_are_the_reranker_and_the_retriever_alone():
    split, items, rng = pools()
    rr, rt = informative(items, split.targets, rng, 1.0), 100.0 * informative(items, split.targets, rng, 2.0)
    cands = Candidates("valid", split.users, items, rt)
    for w, alone in ((0.0, rr), (1.0, rt)):
        assert evaluate_reranked(fuse(rr, rt, w), cands, split).metrics == evaluate_reranked(alone, cands, split).metrics
    # scales do not matter: the retriever's scores multiplied by 100 do not swamp w = 0.5
    half = fuse(rr, rt, 0.5)
    assert np.allclose(half, fuse(rr, rt / 100.0, 0.5))


@pytest.mark.parametrize("good, expect", [("retriever", 1.0), ("reranker", 0.0)])
def test_fit_weight_finds_the_informative_side(good, expect):
    split, items, rng = pools()
    perfect = (items == split.targets[:, None]).astype(np.float32)  # target scored 1, the rest 0
    noise = rng.normal(size=items.shape).astype(np.float32)
    rr, rt = (noise, perfect) if good == "retriever" else (perfect, noise)
    w, curve = fit_weight(rr, Candidates("valid", split.users, items, rt), split)
    assert curve[w] == pytest.approx(1.0) and curve[expect] == pytest.approx(1.0)
    if good == "reranker":
        assert w == 0.0  # ties favour the reranker
    else:
        assert curve[0.0] < 0.6  # the noisy side alone is clearly worse, so the search had something to find


def test_fit_weight_beats_both_when_each_model_knows_something():
    split, items, rng = pools(n=2000)
    # two independent noisy views of the target: their mix ranks it better than either
    rr, rt = informative(items, split.targets, rng, 1.5), informative(items, split.targets, rng, 1.5)
    w, curve = fit_weight(rr, Candidates("valid", split.users, items, rt), split)
    assert 0.2 <= w <= 0.8 and curve[w] > max(curve[0.0], curve[1.0]) + 0.02


def test_parse_fusion_names_the_allowed_values():
    assert parse_fusion("auto") == "auto" and parse_fusion("None") == "none" and parse_fusion("0.3") == 0.3
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        parse_fusion("1.5")
    with pytest.raises(ValueError, match="auto .* none .* number"):
        parse_fusion("best")


class TableReranker:
    """Scores looked up in a fixed [n_users, n_items] table, so results are exact to check."""

    def __init__(self, table):
        self.table = table

    def score_candidates(self, split, cands):
        cands = cands.align(split)
        return self.table[split.users[:, None], cands.items]


def test_rerank_results_fits_on_validation_and_reports_the_reranker_alone():
    import pandas as pd

    from nextitem.data.histories import HistoryData, LeaveOneOut

    rng = np.random.default_rng(4)
    rows = [(f"u{u}", f"i{i}", t) for u in range(300) for t, i in enumerate(rng.choice(60, 6, replace=False))]
    loo = LeaveOneOut.from_histories(HistoryData.from_frame(pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])))
    n_users, n_items = loo.data.n_users, loo.n_items

    def noisy_table(strength):
        t = rng.normal(size=(n_users, n_items)).astype(np.float32)
        for split in (loo.valid, loo.test):
            t[split.users, split.targets] += strength
        return t

    retriever, reranker = noisy_table(2.0), noisy_table(1.5)
    cands = {}
    for s in (loo.valid, loo.test):
        scores = retriever[s.users].copy()
        for i, h in enumerate(s.inputs):
            scores[i, h] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :20]
        cands[s.name] = Candidates(s.name, s.users.copy(), top, np.take_along_axis(scores, top, 1))
    res = rerank_results(TableReranker(reranker), loo, "retrieval", cands, rerank_top_k=20)
    w = res["test"].extra["retriever_weight"]
    curve = res["test"].extra["fusion_valid_ndcg@10"]
    assert curve[w] == max(curve.values())
    pool = cands["test"].align(loo.test)
    alone = evaluate_reranked(reranker[loo.test.users[:, None], pool.items], pool, loo.test)
    assert res["test_reranker_only"].metrics == alone.metrics
    fused = evaluate_reranked(fuse(reranker[loo.test.users[:, None], pool.items], pool.scores, w), pool, loo.test)
    assert res["test"].metrics == fused.metrics and "fused" in res["test"].protocol
    none = rerank_results(TableReranker(reranker), loo, "retrieval", cands, rerank_top_k=20, fusion="none")
    assert none["test"].metrics == alone.metrics and "test_reranker_only" not in none
    fixed = rerank_results(TableReranker(reranker), loo, "retrieval", cands, rerank_top_k=20, splits=("test",), fusion=1.0)
    assert fixed["test"].metrics == fixed["test_retriever"].metrics  # weight 1: the retriever's order


def test_rerank_results_reuses_known_validation_scores_only_for_the_same_users_and_pools():
    import pandas as pd

    from nextitem.data.histories import HistoryData, LeaveOneOut

    rng = np.random.default_rng(5)
    rows = [(f"u{u}", f"i{i}", t) for u in range(60) for t, i in enumerate(rng.choice(30, 5, replace=False))]
    loo = LeaveOneOut.from_histories(HistoryData.from_frame(pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])))
    table = rng.normal(size=(loo.data.n_users, loo.n_items)).astype(np.float32)
    cands = {s.name: Candidates(s.name, s.users.copy(), np.stack([rng.permutation(loo.n_items)[:10] for _ in s.users]),
                                np.sort(rng.normal(size=(len(s), 10)).astype(np.float32), 1)[:, ::-1].copy())
             for s in (loo.valid, loo.test)}

    class Counting(TableReranker):
        def __init__(self, t):
            super().__init__(t)
            self.scored = []

        def score_candidates(self, split, cands):
            self.scored.append(split.name)
            return super().score_candidates(split, cands)

    pool = cands["valid"].top(10).align(loo.valid)
    known = {"users": loo.valid.users.copy(), "items": pool.items.copy(),
             "scores": table[loo.valid.users[:, None], pool.items]}
    fresh, reusing = Counting(table), Counting(table)
    a = rerank_results(fresh, loo, "retrieval", cands, rerank_top_k=10, splits=("test",))
    b = rerank_results(reusing, loo, "retrieval", cands, rerank_top_k=10, splits=("test",), known={"valid": known})
    assert fresh.scored == ["valid", "test"] and reusing.scored == ["test"]
    assert a["test"].metrics == b["test"].metrics and a["test"].extra["retriever_weight"] == b["test"].extra["retriever_weight"]
    other = Counting(table)  # other pools (say, another retriever's): the known scores do not apply
    rerank_results(other, loo, "retrieval", cands, rerank_top_k=10, splits=("test",),
                   known={"valid": {**known, "items": np.roll(known["items"], 1, axis=1)}})
    assert other.scored == ["valid", "test"]
