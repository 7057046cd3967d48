"""Small session files with a learnable pattern (the next item is usually item + 1)."""
import numpy as np
import pandas as pd


def sessions(n, seed, first=0, n_items=20):
    rng = np.random.default_rng(seed)
    rows, t = [], 100 * seed
    for s in range(n):
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(2, 7))):
            rows.append((first + s, f"p{item}", t))
            t += 1
            item = (item + 1) % n_items if rng.random() < 0.85 else int(rng.integers(n_items))
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])
