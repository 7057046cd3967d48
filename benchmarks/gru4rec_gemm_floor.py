"""The matrix-multiply floor of one GRU4Rec training step on this machine.

    python benchmarks/gru4rec_gemm_floor.py

Times only the dense matrix products a step cannot avoid (scores over the in-batch and sampled
columns, their two gradient products, and a one-layer GRU's forward and backward products), with
the official README's RetailRocket (bpr-max) and Yoochoose (cross-entropy) shapes, and prints the
events/s that would remain if everything else in the step cost nothing. A speed target above that
figure cannot be met by the same algorithm in float32 with torch's BLAS on this CPU. It reports the
best of several rounds: on a shared machine single rounds vary by up to 2x, and a floor must not
include that noise.
"""
import argparse
import time

import torch

SHAPES = {  # name: (batch_size, layer size, n_sample)
    "retailrocket bpr-max": (80, 224, 2048),
    "yoochoose1_64 cross-entropy": (48, 480, 2048),
}


def floor_ms(batch: int, hidden: int, n_sample: int, n_items: int = 40_000, repeats: int = 100, rounds: int = 10) -> float:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(n_items, hidden, generator=g)
    columns = torch.randint(0, n_items, (batch + n_sample,), generator=g)
    h, x = torch.randn(batch, hidden, generator=g), torch.randn(batch, hidden, generator=g)
    w_in, w_rec = torch.randn(3 * hidden, hidden, generator=g), torch.randn(3 * hidden, hidden, generator=g)

    def step():
        out = table.index_select(0, columns)  # the output rows of this step's columns
        scores = h @ out.t()
        scores @ out, scores.t() @ h  # d hidden, d output rows
        gates_in, gates_rec = x @ w_in.t(), h @ w_rec.t()  # GRU forward
        # GRU backward: to the input rows (the shared embedding) and both weights; none to the previous
        # hidden state, which GRU4Rec's one-step truncated backpropagation never needs
        gates_in @ w_in, gates_in.t() @ x, gates_rec.t() @ h

    for _ in range(20):
        step()
    best = float("inf")
    for _ in range(rounds):  # the best round: a floor, not an average over the machine's noise
        t = time.perf_counter()
        for _ in range(repeats):
            step()
        best = min(best, (time.perf_counter() - t) / repeats * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, (batch, hidden, n_sample) in SHAPES.items():
        ms = floor_ms(batch, hidden, n_sample)
        print(f"{name} (batch {batch}, layers {hidden}, n_sample {n_sample}): matrix products alone "
              f"{ms:.2f} ms per step, so at most {batch / ms * 1e3:,.0f} events/s")


if __name__ == "__main__":
    main()
