"""Parameter spaces: one JSON object per line, the form of the official paropt.py.

    {"name": "layers", "dtype": "int", "values": [64, 512], "step": 32}
    {"name": "learning_rate", "dtype": "float", "values": [0.01, 0.25], "step": 0.005}
    {"name": "elu_param", "dtype": "categorical", "values": [0.5, 1.0, 0.0]}

``int`` and ``float`` take ``[lo, hi]`` (both included) with an optional ``step`` or ``"log": true``
(Optuna allows one or the other); an int without a step moves by 1, as in paropt.py.
``categorical`` takes the list of choices. ``range`` is accepted in place of ``values``.
Blank lines and lines starting with ``#`` are skipped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources

from ..config import ConfigError, suggest

DTYPES = ("int", "float", "categorical")
KEYS = ("name", "dtype", "values", "range", "step", "log")


def tidy(value):
    """0.15000000000000002 -> 0.15: stepped floats carry binary noise that a parameter file should not."""
    return round(value, 10) if isinstance(value, float) else value


@dataclass(frozen=True)
class Param:
    name: str
    dtype: str
    values: tuple  # (lo, hi) for int and float, the choices for categorical
    step: int | float | None = None
    log: bool = False

    def suggest(self, trial):
        if self.dtype == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        lo, hi = self.values
        if self.dtype == "int":
            return trial.suggest_int(self.name, lo, hi, step=self.step or 1, log=self.log)
        return tidy(trial.suggest_float(self.name, lo, hi, step=self.step, log=self.log))

    def describe(self) -> str:
        if self.dtype == "categorical":
            return f"{self.name:<20}{self.dtype:<13}one of {', '.join(map(str, self.values))}"
        scale = "log scale" if self.log else f"step {self.step or 1}"
        return f"{self.name:<20}{self.dtype:<13}[{self.values[0]}, {self.values[1]}], {scale}"

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "values": list(self.values), "step": self.step, "log": self.log}


def shipped_spaces() -> list[str]:
    folder = resources.files("nextitem.paramspaces")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def resolve_space(name: str) -> str:
    """A path, or the name of a space shipped with nextitem (``-opf gru4rec_xe``)."""
    if os.path.exists(name):
        return name
    shipped = resources.files("nextitem.paramspaces") / (name if name.endswith(".json") else name + ".json")
    if shipped.is_file():
        return str(shipped)
    raise ConfigError(f"{name}: no such parameter-space file, and no shipped one of that name "
                      f"(shipped: {', '.join(shipped_spaces())}).")


def load_space(path: str | os.PathLike, parameters, model: str = "the model") -> list[Param]:
    """Read and check a space file; ``parameters`` are the names ``model`` accepts."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such parameter-space file.")
    space: dict[str, Param] = {}
    lines: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            param = _parse_line(text, f"{path}, line {number}", parameters, model)
            if param.name in space:
                raise ConfigError(f"{path}, line {number}: {param.name!r} is already defined on line {lines[param.name]}; "
                                  "keep one of the two lines.")
            space[param.name], lines[param.name] = param, number
    if not space:
        raise ConfigError(f"{path}: no parameters in the file; write one JSON object per line, e.g. "
                          '{"name": "layers", "dtype": "int", "values": [64, 512], "step": 32}.')
    return list(space.values())


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _parse_line(text: str, where: str, parameters, model: str) -> Param:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); each line is one JSON object.") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object such as "
                          '{"name": "layers", "dtype": "int", "values": [64, 512]}, got ' + type(obj).__name__ + ".")
    for key in obj:
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}.{suggest(key, KEYS)} Keys: {', '.join(KEYS)}.")
    for key in ("name", "dtype"):
        if key not in obj:
            raise ConfigError(f"{where}: the {key!r} key is missing.")
    name, dtype = obj["name"], obj["dtype"]
    if name not in parameters:
        raise ConfigError(f"{where}: {name!r} is not a parameter of {model}.{suggest(str(name), parameters)} "
                          f"Parameters: {', '.join(parameters)}.")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}: dtype {dtype!r} is not one of {', '.join(DTYPES)}.{suggest(str(dtype), DTYPES)}")
    if ("values" in obj) == ("range" in obj):
        raise ConfigError(f"{where}: give the values of {name!r} once, as \"values\" ([lo, hi] or a list of choices).")
    values = obj.get("values", obj.get("range"))
    step, log = obj.get("step"), obj.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log={log!r} must be true or false.")
    if dtype == "categorical":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: a categorical parameter needs a non-empty list of choices, got {values!r}.")
        if any(isinstance(v, (list, dict)) for v in values):
            raise ConfigError(f"{where}: choices must be numbers, text, true/false or null, got {values!r}.")
        if len(set(map(json.dumps, values))) != len(values):
            raise ConfigError(f"{where}: the choices {values!r} repeat a value; list each once.")
        if step is not None or log:
            raise ConfigError(f"{where}: step and log apply to int and float parameters, not categorical ones.")
        return Param(name, dtype, tuple(values))
    if not isinstance(values, list) or len(values) != 2 or not all(map(_is_number, values)):
        raise ConfigError(f"{where}: an {dtype} parameter needs values [lo, hi] (two numbers), got {values!r}.")
    lo, hi = values
    if dtype == "int" and not all(float(v).is_integer() for v in values):
        raise ConfigError(f"{where}: an int parameter needs integer bounds, got [{lo}, {hi}]; use dtype float.")
    if lo > hi:
        raise ConfigError(f"{where}: lo > hi in [{lo}, {hi}]; write the smaller bound first.")
    if step is not None:
        if not _is_number(step) or step <= 0 or (dtype == "int" and not float(step).is_integer()):
            raise ConfigError(f"{where}: step={step!r} must be a positive {'integer' if dtype == 'int' else 'number'}.")
        if log:
            raise ConfigError(f"{where}: step and log cannot be combined (Optuna samples a log scale continuously); drop one.")
    if log and lo <= 0:
        raise ConfigError(f"{where}: a log scale needs lo > 0, got [{lo}, {hi}].")
    if dtype == "int":
        return Param(name, dtype, (int(lo), int(hi)), int(step) if step is not None else None, log)
    return Param(name, dtype, (float(lo), float(hi)), float(step) if step is not None else None, log)
