"""The sample store draws items with probability proportional to count^alpha."""
import numpy as np
import torch

from nextitem.training.sampler import SampleStore


def test_sample_store_draws_count_to_the_alpha():
    counts = np.array([1, 0, 5, 50, 500, 3, 0, 20])
    for alpha in (0.0, 0.4, 1.0):
        store = SampleStore(counts, alpha, n_sample=1000, store_size=400_000, seed=1)
        draws = torch.cat([store.next() for _ in range(400)]).numpy()  # one full store
        freq = np.bincount(draws, minlength=len(counts)) / len(draws)
        w = counts.astype(float) ** alpha
        expected = w / w.sum()
        # 400k draws: standard error <= 0.0008 per item
        np.testing.assert_allclose(freq, expected, atol=0.004)
        if alpha > 0:
            assert freq[counts == 0].sum() == 0  # items never seen are never drawn


def test_refill_kernel_equals_the_numpy_formulation():
    # alias_rows replaced: keep = u < prob[idx]; np.where(keep, idx, alias[idx]), rows sorted
    from nextitem.training.sampler import alias_rows

    counts = np.random.default_rng(3).zipf(1.7, 500)
    store = SampleStore(counts, 0.3, n_sample=64, store_size=64 * 50, seed=5)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, len(counts), size=(50, 64))
    u = rng.random((50, 64))
    expected = np.sort(np.where(u < store.prob[idx], idx, store.alias[idx]), axis=1)
    alias_rows(idx, u, store.prob, store.alias)
    np.testing.assert_array_equal(idx, expected)
    assert (store.alias != np.arange(len(counts))).any()  # the alias branch is exercised
