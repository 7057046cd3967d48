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
