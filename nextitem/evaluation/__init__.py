"""Metrics (with explicit tie handling) and evaluators."""
from .metrics import TIE_MODES, RankAccumulator, target_ranks
from .sessions import EvalResult, evaluate_sessions

__all__ = ["TIE_MODES", "EvalResult", "RankAccumulator", "evaluate_sessions", "target_ranks"]
