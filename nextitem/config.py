"""Typed, strict configs: every model's hyperparameters are a dataclass built through here.

An unknown key is an error that suggests the nearest valid name; a value is converted to the
field's type (from the text of a ``k=v`` parameter string too) or rejected with a message that
names the key, the value and what is allowed.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import os
import types
import typing
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message says which and why."""


def suggest(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def build(cls, values: dict[str, Any], source: str = "config"):
    """Instantiate the config dataclass ``cls`` from ``values`` (strings are converted)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown parameter {key!r}.{suggest(key, fields)} "
                f"Valid parameters: {', '.join(fields)}."
            )
        kwargs[key] = convert(value, hints[key], key, source)
    return cls(**kwargs)


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)


_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def convert(value: Any, hint, key: str, source: str = "config"):
    """Convert ``value`` to the type ``hint`` (bool, int, float, str, list[int], or a Union of them)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        for option in typing.get_args(hint):
            try:
                return convert(value, option, key, source)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: {key}={value!r} fits none of the allowed types ({hint}).")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return value
        raise ConfigError(f"{source}: {key}={value!r} is not allowed; use one of {', '.join(map(repr, allowed))}.")
    if origin in (list, tuple):
        (item_type,) = typing.get_args(hint)[:1]
        if isinstance(value, str):
            parts = [p for p in value.replace(",", "/").split("/") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        return [convert(p, item_type, key, source) for p in parts]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE:
            return _TRUE[value.strip().lower()]
        raise ConfigError(f"{source}: {key}={value!r} is not a boolean; use True or False.")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {key}={value!r} must be an integer, not a boolean.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
        raise ConfigError(f"{source}: {key}={value!r} must be an integer.")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {key}={value!r} must be a number, not a boolean.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key}={value!r} must be a number.") from None
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key}={value!r} must be text.")
    raise TypeError(f"unsupported config type {hint} for {key}")  # a bug in a config class, not user input


def parse_param_string(text: str) -> dict[str, str]:
    """``"loss=bpr-max,layers=100/100"`` -> ``{"loss": "bpr-max", "layers": "100/100"}`` (run.py's -ps)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"parameter string: {part!r} is not of the form name=value (lists use '/', e.g. layers=100/100).")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_param_file(path: str | os.PathLike, variable: str = "gru4rec_params") -> dict[str, Any]:
    """Read parameters from a JSON, TOML or official-style ``.py`` file.

    A ``.py`` file is parsed, never executed: it must assign ``variable`` an ``OrderedDict([...])``
    or a dict literal, as the official GRU4Rec parameter files do.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such parameter file.")
    suffix = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        raw = f.read()
    if suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from None
    elif suffix == ".toml":
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        data = data.get(variable, data)
    elif suffix == ".py":
        data = _python_params(raw.decode("utf-8"), variable, path)
    else:
        raise ConfigError(f"{path}: unknown parameter file type {suffix!r}; use .py, .json or .toml.")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values.")
    return dict(data)


def _python_params(source: str, variable: str, path: str) -> dict[str, Any]:
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise ConfigError(f"{path}: not valid Python: {e}") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            value = node.value
            try:
                if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) in ("OrderedDict", "dict"):
                    if value.keywords:
                        return {kw.arg: ast.literal_eval(kw.value) for kw in value.keywords}
                    return dict(ast.literal_eval(value.args[0])) if value.args else {}
                return ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError):
                break
            break
    raise ConfigError(
        f"{path}: found no literal assignment '{variable} = OrderedDict([...])' (or a dict literal); "
        "parameter files are read, not executed, so values must be plain literals."
    )
