"""The models ``nextitem tune`` can tune: a registry of objectives keyed by model name.

An :class:`Objective` tells the search four things about a model:

- ``parameters``: the names a space file or the fixed parameters may use;
- ``check(params, source)``: the same parameters as typed values, or a ConfigError naming the bad one;
- ``load(train_path, valid_path, columns, echo)``: the training and validation data, read once per worker;
- ``run(params, train, valid, *, cutoffs, mode, primary, device, seed, log, **options)``: train with
  ``params`` (the fixed parameters merged with the trial's) and return the validation metrics
  ``{"recall@K": .., "mrr@K": ..}`` for every cut-off K. An exception in ``failures`` means "these
  parameters do not train" (invalid, diverged, out of memory): the trial is recorded as failed and
  the search goes on; any other exception stops it (a bug or a data problem is not a bad trial).

``variable`` is the name the best parameters get in the written ``.py`` parameter file. A new model
(SASRec, ...) registers an Objective here; nothing else in the search is model-specific.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import ConfigError, suggest
from ..data import Columns, SessionData, read_events
from ..evaluation import evaluate_sessions
from ..models.gru4rec import GRU4Rec, GRU4RecConfig
from ..training.gru4rec import TrainingDiverged


@dataclass(frozen=True)
class Objective:
    name: str
    parameters: tuple[str, ...]
    check: Callable[[dict, str], dict]
    load: Callable
    run: Callable[..., dict]
    variable: str
    failures: tuple[type[BaseException], ...] = (ConfigError,)


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"no objective for model {name!r}.{suggest(name, OBJECTIVES)} Tunable models: {', '.join(OBJECTIVES)}.")
    return OBJECTIVES[name]


# ---------------------------------------------------------------------------------------- GRU4Rec
def _gru4rec_check(params: dict, source: str) -> dict:
    config = GRU4RecConfig.from_dict(params, source=source)
    return {key: getattr(config, key) for key in params}


def _gru4rec_load(train_path, valid_path, columns: Columns, echo=print):
    train = SessionData.from_frame(read_events(train_path, columns), columns, source=str(train_path))
    # the validation sessions are mapped to the training items once, not once per trial
    valid = SessionData.from_frame(read_events(valid_path, columns), columns, vocab=train.vocab, source=str(valid_path))
    echo(f"Training data: {train.n_events:,} events, {train.n_sessions:,} sessions, {train.n_items:,} items ({train_path})")
    echo(f"Validation data: {valid.n_events:,} events, {valid.n_sessions:,} sessions, {valid.n_predictions():,} predictions "
         f"({valid.n_unseen:,} events of items unseen in training dropped) ({valid_path})")
    return train, valid


def _gru4rec_run(params, train, valid, *, cutoffs, mode, primary, device, seed, log=None, sample_store_size=10_000_000):
    # the primary metric is not needed here: GRU4Rec trains a fixed number of epochs, no early stopping
    config = GRU4RecConfig.from_dict({"seed": seed, **params}, source="trial parameters")
    model = GRU4Rec(config, device=device).fit(train, sample_store_size=sample_store_size, log=log)
    return evaluate_sessions(model, valid, cutoffs=cutoffs, mode=mode).metrics


register(Objective(
    name="gru4rec",
    parameters=tuple(f.name for f in dataclasses.fields(GRU4RecConfig)),
    check=_gru4rec_check,
    load=_gru4rec_load,
    run=_gru4rec_run,
    variable="gru4rec_params",
    failures=(ConfigError, TrainingDiverged, MemoryError, torch.OutOfMemoryError),
))
