"""Where the time of a GRU4Rec training step goes, by part, on real data.

    python benchmarks/profile_gru4rec_step.py TRAIN.tsv -ps "loss=bpr-max,layers=224,..." [--steps 2000]

Runs the real trainer (nextitem/training/gru4rec.py) for a number of steps after a warm-up and
times its parts by wrapping the functions the step calls: the GRU forward and backward (on the
CPU the direct path, _Step.gru_forward / gru_backward; elsewhere net.step and autograd), the loss,
the item-table and dense optimizer updates (on the CPU the dense one includes the GRU
weight-gradient products, see AdagradM.step_dense_product), and the iterator with the sample store. "output layer" is the rest of the step: the gather of the output rows and the three score
products. Wrapping costs a few microseconds per part, so the parts add up to slightly more than an
unwrapped step. The sample store refills once per 10M samples (~4,900 steps with n_sample=2048),
so a short run may not include a refill. On a noisy machine compare only runs taken side by side.
For one GRU layer with the shared embedding, training runs the step as native code
(kernels.FusedStep, 64 rounds of steps per call), which has no parts to wrap; the parts are timed
here on the direct path it repeats operation for operation, so the total is that path's (the native
code saves the Python around and between the parts: 5-12% per step, then 6-9% more for the chunks of
rounds, in lockstep runs, see benchmarks/README.md).
"""
import argparse
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from unittest import mock

import torch

import nextitem.training.gru4rec as trainer
from nextitem.config import parse_param_string
from nextitem.data import SessionData, read_events
from nextitem.models import GRU4Rec, GRU4RecConfig
from nextitem.models.gru4rec import GRU4RecNet
from nextitem.training.optim import AdagradM


class StepLimit(Exception):
    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("-ps", "--params", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    args = ap.parse_args(argv)
    params = parse_param_string(args.params)
    params["n_epochs"] = "1"
    data = SessionData.from_frame(read_events(args.train), source=args.train)
    model = GRU4Rec(GRU4RecConfig.from_dict(params))
    seconds = defaultdict(float)
    clock = time.perf_counter
    counted = {"steps": 0, "start": None}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                seconds[name] += clock() - t0
        return wrapper

    def timed_iter(name, make):  # the time spent producing each item of an iterator
        def wrapper(*a, **k):
            it = make(*a, **k)
            while True:
                t0 = clock()
                try:
                    item = next(it)
                except StopIteration:
                    return
                seconds[name] += clock() - t0
                yield item
        return wrapper

    step_call = trainer._Step.__call__
    step_init = trainer._Step.__init__

    def unfused_init(self, *a, **k):  # the parts of the one-call step, each on its own
        step_init(self, *a, **k)
        self.fused = False

    def counting_step(self, *a, **k):
        if counted["steps"] == args.warmup:
            seconds.clear()
            counted["start"] = clock()
        if counted["steps"] == args.warmup + args.steps:
            raise StepLimit
        counted["steps"] += 1
        return step_call(self, *a, **k)

    # every name the step looks up at call time, replaced by a timed wrapper (and put back afterwards)
    patches = [(trainer._Step, "__call__", counting_step), (trainer._Step, "__init__", unfused_init),
               (trainer, "cross_entropy", timed("loss", trainer.cross_entropy)),
               (trainer, "bpr_max", timed("loss", trainer.bpr_max)),
               (trainer, "xe_columns", timed("loss", trainer.xe_columns)),
               (trainer, "bpr_max_columns", timed("loss", trainer.bpr_max_columns)),
               (trainer, "session_parallel_steps", timed_iter("iterator", trainer.session_parallel_steps)),
               (trainer.SampleStore, "next", timed("samples", trainer.SampleStore.next)),
               (AdagradM, "step_rows", timed("item-table update", AdagradM.step_rows)),
               # on the CPU: the output rows' gradient product inside the update
               (AdagradM, "step_rows_product", timed("item-table update", AdagradM.step_rows_product)),
               (AdagradM, "step_dense", timed("dense update", AdagradM.step_dense)),
               (AdagradM, "step_dense_product", timed("dense update", AdagradM.step_dense_product)),
               (torch.autograd, "grad", timed("GRU backward", torch.autograd.grad)),
               (GRU4RecNet, "step", timed("GRU forward", GRU4RecNet.step)),
               # the CPU's direct path (no autograd) instead of the two above
               (trainer._Step, "gru_forward", timed("GRU forward", trainer._Step.gru_forward)),
               (trainer._Step, "gru_backward", timed("GRU backward", trainer._Step.gru_backward))]
    with ExitStack() as stack:
        for owner, name, wrapper in patches:
            stack.enter_context(mock.patch.object(owner, name, wrapper))
        try:
            model.fit(data)
            sys.exit(f"the data has fewer than {args.warmup + args.steps} steps; lower --steps")
        except StepLimit:
            total = clock() - counted["start"]
    n = args.steps
    batch = model.config.batch_size
    print(f"{n} steps after {args.warmup} warm-up: {total / n * 1e3:.2f} ms per step, "
          f"{n * batch / total:,.0f} events/s (batch {batch}, torch {torch.get_num_threads()} threads)")
    parts = dict(seconds)
    parts["output layer (rest)"] = total - sum(parts.values())
    for name, s in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:22s} {s / n * 1e3:6.3f} ms  {100 * s / total:5.1f}%")


if __name__ == "__main__":
    main()
