"""Peak memory and speed of ``nextitem prepare rees46`` on a generated raw file of N rows.

    python benchmarks/bench_prepare_memory.py --rows 30000000
    python benchmarks/bench_prepare_memory.py --rows 3000000 30000000   # two sizes: is the peak RSS bounded?

Writes a file in the layout of the REES46 monthly files (event_time,event_type,product_id,
category_id,category_code,brand,price,user_id,user_session; ~90% views), time-ordered over
2019-10-01 .. 2019-12-01 like the real Oct+Nov files, chunk by chunk (never the whole file in
memory). Item popularity is Zipf-like, users' activity heavy-tailed, sessions 1+Geometric events
with ~45 s between clicks and a quarter of clicks repeating the previous product (the recipe's
consecutive-repeat rule has work to do). Then runs ``nextitem.data.recipes.prepare("rees46", ...)``
in a child process and prints its wall time, rows/s and peak RSS, the output statistics and an
extrapolation to the full Rees46 data.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import polars as pl

START, END = 1569888000, 1575158400  # 2019-10-01 and 2019-12-01 00:00 UTC: the recipe's tsplit is END
REES46_ROWS = 400_000_000            # the size issue 3 plans for
MEAN_SESSION = 4.6                   # events per session: roughly REES46's per user_session (assumed, not measured here)
EVENTS_PER_USER = 14
N_ITEMS = 200_000
SESSIONS_PER_CHUNK = 400_000         # ~1.8M rows per written chunk


def _zipf_cdf(n: int, exponent: float, shift: float) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + shift) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def write_raw(path: str, n_rows: int, seed: int = 0) -> int:
    """Write about ``n_rows`` REES46-style rows to ``path``; return the exact number written."""
    rng = np.random.default_rng(seed)
    n_sessions = max(1, round(n_rows / MEAN_SESSION))
    n_users = max(10, n_rows // EVENTS_PER_USER)
    item_cdf = _zipf_cdf(N_ITEMS, 1.05, 5.0)
    user_cdf = _zipf_cdf(n_users, 0.6, 50.0)  # heavy users return often, most come a few times
    # per-product attributes, indexed by popularity rank (ids are not tied to rank)
    product_id = rng.choice(np.arange(1_000_000, 60_000_000), N_ITEMS, replace=False)
    category_id = 2_053_013_552_226_107_603 + rng.integers(0, 10**15, 700)[rng.integers(0, 700, N_ITEMS)]
    # None: an empty field, as in the real files (many products have no category code or brand)
    codes = pl.Series([None] * 120 + [f"cat{i // 10}.sub{i % 10}" for i in range(180)], dtype=pl.String)
    brands = pl.Series([None] * 500 + [f"brand{i}" for i in range(3000)], dtype=pl.String)
    code_of = rng.integers(0, len(codes), N_ITEMS)
    brand_of = rng.integers(0, len(brands), N_ITEMS)
    price_of = np.round(rng.lognormal(4.0, 1.2, N_ITEMS), 2)
    user_id = rng.choice(np.arange(400_000_000, 600_000_000), n_users, replace=False)
    event_types = pl.Series(["view", "cart", "purchase", "remove_from_cart"])

    n_chunks = -(-n_sessions // SESSIONS_PER_CHUNK)
    bounds = np.linspace(START, END, n_chunks + 1)
    carried = None  # events of sessions that run on past the end of their chunk's time window
    written, session_no = 0, 0
    with open(path, "wb") as f:
        for c in range(n_chunks):
            k = n_sessions // n_chunks + (c < n_sessions % n_chunks)
            starts = rng.uniform(bounds[c], bounds[c + 1], k)
            lengths = np.minimum(rng.geometric(1 / MEAN_SESSION, k), 300)
            users = user_id[np.searchsorted(user_cdf, rng.random(k))]
            sess = np.repeat(np.arange(session_no, session_no + k), lengths)
            first = np.repeat(np.cumsum(lengths) - lengths, lengths)
            gaps = rng.exponential(45.0, len(sess))
            gaps[first] = 0.0
            offset = np.cumsum(gaps)
            times = np.repeat(starts, lengths) + offset - np.repeat(offset[np.cumsum(lengths) - lengths], lengths)
            ranks = np.searchsorted(item_cdf, rng.random(len(sess)))
            repeat = rng.random(len(sess)) < 0.25
            repeat[first] = False
            source = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(sess))))  # a repeat copies the last new pick
            ranks = ranks[source]
            kind = np.searchsorted([0.9, 0.95, 0.985], rng.random(len(sess)))
            events = pl.DataFrame({
                "t": times.astype(np.int64), "kind": kind.astype(np.uint32), "rank": ranks.astype(np.uint32),
                "user": np.repeat(users, lengths), "session": sess,
            })
            session_no += k
            if carried is not None:
                events = pl.concat([carried, events])
            last = c == n_chunks - 1
            carried = None if last else events.filter(pl.col("t") >= int(bounds[c + 1]))
            out = events if last else events.filter(pl.col("t") < int(bounds[c + 1]))
            out = out.sort("t", maintain_order=True)
            table = out.select(
                event_time=pl.from_epoch("t", time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S UTC"),
                event_type=event_types.gather(out["kind"]),
                product_id=pl.Series(product_id[out["rank"].to_numpy()]),
                category_id=pl.Series(category_id[out["rank"].to_numpy()]),
                category_code=codes.gather(code_of[out["rank"].to_numpy()]),
                brand=brands.gather(brand_of[out["rank"].to_numpy()]),
                price=pl.Series(price_of[out["rank"].to_numpy()]),
                user_id=pl.col("user"),
                # uuid-sized text, so that the file has the real bytes per row
                user_session=pl.concat_str(pl.col("session").hash(1).cast(pl.String), pl.col("session").hash(2).cast(pl.String), separator="-"),
            )
            table.write_csv(f, include_header=c == 0)
            written += table.height
    return written


_CHILD = """
import json, resource, sys
from nextitem.data.recipes import prepare, workspace
if sys.argv[3] != "0":
    workspace.ROWS_PER_BUCKET = int(sys.argv[3])
prepare("rees46", [sys.argv[1]], sys.argv[2])
peak = None
try:
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))  # KiB
except (OSError, StopIteration):
    pass
print(json.dumps({"vmhwm_kb": peak, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _stage(out_dir: str) -> str:
    """The newest entry of the recipe's temporary folder: the step running now."""
    try:
        ws = next(os.path.join(out_dir, d) for d in os.listdir(out_dir) if d.startswith(".prepare-"))
        return max(os.listdir(ws), default="start")
    except (OSError, StopIteration):
        return "start"


def run_prepare(raw: str, out_dir: str, bucket_rows: int = 0) -> dict:
    """Prepare in a child process: wall and CPU seconds, peak RSS (GB) of that child, the RSS peak per step, stats.

    The peak is the child's VmHWM, the high-water mark of its own address space. ru_maxrss
    (RUSAGE_SELF or RUSAGE_CHILDREN) is not used where VmHWM exists: Linux carries the
    spawning process's peak over the exec into the child's ru_maxrss, so after generating the
    file here it would report this process's peak instead of the recipe's. The per-step peaks
    come from sampling the child's VmRSS every 0.2 s (they can miss a short spike).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, raw, out_dir, str(bucket_rows)], stdout=subprocess.PIPE, text=True)
    steps: dict[str, int] = {}  # step -> the largest RSS sampled while it ran, in the order the steps ran
    while child.poll() is None:
        rss, stage = _rss_kb(child.pid), _stage(out_dir)
        if rss is not None:
            steps[stage] = max(steps.get(stage, 0), rss)
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    if child.returncode:
        raise SystemExit(f"prepare failed with exit code {child.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(child.stdout.read().strip().splitlines()[-1])
    peak_kb = report["vmhwm_kb"] or report["maxrss_kb"]
    with open(os.path.join(out_dir, "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    return {"seconds": seconds, "cpu": cpu, "peak_gb": peak_kb / 1024**2, "steps": steps, "stats": stats}


def measure(n_rows: int, work: str, keep: bool, bucket_rows: int = 0) -> dict:
    raw, out = os.path.join(work, f"rees46-{n_rows}.csv"), os.path.join(work, f"out-{n_rows}")
    if keep and os.path.exists(raw):  # a file kept by an earlier run with --keep
        rows, gen = sum(1 for _ in open(raw, "rb")) - 1, 0.0
    else:
        t0 = time.perf_counter()
        rows = write_raw(raw, n_rows)
        gen = time.perf_counter() - t0
    size = os.path.getsize(raw)
    print(f"generated {rows:,} rows ({size / 1024**3:.2f} GB, {size / rows:.0f} bytes/row) in {gen:.1f}s: {raw}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    try:
        run = run_prepare(raw, out, bucket_rows)
    finally:
        if not keep:
            os.remove(raw)
        shutil.rmtree(out, ignore_errors=True)
    print(f"prepare: {run['seconds']:.1f}s wall, {run['cpu']:.1f}s CPU, {rows / run['seconds']:,.0f} rows/s, "
          f"peak RSS {run['peak_gb']:.2f} GB" + (f" (ROWS_PER_BUCKET={bucket_rows:,})" if bucket_rows else ""))
    # RSS rarely falls back after a step, so the step where it first rose is the one that used the memory
    rises, high = [], 0
    for name, kb in run["steps"].items():
        if kb > high * 1.05:
            rises.append(f"{name} {kb / 1024**2:.2f}")
        high = max(high, kb)
    print("  sampled RSS (GB) rose while writing: " + ", ".join(rises))
    stats = run["stats"]
    for step, n in stats["steps"].items():
        print(f"  {step:<40}{n:>14,}")
    for name, s in stats["files"].items():
        print(f"  {name:<16}{s['events']:>12,} events {s['sessions']:>11,} sessions {s['items']:>8,} items {s['days']:>8} days")
    return {"rows": rows, "bytes": size, **run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[30_000_000], help="rows to generate (several: one run each)")
    ap.add_argument("--dir", default=None, help="work folder (default: a new one under $TMPDIR); needs ~3x the raw file's size")
    ap.add_argument("--keep", action="store_true", help="keep the generated file (a later run with --keep reuses it)")
    ap.add_argument("--bucket-rows", type=int, default=0, help="run with this ROWS_PER_BUCKET (default: the recipe's)")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="bench-prepare-")
    os.makedirs(work, exist_ok=True)
    free = shutil.disk_usage(work).free
    need = max(args.rows) * 130 * 3  # raw (~130 B/row) + Parquet stages + written files, generously
    if free < need:
        sys.exit(f"{work}: {free / 1024**3:.0f} GB free, the run needs about {need / 1024**3:.0f} GB; pass --dir on a larger disk or fewer --rows.")
    runs = [measure(n, work, args.keep, args.bucket_rows) for n in args.rows]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    last = runs[-1]
    rate, per_byte = last["rows"] / last["seconds"], last["bytes"] / last["rows"]
    hours, cpu_hours = REES46_ROWS / rate / 3600, REES46_ROWS * last["cpu"] / last["rows"] / 3600
    line = (f"extrapolation to Rees46 ({REES46_ROWS / 1e6:.0f}M rows, ~{REES46_ROWS * per_byte / 1024**3:.0f} GB at "
            f"{per_byte:.0f} B/row): {hours:.1f} h at {rate:,.0f} rows/s ({cpu_hours:.1f} CPU-hours)")
    if len(runs) > 1:
        # peak RSS as a + b * rows through the smallest and the largest run
        lo, hi = min(runs, key=lambda r: r["rows"]), max(runs, key=lambda r: r["rows"])
        slope = (hi["peak_gb"] - lo["peak_gb"]) / (hi["rows"] - lo["rows"])
        line += (f"; peak RSS {lo['peak_gb']:.2f} GB at {lo['rows'] / 1e6:.0f}M -> {hi['peak_gb']:.2f} GB at "
                 f"{hi['rows'] / 1e6:.0f}M rows, linear: {hi['peak_gb'] + slope * (REES46_ROWS - hi['rows']):.1f} GB")
    else:
        line += f"; peak RSS {last['peak_gb']:.2f} GB here (run two --rows sizes to see how it grows)"
    print(line)


if __name__ == "__main__":
    main()
