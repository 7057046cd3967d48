"""Test metrics of the best weights in a training checkpoint (e.g. of a run still going or stopped).

    python benchmarks/eval_checkpoint.py runs/sasrec_ml1m/checkpoint.pt ml-1m [--sampled 100]
"""
import argparse
import json

import torch

from nextitem.data.histories import LeaveOneOut, read_histories
from nextitem.evaluation.ranking import evaluate_ranking, sample_negatives
from nextitem.models import SEQUENTIAL_MODELS
from nextitem.pipeline.experiment import resolve_data

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("checkpoint")
ap.add_argument("data")
ap.add_argument("--sampled", type=int, default=0)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
payload = torch.load(args.checkpoint, weights_only=True)
loo = LeaveOneOut.from_histories(read_histories(resolve_data(args.data)))
model = SEQUENTIAL_MODELS[payload["model"]](**payload["model_config"]).init(loo.n_items, loo.data.vocab)
model.net.load_state_dict(payload["best_net"])
state = payload["state"]
print(f"{payload['model']}: {state['epoch']} epochs trained, best valid {payload['train_config']['metric']} "
      f"{state['best']:.4f} at epoch {state['best_epoch']}")
print(model.evaluate(loo, "test").table())
if args.sampled:
    neg = sample_negatives(loo.data, loo.test, n=args.sampled, seed=98765)
    print(evaluate_ranking(model.score, loo.test, loo.n_items, negatives=neg, negatives_label="uniform").table())
print(json.dumps({"epochs": [r.get("train_s") for r in state["history"]][-3:]}))
