"""Peak memory and time of loading a large session file into nextitem's arrays.

    python benchmarks/bench_data_memory.py --events 30000000 [--keep FILE]

Writes a synthetic GRU4Rec-layout TSV (string-like integer item ids, sessions of 1+Geometric(0.3)
events, Zipf-ish item popularity), then reads it with read_events + SessionData.from_frame in a fresh
process and prints rows/s and peak RSS. Full Yoochoose has ~32M events: it must fit in a few GB.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_file(path: str, n_events: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    chunk = 5_000_000
    session, t = 1, 1_396_000_000.0
    with open(path, "w") as f:
        f.write("SessionId\tItemId\tTime\n")
        left = n_events
        while left > 0:
            n = min(chunk, left)
            new_session = rng.random(n) < 0.3
            sessions = session + np.cumsum(new_session)
            session = int(sessions[-1]) + 1
            items = 214_500_000 + (rng.zipf(1.3, n) % 50_000) * 7
            times = t + np.cumsum(rng.integers(1, 120, n))
            t = float(times[-1])
            np.savetxt(f, np.column_stack([sessions, items, times]), fmt=["%d", "%d", "%.3f"], delimiter="\t")
            left -= n


def load(path: str) -> None:
    from nextitem.data import SessionData, read_events

    t0 = time.perf_counter()
    df = read_events(path)
    data = SessionData.from_frame(df, source=path)
    del df
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    held = (data.items.nbytes + data.offsets.nbytes + data.order.nbytes) / 1024**2
    print(f"{data.n_events:,} events, {data.n_sessions:,} sessions, {data.n_items:,} items loaded in {seconds:.1f}s "
          f"({data.n_events / seconds:,.0f} rows/s); arrays held: {held:,.0f} MB; peak RSS {peak:.2f} GB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--keep", help="write the file here (and keep it) instead of a temporary file")
    ap.add_argument("--load-only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_only:
        return load(args.load_only)
    path = args.keep or os.path.join(tempfile.mkdtemp(), "events.tsv")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        write_file(path, args.events)
        print(f"wrote {args.events:,} events ({os.path.getsize(path) / 1024**2:,.0f} MB) in {time.perf_counter() - t0:.0f}s")
    try:  # a fresh process, so that peak RSS is the loader's alone
        subprocess.run([sys.executable, __file__, "--load-only", path], check=True)
    finally:
        if not args.keep:
            os.remove(path)


if __name__ == "__main__":
    main()
