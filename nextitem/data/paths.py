"""Where the datasets live: $NEXTITEM_DATA, else ../shared/data beside the checkout or the working folder."""
from __future__ import annotations

import os
from pathlib import Path

from .io import DataError

_HOW_TO_GET = """\
The dataset folder {what} was not found. nextitem looks in:
{places}
To fix it, either
  - point NEXTITEM_DATA at a folder that holds {what}, e.g. `export NEXTITEM_DATA=/data/nextitem`, or
  - pass the files directly: `nextitem gru4rec TRAIN.tsv -t TEST.tsv -pf rsc15_xe_shared_best`.
rsc15_100k is the first 100,000 clicks of the RecSys Challenge 2015 (Yoochoose) data
(yoochoose-clicks.dat, https://recsys.acm.org/recsys15/challenge/ or its Kaggle re-upload
"chadgostopp/recsys-challenge-2015"), split GRU4Rec-style: the last day's sessions are the test set.
"""


def candidate_roots() -> list[Path]:
    roots = []
    if os.environ.get("NEXTITEM_DATA"):
        roots.append(Path(os.environ["NEXTITEM_DATA"]).expanduser())
    checkout = Path(__file__).resolve().parents[2]
    roots += [checkout.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    seen, out = set(), []
    for r in roots:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def find_dataset(relative: str, required: tuple[str, ...] = ()) -> Path:
    """The first ``root/relative`` folder that has all ``required`` files; a DataError saying how to get it otherwise."""
    roots = candidate_roots()
    for root in roots:
        folder = root / relative
        if folder.is_dir() and all((folder / f).exists() for f in required):
            return folder
    places = "\n".join(f"  - {r / relative}" + ("  ($NEXTITEM_DATA)" if i == 0 and os.environ.get("NEXTITEM_DATA") else "")
                       for i, r in enumerate(roots))
    raise DataError(_HOW_TO_GET.format(what=relative, places=places))
