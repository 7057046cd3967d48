"""Hyperparameter search (``nextitem tune``): Optuna TPE over JSON-lines parameter spaces.

Sits on top of data, models, evaluation and training; only the command line imports it.
"""
from .objectives import OBJECTIVES, Objective, get_objective, register
from .space import Param, load_space, resolve_space, shipped_spaces
from .study import tune

__all__ = ["OBJECTIVES", "Objective", "Param", "get_objective", "load_space", "register", "resolve_space",
           "shipped_spaces", "tune"]
