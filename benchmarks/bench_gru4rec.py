"""Speed and memory of GRU4Rec training and evaluation on one data file and parameter string.

    python benchmarks/bench_gru4rec.py TRAIN.tsv TEST.tsv -ps "loss=bpr-max,layers=224,..." [--epochs 1]

Prints training events/s and minibatches/s per epoch, evaluation time, the number of predictions and
peak RSS of the process, plus Recall/MRR@20 so that a speed-up can be checked not to cost accuracy.
Reference on the 2-core CPU (official PyTorch code): ~4,900 e/s with the RetailRocket bpr-max
parameters, ~2,200 e/s with the Yoochoose cross-entropy ones; ~10 s to evaluate 26k predictions.
"""
import argparse
import resource
import sys
import time

import torch

from nextitem.config import parse_param_string
from nextitem.data import SessionData, read_events
from nextitem.evaluation import evaluate_sessions
from nextitem.models import GRU4Rec, GRU4RecConfig


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("-ps", "--params", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("-e", "--eval-type", default="standard")
    ap.add_argument("-d", "--device", default="cpu")
    args = ap.parse_args(argv)
    params = parse_param_string(args.params)
    params["n_epochs"] = str(args.epochs)
    config = GRU4RecConfig.from_dict(params)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    t0 = time.perf_counter()
    train = SessionData.from_frame(read_events(args.train), source=args.train)
    print(f"train: {train.n_events:,} events, {train.n_sessions:,} sessions, {train.n_items:,} items "
          f"(loaded in {time.perf_counter() - t0:.1f}s)")
    model = GRU4Rec(config, device=args.device)
    t0 = time.perf_counter()
    model.fit(train, log=print)
    total = time.perf_counter() - t0
    for h in model.history:
        print(f"epoch {h['epoch']}: {h['events_per_s']:,.0f} events/s, {h['mb_per_s']:.1f} minibatches/s, {h['seconds']:.1f}s")
    print(f"total training time (incl. sample store): {total:.1f}s")
    test = SessionData.from_frame(read_events(args.test), vocab=model.vocab, source=args.test)
    res = evaluate_sessions(model, test, cutoffs=[20], mode=args.eval_type)
    print(f"evaluation: {res.n_predictions:,} predictions over {model.n_items:,} items in {res.seconds:.2f}s "
          f"({res.n_unseen} test events with unseen items dropped)")
    print(*res.lines())
    print(f"peak RSS: {peak_rss_gb():.2f} GB")
    if model.device.type == "cuda":
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(model.device) / 1024**3:.2f} GB")


if __name__ == "__main__":
    sys.exit(main())
