"""Dataset preparation recipes: raw public files -> the train/test files nextitem reads.

Session recipes (GRU4Rec's preprocessing; write train_full.tsv, test.tsv, train_tr.tsv,
train_valid.tsv): yoochoose, rsc15, rees46, coveo, retailrocket, diginetica.
User-history recipes (write interactions.tsv, items.tsv as in ``sequences/``): amazon, movielens, recbole.
Each also writes stats.json. Built on Polars lazy queries that stream between Parquet stages, so
the raw file does not have to fit in memory.

    >>> prepare("diginetica", ["train-item-views.csv"], "data/diginetica")  # doctest: +SKIP
"""
from __future__ import annotations

import os

from ...config import ConfigError, suggest
from ..io import DataError
from .histories import HISTORY_OPTIONS, HISTORY_RAW, HISTORY_RECIPES, k_core, run_history_recipe
from .session_recipes import SESSION_OPTIONS, SESSION_RECIPES, run_session_recipe

RECIPES = {**{n: r.raw for n, r in SESSION_RECIPES.items()}, **HISTORY_RAW}  # name -> the raw files it reads


def recipe_names() -> list[str]:
    return list(RECIPES)


def prepare(recipe: str, raw_paths, out_dir, **options) -> dict:
    """Run the recipe ``recipe`` on ``raw_paths`` and write its files into ``out_dir``; return the statistics.

    Options: session recipes take ``tsplit`` (in the data's time unit; not rsc15) and ``test_days``
    (defaults: the recipe's); history recipes take ``min_rating`` (0), ``min_uc`` (5), ``min_sc`` (5)
    and ``drop_untitled`` (True: with an item file given, its items without a title are dropped first).
    """
    if recipe in SESSION_RECIPES:
        # RSC15 splits at its last timestamp: no tsplit
        allowed = ("test_days",) if SESSION_RECIPES[recipe].rsc15 else SESSION_OPTIONS
    elif recipe in HISTORY_RECIPES:
        allowed = HISTORY_OPTIONS
    else:
        raise ConfigError(f"unknown recipe {recipe!r}.{suggest(str(recipe), RECIPES)} Valid recipes: {', '.join(RECIPES)}.")
    for key in options:
        if key not in allowed:
            raise ConfigError(f"the {recipe} recipe has no option {key!r}.{suggest(key, allowed)} Its options: {', '.join(allowed)}.")
    _check_values(options)
    paths = [os.fspath(raw_paths)] if isinstance(raw_paths, (str, os.PathLike)) else [os.fspath(p) for p in raw_paths]
    if not paths:
        raise ConfigError(f"no raw files given; the {recipe} recipe reads {RECIPES[recipe]}.")
    for path in paths:  # before anything is created in out_dir
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file. The {recipe} recipe reads {RECIPES[recipe]}.")
    out_dir = os.fspath(out_dir)
    if recipe in SESSION_RECIPES:
        return run_session_recipe(SESSION_RECIPES[recipe], paths, out_dir, **options)
    return run_history_recipe(recipe, paths, out_dir, **options)


def _check_values(options: dict) -> None:
    for key in ("min_uc", "min_sc"):
        if key in options and (not isinstance(options[key], int) or options[key] < 0):
            raise ConfigError(f"{key} must be a non-negative integer, got {options[key]!r}.")
    for key in ("test_days", "min_rating", "tsplit"):
        value = options.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
    if "drop_untitled" in options and not isinstance(options["drop_untitled"], bool):
        raise ConfigError(f"drop_untitled must be True or False, got {options['drop_untitled']!r}.")
    if options.get("test_days") is not None and options["test_days"] <= 0:
        raise ConfigError(f"test_days must be positive, got {options['test_days']!r}.")


__all__ = ["RECIPES", "prepare", "recipe_names", "k_core", "run_history_recipe", "run_session_recipe"]
