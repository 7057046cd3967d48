"""The ``nextitem`` command: parse, build a config, call the library, print.

``nextitem gru4rec`` keeps the official run.py's options and output lines, so that scripts and
habits carry over; ``nextitem demo`` is the quickstart on the rsc15_100k sample.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources
from pathlib import Path

import torch

from .config import ConfigError, load_param_file, parse_param_string
from .data import Columns, DataError, SessionData, read_events
from .data.paths import find_dataset
from .data.download import add_command as add_download_command
from .data.recipes import RECIPES, prepare
from .evaluation import TIE_MODES, evaluate_sessions
from .models.gru4rec import GRU4Rec, GRU4RecConfig


def _shipped_param_files() -> list[str]:
    return sorted(p.name[:-3] for p in resources.files("nextitem.paramfiles").iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))


def resolve_param_file(name: str) -> str:
    """A path, or the name of a parameter file shipped with nextitem (``-pf retailrocket_bprmax_shared_best``)."""
    if os.path.exists(name):
        return name
    shipped = resources.files("nextitem.paramfiles") / (name if name.endswith(".py") else name + ".py")
    if shipped.is_file():
        return str(shipped)
    raise ConfigError(f"{name}: no such parameter file, and no shipped one of that name (shipped: {', '.join(_shipped_param_files())}).")


def _describe_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return {".tsv": "TAB separated file", ".txt": "TAB separated file", ".csv": "comma separated file",
            ".parquet": "Parquet file", ".pickle": "pickled DataFrame", ".pkl": "pickled DataFrame"}.get(ext, "file")


def _load(path: str, columns: Columns, vocab=None, require_predictions=True) -> SessionData:
    print(f"Loading data from {_describe_format(path)}: {path}")
    return SessionData.from_frame(read_events(path, columns), columns, vocab=vocab, source=path,
                                  require_predictions=require_predictions)


def run_gru4rec(args) -> int:
    columns = Columns(session=args.session_key, item=args.item_key, time=args.time_key)
    if args.log_primary_metric and (not args.test or len(args.test) > 1 or len(args.measure) > 1):
        raise ConfigError("-lpm needs exactly one test file (-t) and one cut-off (-m).")  # checked before training
    if args.load_model:
        print(f'Loading trained model from file: {args.path} (to device "{args.device}")')
        model = GRU4Rec.load(args.path, device=args.device)
    else:
        if args.parameter_string is not None:
            params = parse_param_string(args.parameter_string)
            source = "-ps"
        else:
            source = resolve_param_file(args.parameter_file)
            params = load_param_file(source)
        config = GRU4RecConfig.from_dict(params, source=source)
        print(f'Creating GRU4Rec model on device "{args.device}"')
        for key, value in params.items():
            value = getattr(config, key)
            print(f"SET   {key:<24}TO   {str(value):<10}(type: {type(value)})")
        model = GRU4Rec(config, device=args.device)
        print("Loading training data...")
        train = _load(args.path, columns)
        print(f"{train.n_events:,} events, {train.n_sessions:,} sessions, {train.n_items:,} items")
        print("Started training")
        if config.n_sample:
            print(f"Created sample store with {max(args.sample_store_size // config.n_sample, 1)} batches of samples")
        t0 = time.perf_counter()
        model.fit(train, sample_store_size=args.sample_store_size, log=lambda m: print(m, flush=True),
                  progress=not args.quiet, checkpoint=args.checkpoint)
        print(f"Total training time: {time.perf_counter() - t0:.2f}s")
        if args.save_model:
            print(f"Saving trained model to: {args.save_model}")
            model.save(args.save_model)
    if args.test:
        for test_path in args.test:
            print("Loading test data...")
            test = _load(test_path, columns, vocab=model.vocab, require_predictions=False)
            if test.n_unseen:
                print(f"Dropped {test.n_unseen:,} test events whose item is not in the training data (sessions stitched around them)")
            print(f"Starting evaluation (cut-off={args.measure}, using {args.eval_type} mode for tiebreaking)")
            res = evaluate_sessions(model, test, cutoffs=args.measure, mode=args.eval_type, progress=not args.quiet)
            print(f"Evaluation took {res.seconds:.2f}s ({res.n_predictions:,} predictions over {model.n_items:,} items)")
            for line in res.lines():
                print(line)
            if args.log_primary_metric:
                k = args.measure[0]
                print(f"PRIMARY METRIC: {res.metrics[f'{args.primary_metric}@{k}']}")
    return 0


def run_demo(args) -> int:
    folder = find_dataset("sessions/rsc15_100k", required=("train_full.tsv", "test.tsv"))
    argv = [str(folder / "train_full.tsv"), "-t", str(folder / "test.tsv"), "-m", "1", "5", "10", "20",
            "-pf", "rsc15_xe_shared_best", "-d", args.device]
    if args.save_model:
        argv += ["-s", args.save_model]
    if args.quiet:
        argv.append("-q")
    print("nextitem gru4rec " + " ".join(argv))
    return run_gru4rec(gru4rec_parser().parse_args(argv))


def run_prepare(args) -> int:
    options = {k: getattr(args, k) for k in ("tsplit", "test_days", "min_rating", "min_uc", "min_sc") if getattr(args, k) is not None}
    if args.keep_untitled:
        options["drop_untitled"] = False
    stats = prepare(args.recipe, args.raw, args.out, **options)
    for step, n in stats["steps"].items():
        print(f"{step:<44}{n:>14,}")
    rows = stats["files"]
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    # counts with thousands separators; times as they are in the files
    table = [["file", *columns]] + [
        [name, *(f"{r[c]:,}" if isinstance(r.get(c), int) and not c.startswith("time") else str(r.get(c, "")) for c in columns)]
        for name, r in rows.items()
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(row[0].ljust(widths[0]) + "".join(cell.rjust(w + 2) for cell, w in zip(row[1:], widths[1:])))
    print(f"Wrote {', '.join(rows)} and stats.json to {args.out}")
    return 0


def run_tune(args) -> int:
    from .tuning import resolve_space, tune  # imports Optuna, which the other commands do not need

    if args.fixed_parameter_file:
        fixed = load_param_file(resolve_param_file(args.fixed_parameter_file))
    else:
        fixed = parse_param_string(args.fixed_parameters or "")
    summary = tune(args.model, args.path, args.valid, resolve_space(args.optuna_parameter_file), fixed,
                   cutoff=args.measure, final_cutoffs=args.final_measure, primary=args.primary_metric, n_trials=args.ntrials,
                   mode=args.eval_type, device=args.device, storage=args.storage, study_name=args.study_name, out=args.out,
                   columns=Columns(session=args.session_key, item=args.item_key, time=args.time_key), seed=args.seed,
                   options={"sample_store_size": args.sample_store_size}, verbose=not args.quiet)
    return 130 if summary is None else 0


def _params(args) -> dict:
    params = load_param_file(args.config, variable="params") if args.config else {}
    return {**params, **parse_param_string(args.params or "")}


def run_train(args) -> int:
    from .pipeline.experiment import run_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    run_experiment(args.model, args.data, _params(args), out=args.out, device=args.device, sampled=args.sampled,
                   negatives=args.negatives, progress=not args.quiet)
    return 0


def run_evaluate(args) -> int:
    from .data.histories import LeaveOneOut, read_histories
    from .pipeline.experiment import evaluate_all, load_model, resolve_data

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model_file, device=args.device)
    loo = LeaveOneOut.from_histories(read_histories(resolve_data(args.data)))
    out = args.out or os.path.dirname(os.path.abspath(args.model_file))
    name = f"eval_{args.split}.json"
    results = evaluate_all(model, loo, Path(out), splits=(args.split,), sampled=args.sampled, negatives=args.negatives,
                           filename=name)
    for result in results.values():
        print(result.table())
    print(f"Saved {os.path.join(out, name)}")
    return 0


def run_retrieve(args) -> int:
    from .pipeline.two_stage import train_retrieval

    _threads(args)
    train_retrieval(args.method, args.data, _params(args), top_k=args.retrieval_top_k, root=args.root, device=args.device,
                    progress=not args.quiet)
    return 0


def run_rerank(args) -> int:
    from .pipeline.two_stage import train_reranker

    _threads(args)
    train_reranker(args.method, args.data, args.mode, _params(args), retrieval_method=args.retrieval_method,
                   rerank_top_k=args.rerank_top_k, root=args.root, device=args.device, progress=not args.quiet,
                   fusion=args.fusion)
    return 0


def run_pipeline(args) -> int:
    from .pipeline.two_stage import train_reranker, train_retrieval

    _threads(args)
    retrieval_params = parse_param_string(args.retrieval_params or "")
    print(f"=== Stage 1: {args.retrieval_method} retrieves the top {args.retrieval_top_k}")
    train_retrieval(args.retrieval_method, args.data, retrieval_params, top_k=args.retrieval_top_k, root=args.root,
                    device=args.device, progress=not args.quiet)
    print(f"=== Stage 2: {args.rerank_method} reranks the top {args.rerank_top_k} ({args.rerank_mode} mode)")
    train_reranker(args.rerank_method, args.data, args.rerank_mode, _params(args), retrieval_method=args.retrieval_method,
                   rerank_top_k=args.rerank_top_k, root=args.root, device=args.device, progress=not args.quiet,
                   retrieval_seed=int(retrieval_params.get("seed", 42)), fusion=args.fusion)
    return 0


def run_offline_eval(args) -> int:
    from .data.io import atomic_write_text
    from .pipeline.two_stage import evaluate_saved_reranker, retrieval_only, stage_dir

    split = {"val": "valid"}.get(args.split, args.split)
    if args.mode == "retrieval":
        results = {split: retrieval_only(args.retrieval_method, args.data, split, seed=args.seed, root=args.root,
                                         top_k=args.retrieval_top_k)}
        out = stage_dir("retrieval", args.retrieval_method, args.data, args.seed, args.root)
    else:
        out = stage_dir("rerank", args.rerank_method, args.data, args.seed, args.root)
        results = evaluate_saved_reranker(out / "model.safetensors", args.data, "retrieval" if args.mode == "full" else "ground_truth",
                                          args.retrieval_method, args.rerank_top_k, split, seed=args.seed, root=args.root,
                                          device=args.device, fusion=args.fusion)
    for key in sorted(results, key=lambda k: (k != f"{split}_retriever", k == split)):  # the final result last
        if key != split:
            print(f"[{key}]")
        print(results[key].table())
    path = out / f"offline_eval_{args.mode}_{split}.json"
    atomic_write_text(path, json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2))
    print(f"Saved {path}")
    return 0


def _threads(args) -> None:
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _cutoff(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"cut-offs are positive integers, got {text!r}")
    return value


def _add_gru4rec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="training data (.tsv/.txt, .csv, .parquet, .pickle) or, with -l, a saved model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-ps", "--parameter_string", help="parameters as k=v,k=v (lists with '/', e.g. layers=100/100)")
    src.add_argument("-pf", "--parameter_file", help="a .py (official OrderedDict form), .json or .toml parameter file, or the name of a shipped one")
    src.add_argument("-l", "--load_model", action="store_true", help="PATH is a model saved with -s")
    p.add_argument("-s", "--save_model", metavar="MODEL_PATH", help="save the trained model here (safetensors)")
    p.add_argument("-t", "--test", metavar="TEST_PATH", nargs="+", help="test file(s) to evaluate on")
    p.add_argument("-m", "--measure", metavar="AT", type=_cutoff, nargs="+", default=[20], help="cut-offs for Recall and MRR (default: 20)")
    p.add_argument("-e", "--eval_type", choices=TIE_MODES, default="standard", help="how to rank the target among items with its score (default: standard)")
    p.add_argument("-ss", "--sample_store_size", type=int, default=10_000_000, help="negative-sample buffer size (default: 10000000)")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    p.add_argument("-ik", "--item_key", default="ItemId")
    p.add_argument("-sk", "--session_key", default="SessionId")
    p.add_argument("-tk", "--time_key", default="Time")
    p.add_argument("-pm", "--primary_metric", choices=("recall", "mrr"), default="recall")
    p.add_argument("-lpm", "--log_primary_metric", action="store_true", help="print 'PRIMARY METRIC: x' at the end (one test file, one cut-off)")
    p.add_argument("-c", "--checkpoint", metavar="PATH", help="write the training state here after every epoch; resume from it if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")


def gru4rec_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nextitem gru4rec", description="Train or load a GRU4Rec model and measure Recall and MRR on test set(s).")
    _add_gru4rec_args(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nextitem", description="Next-item recommendation toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gru4rec", help="train / evaluate GRU4Rec (the official run.py's options)",
                       description=gru4rec_parser().description)
    _add_gru4rec_args(g)
    g.set_defaults(func=run_gru4rec)
    d = sub.add_parser("demo", help="train and evaluate GRU4Rec on the rsc15_100k sample (quickstart)")
    d.add_argument("-d", "--device", default="cpu")
    d.add_argument("-s", "--save_model", metavar="MODEL_PATH")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=run_demo)
    r = sub.add_parser("prepare", help="prepare a public dataset from its raw files (recipes: " + ", ".join(RECIPES) + ")",
                       description="Run a preparation recipe on raw files; write the split files and stats.json into --out. "
                       + "Recipes and their raw files: " + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()) + ".")
    r.add_argument("recipe", help=", ".join(RECIPES))
    r.add_argument("--raw", nargs="+", required=True, metavar="FILE", help="the raw file(s) of the dataset")
    r.add_argument("--out", required=True, metavar="DIR", help="output folder")
    r.add_argument("--tsplit", type=_number, help="session recipes: split time, in the data's unit (default: the recipe's)")
    r.add_argument("--test-days", dest="test_days", type=_number, help="session recipes: days of test data (default: the recipe's)")
    r.add_argument("--min-rating", dest="min_rating", type=_number, help="history recipes: keep ratings >= this (default 0)")
    r.add_argument("--min-uc", dest="min_uc", type=int, help="history recipes: min interactions per user, k-core (default 5)")
    r.add_argument("--min-sc", dest="min_sc", type=int, help="history recipes: min interactions per item, k-core (default 5)")
    r.add_argument("--keep-untitled", action="store_true", help="history recipes: keep items that have no title in the item file")
    r.set_defaults(func=run_prepare)
    add_download_command(sub)
    t = sub.add_parser("tune", help="hyperparameter search (the official paropt.py's options): Optuna TPE, resumable",
                       description="Search a parameter space with Optuna TPE, training on PATH and measuring on VALID_PATH; "
                       "the study lives in a database, so running the same command again resumes it.")
    t.add_argument("model", help="the model to tune (gru4rec)")
    t.add_argument("path", metavar="PATH", help="training data (e.g. train_tr.tsv)")
    t.add_argument("valid", metavar="VALID_PATH", help="validation data (e.g. train_valid.tsv)")
    t.add_argument("-opf", "--optuna_parameter_file", required=True, metavar="SPACE",
                   help="parameter space: JSON lines (name, dtype, values, step, log), or a shipped one (gru4rec_xe, gru4rec_bprmax)")
    fx = t.add_mutually_exclusive_group()
    fx.add_argument("-fp", "--fixed_parameters", metavar="PARAM_STRING", help="fixed parameters as k=v,k=v")
    fx.add_argument("-fpf", "--fixed_parameter_file", metavar="FILE", help="fixed parameters from a parameter file (or a shipped one)")
    t.add_argument("-m", "--measure", metavar="AT", type=_cutoff, default=20, help="the one cut-off the search optimizes (default: 20)")
    t.add_argument("-fm", "--final_measure", metavar="AT", type=_cutoff, nargs="+", default=[1, 5, 10, 20],
                   help="cut-offs of the final evaluation of the best parameters (default: 1 5 10 20)")
    t.add_argument("-pm", "--primary_metric", choices=("recall", "mrr"), default="recall")
    t.add_argument("-nt", "--ntrials", metavar="NT", type=int, default=20, help="complete trials to reach (default: 20)")
    t.add_argument("-e", "--eval_type", choices=TIE_MODES, default="standard")
    t.add_argument("-d", "--device", default="cpu")
    t.add_argument("-ik", "--item_key", default="ItemId")
    t.add_argument("-sk", "--session_key", default="SessionId")
    t.add_argument("-tk", "--time_key", default="Time")
    t.add_argument("-ss", "--sample_store_size", type=int, default=10_000_000)
    t.add_argument("--storage", metavar="URL", help="study database (default: sqlite in OUT/study.db)")
    t.add_argument("--study-name", dest="study_name", help="default: the space file's name")
    t.add_argument("--out", default="tune", metavar="DIR", help="best_params.py and summary.json go here (default: tune)")
    t.add_argument("--seed", type=int, default=42, help="seeds the sampler and, unless fixed, the model (default: 42)")
    t.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    t.set_defaults(func=run_tune)
    _add_sequential_commands(sub)
    _add_two_stage_commands(sub)
    return parser


def _add_sequential_commands(sub) -> None:
    from .pipeline.experiment import MODEL_NAMES

    t = sub.add_parser("train", help="train and evaluate a user-history model (sasrec, bert4rec, lrurec, gru4rec) on a dataset folder",
                       description="Train MODEL on the leave-one-out split of DATA (a folder with interactions.tsv or RecBole "
                       "atomic files, or a name under sequences/ of the data root such as ml-1m), with early stopping on "
                       "validation; then evaluate validation and test by full ranking. Everything goes to an experiment "
                       "folder; running the same command again resumes from its checkpoint.")
    t.add_argument("model", choices=MODEL_NAMES)
    t.add_argument("data", metavar="DATA", help="dataset folder or name (ml-1m, beauty, games, ml-100k)")
    t.add_argument("-c", "--config", metavar="FILE", help="parameters from a .toml/.json file (flat, or [model] and [train] tables)")
    t.add_argument("-p", "--params", metavar="k=v,...", help="parameters that override the file, e.g. hidden=64,lr=0.001,epochs=50")
    t.add_argument("--out", metavar="DIR", help="experiment folder (default: experiments/MODEL/DATASET/seedSEED)")
    _add_eval_options(t)
    t.set_defaults(func=run_train)
    e = sub.add_parser("evaluate", help="evaluate a saved model on a dataset folder (full ranking; sampled only when asked)")
    e.add_argument("model_file", metavar="MODEL_FILE", help="a model.safetensors written by nextitem train")
    e.add_argument("data", metavar="DATA", help="dataset folder or name")
    e.add_argument("--split", choices=("valid", "test"), default="test")
    e.add_argument("--out", metavar="DIR", help="where metrics.json goes (default: the model's folder)")
    _add_eval_options(e)
    e.set_defaults(func=run_evaluate)


def _add_two_stage_commands(sub) -> None:
    from .pipeline.experiment import MODEL_NAMES

    def common(p, params_help="model and training parameters k=v,... (see nextitem train)"):
        p.add_argument("data", metavar="DATA", help="dataset folder or name (beauty, games, ml-1m, ml-100k)")
        p.add_argument("-c", "--config", metavar="FILE", help="parameters from a .toml/.json file")
        p.add_argument("-p", "--params", metavar="k=v,...", help=params_help)
        p.add_argument("--root", default="experiments", help="experiments folder (default: experiments)")
        p.add_argument("-d", "--device", default="cpu")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("retrieve", help="stage 1: train a retriever and write its top-K candidates (retrieved.csv)")
    r.add_argument("method", choices=MODEL_NAMES, help="the retriever (the seed's default: lrurec)")
    r.add_argument("--retrieval-top-k", dest="retrieval_top_k", type=int, default=20)
    common(r)
    r.set_defaults(func=run_retrieve)

    k = sub.add_parser("rerank", help="stage 2 standalone: train a reranker and evaluate it (retrieval or ground_truth mode)")
    k.add_argument("method", choices=(*MODEL_NAMES, "llm", "qwen"),
                   help="the reranker: bert4rec (or any model), or llm/qwen with -p model=HF_ID_OR_FOLDER (default smollm2)")
    k.add_argument("--mode", choices=("retrieval", "ground_truth"), default="retrieval",
                   help="retrieval: rerank stage 1's candidates, all users counted; ground_truth: target + 19 seeded negatives (sampled-20)")
    k.add_argument("--retrieval-method", dest="retrieval_method", default="lrurec")
    k.add_argument("--rerank-top-k", dest="rerank_top_k", type=int, default=20)
    _add_fusion(k)
    common(k)
    k.set_defaults(func=run_rerank)

    e = sub.add_parser("pipeline", help="train both stages end to end: retrieve, then rerank")
    e.add_argument("--retrieval-method", dest="retrieval_method", default="lrurec", choices=MODEL_NAMES)
    e.add_argument("--retrieval-top-k", dest="retrieval_top_k", type=int, default=20)
    e.add_argument("--retrieval-params", dest="retrieval_params", metavar="k=v,...", help="the retriever's parameters")
    e.add_argument("--rerank-method", dest="rerank_method", default="bert4rec", choices=(*MODEL_NAMES, "llm", "qwen"))
    e.add_argument("--rerank-top-k", dest="rerank_top_k", type=int, default=20)
    e.add_argument("--rerank-mode", dest="rerank_mode", choices=("retrieval", "ground_truth"), default="retrieval")
    _add_fusion(e)
    common(e, params_help="the reranker's parameters k=v,...")
    e.set_defaults(func=run_pipeline)

    o = sub.add_parser("offline-eval", help="evaluate saved stages: --mode retrieval | full | rerank_only, --split val | test")
    o.add_argument("--mode", choices=("retrieval", "full", "rerank_only"), required=True)
    o.add_argument("--split", choices=("val", "valid", "test"), default="test")
    o.add_argument("--retrieval-method", dest="retrieval_method", default="lrurec")
    o.add_argument("--retrieval-top-k", dest="retrieval_top_k", type=int, default=None)
    o.add_argument("--rerank-method", dest="rerank_method", default="bert4rec")
    o.add_argument("--rerank-top-k", dest="rerank_top_k", type=int, default=20)
    _add_fusion(o)
    o.add_argument("--seed", type=int, default=42)
    o.add_argument("data", metavar="DATA")
    o.add_argument("--root", default="experiments")
    o.add_argument("-d", "--device", default="cpu")
    o.set_defaults(func=run_offline_eval)


def _add_fusion(p) -> None:
    p.add_argument("--fusion", default="auto", metavar="auto|none|W",
                   help="retrieval mode: mix the retriever's scores into the reranker's with weight W in [0, 1]; auto "
                        "(default) fits W on the validation split, none keeps the reranker's order alone")


def _add_eval_options(p) -> None:
    p.add_argument("--sampled", type=int, default=0, metavar="N",
                   help="also rank the test target among N negatives drawn once with a seed (labelled sampled); 0 = off")
    p.add_argument("--negatives", choices=("uniform", "popularity"), default="uniform", help="how sampled negatives are drawn")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
