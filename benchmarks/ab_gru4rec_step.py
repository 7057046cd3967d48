"""Compare the GRU4Rec training step of two checkouts in lockstep on this noisy machine.

    python benchmarks/ab_gru4rec_step.py TRAIN.tsv -ps "loss=...,layers=480,..." --trees OLD_DIR NEW_DIR

The speed of the shared 2-core CPU these sessions run on moves by 10-30% from minute to minute, so two
runs taken one after the other do not compare. Here each checkout trains in its own process (with
PYTHONPATH pointing at it) and the two take turns: one runs ``--steps`` training steps while the other
waits, then the other, ``--turns`` times each. Both see the same phases of the machine. The first two
turns of each are warm-up. Printed per checkout: the median, mean and 10th percentile over turns of a
turn's time per step (the iterator and everything between steps included); compare medians. A checkout is a
directory holding the ``nextitem`` package (``git worktree add /tmp/old COMMIT`` makes one).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def child(args):
    from unittest import mock

    import nextitem.training.gru4rec as trainer
    from nextitem.config import parse_param_string
    from nextitem.data import SessionData, read_events
    from nextitem.models import GRU4Rec, GRU4RecConfig

    params = parse_param_string(args.params)
    params["n_epochs"] = "1000"  # never the limit: the parent stops the run
    data = SessionData.from_frame(read_events(args.train), source=args.train)
    model = GRU4Rec(GRU4RecConfig.from_dict(params))
    commands, replies = os.fdopen(args.fd_in, "rb", buffering=0), os.fdopen(args.fd_out, "wb", buffering=0)
    turns, state = [], {"t0": None, "in_turn": 0, "turn": 0}

    class Stop(Exception):
        pass

    def tick(k):
        """Before work of k steps: end the turn once its steps are done, then wait for the next."""
        if state["t0"] is None or state["in_turn"] >= args.steps:
            if state["t0"] is not None:
                if state["turn"] >= 2:  # the first two turns are warm-up
                    turns.append((time.perf_counter() - state["t0"]) / state["in_turn"])
                replies.write(b"d")
                state["turn"] += 1
            if commands.read(1) != b"g":
                raise Stop
            state["t0"], state["in_turn"] = time.perf_counter(), 0
        state["in_turn"] += k

    # Training calls either the step one by one or, on the CPU's one-call path, chunks of rounds
    # (_Step.fused_rounds, since 2026-11-24): pace whichever a checkout has; a turn ends at the first
    # chunk boundary after --steps steps.
    patches = []
    step_call = trainer._Step.__call__

    def paced_step(self, *a):
        tick(1)
        return step_call(self, *a)

    patches.append(mock.patch.object(trainer._Step, "__call__", paced_step))
    rounds_call = getattr(trainer._Step, "fused_rounds", None)
    if rounds_call is not None:
        def paced_rounds(self, rounds, store):
            tick(sum(rnd.inputs.shape[0] for rnd in rounds))
            return rounds_call(self, rounds, store)

        patches.append(mock.patch.object(trainer._Step, "fused_rounds", paced_rounds))
    for p in patches:
        p.start()
    try:
        model.fit(data)
    except Stop:
        pass
    print(json.dumps(turns))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("-ps", "--params", required=True)
    ap.add_argument("--trees", nargs=2, metavar=("A", "B"), help="two directories holding the nextitem package")
    ap.add_argument("--envs", nargs=2, metavar=("ENV_A", "ENV_B"), default=("", ""),
                    help="extra environment per checkout as K=V,K=V ('' for none), e.g. to compare thread settings "
                         "on one tree given twice")
    ap.add_argument("--steps", type=int, default=100, help="steps per turn")
    ap.add_argument("--turns", type=int, default=20, help="turns per checkout, the first two of them warm-up")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fd-in", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--fd-out", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if not args.trees:
        ap.error("--trees A B is required")
    for tree in args.trees:
        if not os.path.isdir(os.path.join(tree, "nextitem")):
            ap.error(f"--trees: {tree} holds no nextitem package (make one with `git worktree add DIR COMMIT`)")
    procs = []
    for tree, extra in zip(args.trees, args.envs):
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        env.update(kv.split("=", 1) for kv in extra.split(",") if kv)
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), args.train, "-ps", args.params, "--child",
                                 "--steps", str(args.steps), "--fd-in", str(cmd_r), "--fd-out", str(rep_w)],
                                env=env, pass_fds=(cmd_r, rep_w), stdout=subprocess.PIPE)
        os.close(cmd_r)
        os.close(rep_w)
        procs.append((proc, os.fdopen(cmd_w, "wb", buffering=0), os.fdopen(rep_r, "rb", buffering=0)))
    for _ in range(args.turns):
        for proc, commands, replies in procs:
            commands.write(b"g")
            if replies.read(1) != b"d":
                sys.exit(f"a child stopped early (exit code {proc.wait()}); run it alone to see its error")
    for tree, extra, (proc, commands, _) in zip(args.trees, args.envs, procs):
        commands.write(b"s")
        out, _ = proc.communicate()
        d = np.array(json.loads(out.decode().strip().splitlines()[-1])) * 1e3
        print(f"{tree}{' ' + extra if extra else ''}: {len(d)} turns, ms per step: median {np.median(d):.3f}, "
              f"mean {d.mean():.3f}, p10 {np.percentile(d, 10):.3f}")


if __name__ == "__main__":
    main()
