"""What a search leaves behind: the best parameters as a parameter file, a JSON summary, the final table."""
from __future__ import annotations

import ast
import json

from ..data.io import atomic_write


def param_file_text(params: dict, variable: str, header: list[str]) -> str:
    """The official ``.py`` form, ``name = OrderedDict([...])``, which ``-pf`` reads without executing it."""
    lines = [f"# {h}" for h in header]
    lines += ["# Parsed, never executed, by nextitem.config.load_param_file.", "from collections import OrderedDict", "",
              f"{variable} = OrderedDict(["]
    for key, value in params.items():
        text = repr(value)
        ast.literal_eval(text)  # a value that does not read back as a literal is a bug here, not a bad file later
        lines.append(f"    ({key!r}, {text}),")
    lines.append("])")
    return "\n".join(lines) + "\n"


def write_param_file(path: str, params: dict, variable: str, header: list[str]) -> None:
    text = param_file_text(params, variable, header)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def write_summary(path: str, summary: dict) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def final_table(metrics: dict, cutoffs) -> list[str]:
    rows = [f"{'cut-off':>8}{'Recall':>12}{'MRR':>12}"]
    rows += [f"{k:>8}{metrics[f'recall@{k}']:>12.6f}{metrics[f'mrr@{k}']:>12.6f}" for k in cutoffs]
    return rows
