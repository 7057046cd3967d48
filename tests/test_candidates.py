"""Candidate sets: top-K retrieval, the file round trip, all-users accounting, ground-truth pools."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from nextitem.data import DataError
from nextitem.data.histories import HistoryData, LeaveOneOut, Split
from nextitem.evaluation.ranking import evaluate_ranking
from nextitem.rerank.candidates import (Candidates, evaluate_reranked, ground_truth_pools, read_candidates, retrieve,
                                        write_candidates)


@pytest.fixture
def loo():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"item{i}", t) for u in range(30) for t, i in enumerate(rng.choice(40, rng.integers(3, 9), replace=False))]
    return LeaveOneOut.from_histories(HistoryData.from_frame(pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])))


def fixed_scores(n_items, seed=1):
    table = torch.from_numpy(np.random.default_rng(seed).normal(size=(1000, n_items)).astype(np.float32))
    return lambda histories: table[[int(h.sum()) % 1000 for h in histories]]


def test_retrieve_is_the_top_k_of_full_ranking_with_history_masked(loo):
    score = fixed_scores(loo.n_items)
    c = retrieve(score, loo.test, loo.n_items, k=7, batch_size=4)
    for i, h in enumerate(loo.test.inputs):
        s = score([h])[0].numpy().copy()
        s[h] = -np.inf
        assert list(c.items[i]) == list(np.argsort(-s, kind="stable")[:7])
        assert np.allclose(c.scores[i], s[c.items[i]])


def test_reranking_by_the_retriever_scores_equals_full_ranking_within_k(loo):
    """Reranking K candidates by the retriever's own scores gives the full-ranking metrics at cutoffs <= K."""
    score = fixed_scores(loo.n_items)
    c = retrieve(score, loo.test, loo.n_items, k=20)
    reranked = evaluate_reranked(c.scores, c, loo.test, cutoffs=(5, 10, 20))
    full = evaluate_ranking(score, loo.test, loo.n_items, cutoffs=(5, 10, 20))
    assert reranked.metrics == pytest.approx(full.metrics)
    assert reranked.n == len(loo.test)  # every user counts


def test_not_retrieved_targets_are_misses_and_the_subset_is_reported():
    split = Split(np.arange(4), [np.array([0])] * 4, np.array([1, 2, 3, 9]), "test")
    cands = Candidates("test", np.arange(4), np.array([[1, 5, 6], [5, 2, 6], [5, 6, 3], [5, 6, 7]]), np.zeros((4, 3), np.float32))
    scores = np.array([[3, 2, 1], [3, 2, 1], [3, 2, 1], [3, 2, 1]], dtype=np.float32)  # ranks 1, 2, 3, not retrieved
    r = evaluate_reranked(scores, cands, split, cutoffs=(1, 3))
    assert r.metrics["recall@1"] == pytest.approx(1 / 4) and r.metrics["recall@3"] == pytest.approx(3 / 4)
    assert r.metrics["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4)
    assert r.extra["retrieved"] == 3 and r.extra["retrieval_recall@3"] == pytest.approx(0.75)
    assert r.extra["subset_metrics"]["recall@3"] == pytest.approx(1.0)
    assert "not retrieved = miss" in r.protocol


def test_candidate_file_round_trip_and_errors(loo, tmp_path):
    score = fixed_scores(loo.n_items)
    sets = [retrieve(score, loo.valid, loo.n_items, 5), retrieve(score, loo.test, loo.n_items, 5)]
    write_candidates(tmp_path / "retrieved.csv", sets, loo.data)
    back = read_candidates(tmp_path / "retrieved.csv", loo.data)
    for c in sets:
        b = back[c.split].align(getattr(loo, c.split))
        assert np.array_equal(b.items, c.items) and np.allclose(b.scores, c.scores)
    frame = pd.read_csv(tmp_path / "retrieved.csv")
    assert list(frame.columns) == ["split", "user_id", "rank", "item_id", "score"]
    frame.loc[3, "item_id"] = "item999"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="row 5 has item 'item999'"):
        read_candidates(tmp_path / "bad.csv", loo.data)
    with pytest.raises(ValueError, match="only 5 were retrieved"):
        sets[0].top(10)


def test_ground_truth_pools_hold_the_target_and_unseen_negatives_in_random_places(loo):
    pools = ground_truth_pools(loo.data, loo.test, n_negatives=19, seed=3)
    assert pools.items.shape == (len(loo.test), 20)
    places = []
    for i, u in enumerate(loo.test.users):
        row = list(pools.items[i])
        assert row.count(loo.test.targets[i]) == 1 and len(set(row)) == 20
        assert set(row) - {loo.test.targets[i]} <= set(range(loo.n_items)) - set(loo.data.history(u))
        places.append(row.index(loo.test.targets[i]))
    assert len(set(places)) > 5  # the target is not always first
    assert np.array_equal(pools.items, ground_truth_pools(loo.data, loo.test, n_negatives=19, seed=3).items)
    r = evaluate_reranked(np.zeros(pools.items.shape), pools, loo.test, sampled=True)
    assert r.sampled and r.protocol.startswith("sampled-20")
    assert r.metrics["recall@20"] == 1.0 and r.metrics["recall@5"] == 0.0  # all ties: conservative puts the target last


def test_two_stage_pipeline_on_a_tiny_dataset(tmp_path):
    from nextitem.pipeline.two_stage import retrieval_only, train_reranker, train_retrieval

    from .sequential_contract import toy_histories, write_history_folder

    folder = write_history_folder(tmp_path / "toy", toy_histories(n_users=40, n_items=60, seed=2, min_len=4))
    root = tmp_path / "experiments"
    quiet = dict(root=root, log=lambda *a: None, progress=False)
    tiny = {"hidden": 16, "max_len": 8, "epochs": 2, "batch_size": 8}
    cands = train_retrieval("sasrec", folder, {**tiny, "loss": "ce"}, top_k=10, **quiet)
    out = root / "retrieval" / "sasrec" / "toy" / "seed42"
    assert (out / "retrieved.csv").exists() and (out / "retrieved_metrics.json").exists()
    assert cands["test"].items.shape[1] == 10
    # stage-1 metrics from the file equal the full-ranking test metrics at cutoffs <= K
    saved = json.loads((out / "retrieved_metrics.json").read_text())
    again = retrieval_only("sasrec", folder, root=root)
    for k in (5, 10):
        assert again.metrics[f"ndcg@{k}"] == pytest.approx(saved["test"]["metrics"][f"ndcg@{k}"], abs=1e-6)
    results = train_reranker("bert4rec", folder, "retrieval", tiny, retrieval_method="sasrec", rerank_top_k=10, **quiet)
    assert results["test"].n == len(cands["test"]) and not results["test"].sampled
    gt = train_reranker("bert4rec", folder, "ground_truth", tiny, retrieval_method="sasrec", **quiet)
    assert gt["test"].sampled and (root / "rerank" / "bert4rec" / "toy" / "seed42" / "rerank_metrics_ground_truth.json").exists()


def test_pipeline_and_offline_eval_commands(tmp_path, capsys):
    from nextitem.cli import main

    from .sequential_contract import toy_histories, write_history_folder

    folder = write_history_folder(tmp_path / "toy", toy_histories(n_users=30, n_items=60, seed=5, min_len=4))
    root = str(tmp_path / "exp")
    tiny = "hidden=16,max_len=8,epochs=1,batch_size=8"
    assert main(["pipeline", str(folder), "--retrieval-method", "lrurec", "--retrieval-params", tiny,
                 "--rerank-method", "bert4rec", "-p", tiny, "--retrieval-top-k", "15", "--rerank-top-k", "10",
                 "--root", root, "-q", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "=== Stage 2: bert4rec reranks the top 10" in out and "not retrieved = miss" in out
    for mode, expect in (("retrieval", "not retrieved = miss"), ("full", "reranked top-10"), ("rerank_only", "sampled-20")):
        assert main(["offline-eval", "--mode", mode, "--split", "val", "--retrieval-method", "lrurec",
                     "--rerank-method", "bert4rec", "--rerank-top-k", "10", str(folder), "--root", root]) == 0
        printed = capsys.readouterr().out
        assert expect in printed and "Metric | @5 | @10 | @20" in printed
        stage = "retrieval/lrurec" if mode == "retrieval" else "rerank/bert4rec"
        saved = json.loads((tmp_path / "exp" / stage / "toy" / "seed42" / f"offline_eval_{mode}_valid.json").read_text())
        assert saved["valid"]["metrics"]["ndcg@10"] >= 0 and saved["valid"]["n"] == 30
        if mode == "full":  # fused with the retriever by default, the reranker alone shown beside it
            assert "[valid_reranker_only]" in printed and "fused with the retriever" in printed
    assert main(["offline-eval", "--mode", "full", "--split", "val", "--rerank-top-k", "10", "--fusion", "none",
                 str(folder), "--root", root]) == 0
    printed = capsys.readouterr().out
    assert "[valid_reranker_only]" not in printed and "fused" not in printed
    assert main(["offline-eval", "--mode", "full", "--retrieval-method", "sasrec", str(folder), "--root", root]) == 2
    assert "run the retrieval stage first" in capsys.readouterr().err
