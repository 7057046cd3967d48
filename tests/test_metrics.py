"""target_ranks and RankAccumulator against brute force, with many ties."""
import numpy as np
import pytest
import torch

from nextitem.evaluation import TIE_MODES, RankAccumulator, target_ranks


def brute_rank(row, t, mode):
    ts = row[t]
    above = sum(1 for j, v in enumerate(row) if v > ts)
    ties = sum(1 for j, v in enumerate(row) if v == ts)  # includes the target
    if mode == "standard":
        return 1 + above
    if mode == "conservative":
        return above + ties
    return above + (1 + ties) / 2  # mean of the positions above+1 .. above+ties


@pytest.mark.parametrize("mode", TIE_MODES)
@pytest.mark.parametrize("n_rows,n_items,levels,seed", [(1, 1, 1, 0), (7, 5, 2, 1), (50, 30, 4, 2), (40, 200, 10, 3),
                                                        (20, 12, 1, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_target_ranks_brute_force(mode, n_rows, n_items, levels, seed, dtype):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(n_rows, n_items))  # integer scores: many ties
    targets = rng.integers(0, n_items, size=n_rows)
    got = target_ranks(torch.from_numpy(scores).to(dtype), torch.from_numpy(targets), mode)
    assert got.dtype == torch.float64 and got.shape == (n_rows,)
    expect = [brute_rank(list(scores[i]), int(targets[i]), mode) for i in range(n_rows)]
    assert got.tolist() == expect


def test_modes_order_on_ties():
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    t = torch.tensor([2])
    std, cons, med = (target_ranks(scores, t, m).item() for m in ("standard", "conservative", "median"))
    assert (std, cons, med) == (1.0, 3.0, 2.0)


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="tiebreaking"):
        target_ranks(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), "tiebreaking")


def brute_metrics(ranks, k):
    ranks = list(ranks)
    recall = sum(1 for r in ranks if r <= k) / len(ranks)
    mrr = sum(1 / r for r in ranks if r <= k) / len(ranks)
    return recall, mrr


@pytest.mark.parametrize("cutoffs", [(1,), (20,), (5, 1, 20, 5), (3, 10, 100)])
def test_rank_accumulator_brute_force(cutoffs):
    rng = np.random.default_rng(len(cutoffs))
    batches = [torch.from_numpy(rng.integers(1, 40, size=n).astype(np.float64)) for n in (5, 1, 17, 0, 9)]
    batches.append(torch.tensor([1.5, 2.5, 20.0, 20.5]))  # median ranks are fractional
    acc = RankAccumulator(cutoffs)
    for b in batches:
        acc.add(b)
    all_ranks = torch.cat(batches).tolist()
    assert acc.n == len(all_ranks)
    res = acc.result()
    assert acc.cutoffs == sorted(set(cutoffs))
    assert set(res) == {f"{m}@{k}" for k in set(cutoffs) for m in ("recall", "mrr")}
    for k in set(cutoffs):
        recall, mrr = brute_metrics(all_ranks, k)
        assert res[f"recall@{k}"] == pytest.approx(recall, rel=1e-12)
        assert res[f"mrr@{k}"] == pytest.approx(mrr, rel=1e-12)


def test_rank_accumulator_float32_ranks():
    acc = RankAccumulator((2,))
    acc.add(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32))
    assert acc.result() == pytest.approx({"recall@2": 2 / 3, "mrr@2": 1.5 / 3})


@pytest.mark.parametrize("cutoffs", [(), (0,), (5, -1)])
def test_rank_accumulator_bad_cutoffs(cutoffs):
    with pytest.raises(ValueError):
        RankAccumulator(cutoffs)


def test_rank_accumulator_empty_is_nan():
    res = RankAccumulator((5,)).result()
    assert np.isnan(res["recall@5"]) and np.isnan(res["mrr@5"])


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_fast_cpu_path_equals_torch_path(mode):
    # float32 contiguous scores take the compiled counting kernel; float64 the plain torch ops
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 6, (37, 301), generator=g).float()  # many ties
    targets = torch.randint(0, 301, (37,), generator=g)
    fast = target_ranks(scores, targets, mode)
    plain = target_ranks(scores.double(), targets, mode)
    strided = target_ranks(scores.t().contiguous().t(), targets, mode)  # non-contiguous: torch path
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(strided, plain)


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
@pytest.mark.parametrize("n", [1, 16, 37])
@pytest.mark.parametrize("n_items", [5, 301])  # fewer items than the kernel's 8 chunks, and not a multiple
def test_transposed_scores_with_bias_equal_plain_ranks(mode, n, n_items):
    from nextitem.evaluation.metrics import target_ranks_transposed

    g = torch.Generator().manual_seed(n)
    st = torch.randint(0, 4, (n_items, n), generator=g).float()  # [items, rows], many ties
    bias = torch.randint(0, 3, (n_items,), generator=g).float()
    targets = torch.randint(0, n_items, (n,), generator=g)
    expected = target_ranks((st + bias.unsqueeze(1)).t().double(), targets, mode)
    torch.testing.assert_close(target_ranks_transposed(st.contiguous(), bias, targets, mode), expected)
