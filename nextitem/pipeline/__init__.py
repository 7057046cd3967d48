"""Orchestration: experiment folders for single models; retrieve -> rerank later."""
from .experiment import Experiment, evaluate_all, run_experiment

__all__ = ["Experiment", "evaluate_all", "run_experiment"]
