"""Downloading the public datasets that the preparation recipes read, and checking what arrives.

``nextitem download NAME --out DIR`` fetches a dataset's files into DIR; ``nextitem download --list``
shows every dataset with its official address, file names, size, sha256 and terms.

A file is streamed to ``DIR/FILE.part`` and renamed to ``DIR/FILE`` only once its size and sha256
(where the registry pins one) check out, so DIR never holds a half-written or unverified file under
the final name. A broken-off transfer keeps the ``.part``; the next run resumes it with an HTTP Range
request where the server allows that, and starts over where it does not. A file already in place is
checked, not fetched again. Datasets behind a login or a form (Kaggle, Google Drive, a data
agreement) cannot be fetched by a program: for those the command says what to do and where to put
the files, and checks them once they are there.

Checksums: only the ones known for certain are pinned (MovieLens). For the others the command
prints the sha256 it computed, so that a user can compare it with the publisher's and pin it.

    >>> download("ml-1m", "data/raw")  # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from tqdm import tqdm

from ..config import ConfigError, suggest
from .io import DataError

CHUNK = 1 << 20  # bytes per read: few system calls, little memory
USER_AGENT = "nextitem-download/0.1 (+python urllib)"


class DownloadError(DataError):
    """A file could not be fetched or did not check out; the message names the address and what to do."""


class ManualDownloadRequired(DownloadError):
    """A dataset that a person has to fetch (a login, a form); the message lists the steps."""


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str | None = None        # None: only reachable by hand (see Dataset.manual)
    size: int | None = None       # bytes; None where not known for certain
    sha256: str | None = None     # None where not known for certain: never a guessed value
    archive: bool = False         # --extract unpacks it
    optional: bool = False        # a dataset is complete without it


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    files: tuple[RemoteFile, ...]
    page: str                         # the official page: terms, citation, other files
    terms: str
    recipes: tuple[str, ...] = ()     # the ``nextitem prepare`` recipes that read these files
    manual: tuple[str, ...] = ()      # steps a person must take; empty: fetched by the command
    access: str = ""                  # why by hand, in a few words ("a Kaggle login"); "" for a direct download
    note: str = ""


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_ML_TERMS = ("GroupLens licence (README in the archive): research use, no redistribution without permission, "
             "cite Harper & Konstan, ACM TiiS 2015")
_AMAZON14 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_AMAZON14_TERMS = "research use; cite the papers the data page lists (McAuley et al.)"
_AMAZON18 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/"
_KAGGLE_STEPS = ("Sign in to Kaggle (a free account) and open {page}.",
                 "Download the data with the Download button, or with the Kaggle API: "
                 "`kaggle datasets download {slug}` (needs the token in ~/.kaggle/kaggle.json).",
                 "Unpack the archive.")


def _kaggle(page: str) -> tuple[str, ...]:
    slug = page.split("/datasets/", 1)[1]
    return tuple(step.format(page=page, slug=slug) for step in _KAGGLE_STEPS)


_RSC15_PAGE = "https://www.kaggle.com/datasets/chadgostopp/recsys-challenge-2015"
_REES46_PAGE = "https://www.kaggle.com/datasets/mkechinov/ecommerce-behavior-data-from-multi-category-store"
_RR_PAGE = "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset"
_COVEO_PAGE = "https://github.com/coveooss/SIGIR-ecom-data-challenge"
_DIGI_PAGE = "https://competitions.codalab.org/competitions/11161"

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    # ---- the session datasets of the GRU4Rec comparison: all behind a login or a form ----
    Dataset("yoochoose", "RecSys Challenge 2015 (YOOCHOOSE) click sessions",
            (RemoteFile("yoochoose-clicks.dat"), RemoteFile("yoochoose-test.dat", optional=True)),
            _RSC15_PAGE, "RecSys Challenge 2015 data terms (see the page and the README in the archive)",
            recipes=("yoochoose", "rsc15"), manual=_kaggle(_RSC15_PAGE), access="a Kaggle login",
            note="rsc15 reads yoochoose-clicks.dat only; yoochoose reads it and yoochoose-test.dat"),
    Dataset("rees46", "REES46 multi-category store events, October and November 2019",
            (RemoteFile("2019-Oct.csv"), RemoteFile("2019-Nov.csv")),
            _REES46_PAGE, "as stated on the Kaggle page (REES46 Open CDP data; credit REES46)",
            recipes=("rees46",), manual=_kaggle(_REES46_PAGE), access="a Kaggle login"),
    Dataset("retailrocket", "RetailRocket e-commerce events",
            (RemoteFile("events.csv"),), _RR_PAGE, "CC BY-NC-SA 4.0",
            recipes=("retailrocket",), manual=_kaggle(_RR_PAGE), access="a Kaggle login"),
    Dataset("coveo", "Coveo SIGIR eCom 2021 Data Challenge browsing sessions",
            (RemoteFile("browsing_train.csv"),), _COVEO_PAGE,
            "Coveo's research data licence, accepted through the form (see the repository README)",
            recipes=("coveo",), access="a form (data agreement) that mails a download link",
            manual=(f"Open {_COVEO_PAGE}, read the terms and fill in the form its README links to; "
                    "a download link is sent to you.",
                    "Download the archive from that link and unpack it (browsing_train.csv is in it).")),
    Dataset("diginetica", "CIKM Cup 2016 (DIGINETICA) item views",
            (RemoteFile("train-item-views.csv"),), _DIGI_PAGE,
            "CIKM Cup 2016 competition terms (see the page)", recipes=("diginetica",),
            access="a Google Drive download from the competition page",
            manual=(f"Open {_DIGI_PAGE} (CIKM Cup 2016, track 2) and follow its data link (a Google Drive folder).",
                    "Download the training archive (dataset-train-diginetica.zip) and unpack it.")),
    # ---- user histories: direct downloads ----
    Dataset("ml-100k", "MovieLens 100K ratings",
            (RemoteFile("ml-100k.zip", _GROUPLENS + "ml-100k.zip", 4_924_029,
                        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", archive=True),),
            "https://grouplens.org/datasets/movielens/100k/", _ML_TERMS,
            note="its u.data is not a file the movielens recipe reads: use recbole-ml-100k with the recbole recipe"),
    Dataset("ml-1m", "MovieLens 1M ratings",
            (RemoteFile("ml-1m.zip", _GROUPLENS + "ml-1m.zip", 5_917_549,
                        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", archive=True),),
            "https://grouplens.org/datasets/movielens/1m/", _ML_TERMS, recipes=("movielens",),
            note="the recipe reads ml-1m/ratings.dat and ml-1m/movies.dat"),
    Dataset("ml-20m", "MovieLens 20M ratings",
            (RemoteFile("ml-20m.zip", _GROUPLENS + "ml-20m.zip", 198_702_078,
                        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", archive=True),),
            "https://grouplens.org/datasets/movielens/20m/", _ML_TERMS, recipes=("movielens",),
            note="the recipe reads ml-20m/ratings.csv and ml-20m/movies.csv"),
    Dataset("recbole-ml-100k", "MovieLens 100K as RecBole atomic files (.inter, .item, .user)",
            (RemoteFile("ml-100k.zip", "https://recbole.s3-accelerate.amazonaws.com/ProcessedDatasets/MovieLens/ml-100k.zip",
                        archive=True),),
            "https://recbole.io/dataset_list.html", _ML_TERMS + " (RecBole's conversion of it)", recipes=("recbole",)),
    Dataset("amazon-beauty", "Amazon reviews 2014, Beauty: ratings and item metadata",
            (RemoteFile("ratings_Beauty.csv", _AMAZON14 + "ratings_Beauty.csv"),
             RemoteFile("meta_Beauty.json.gz", _AMAZON14 + "meta_Beauty.json.gz")),
            "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html", _AMAZON14_TERMS, recipes=("amazon",),
            note="the recipe reads the metadata compressed; no need to unpack it"),
    Dataset("amazon-games", "Amazon reviews 2014, Video Games: ratings and item metadata",
            (RemoteFile("ratings_Video_Games.csv", _AMAZON14 + "ratings_Video_Games.csv"),
             RemoteFile("meta_Video_Games.json.gz", _AMAZON14 + "meta_Video_Games.json.gz")),
            "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html", _AMAZON14_TERMS, recipes=("amazon",),
            note="the recipe reads the metadata compressed; no need to unpack it"),
    Dataset("amazon18-games", "Amazon reviews 2018, Video Games: ratings and item metadata",
            (RemoteFile("Video_Games.csv", _AMAZON18 + "categoryFilesSmall/Video_Games.csv"),
             RemoteFile("meta_Video_Games.json.gz", _AMAZON18 + "metaFiles2/meta_Video_Games.json.gz")),
            "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/",
            "research use; cite Ni, Li & McAuley, EMNLP 2019, as the data page asks", recipes=("amazon",),
            note="the 2018 ratings-only file has no header and orders its columns item,user,rating,timestamp "
                 "(the 2014 files: user,item,...); give it the header line item,user,rating,timestamp "
                 "before preparing it, or users and items are swapped"),
)}

ALIASES = {"rsc15": "yoochoose"}  # recipe names that share another dataset's files


def dataset_names(registry: Mapping[str, Dataset] | None = None) -> list[str]:
    return list(DATASETS if registry is None else registry)


def get_dataset(name: str, registry: Mapping[str, Dataset] | None = None) -> Dataset:
    """The registry entry called ``name`` (or an alias); a ConfigError suggesting the nearest name otherwise."""
    registry = DATASETS if registry is None else registry
    key = name if name in registry else ALIASES.get(name, name)
    if key not in registry:
        raise ConfigError(f"unknown dataset {name!r}.{suggest(name, list(registry) + list(ALIASES))} "
                          f"Known datasets: {', '.join(registry)} (nextitem download --list describes them).")
    return registry[key]


def sha256_of(path: str, progress: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f, _bar(os.path.getsize(path), f"sha256 {os.path.basename(path)}", progress) as bar:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _bar(total, desc: str, progress: bool, initial: int = 0):
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def _unpinned(name: str, got: str) -> str:
    return (f"{name}: sha256 {got}. No checksum is pinned for this file, so only its size could be checked: "
            f"compare it with the publisher's checksum if there is one, and pin it in nextitem/data/download.py.")


def _check_present(remote: RemoteFile, path: str, log: Callable[[str], None], progress: bool) -> None:
    """A file already at ``path``: raise if it is not the registry's file; it is never replaced silently."""
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{path} is already there but has {size:,} bytes, not the {remote.size:,} of "
                            f"{remote.url or remote.filename}: another version or a broken copy. "
                            f"Move or delete it and run the command again.")
    if remote.sha256 is None:
        log(f"{path}: already there ({size:,} bytes); kept without a checksum check (none is pinned for it).")
        return
    got = sha256_of(path, progress)
    if got != remote.sha256.lower():
        raise DownloadError(f"{path} is already there but its sha256 is {got}, not the expected {remote.sha256} "
                            f"of {remote.url or remote.filename}. Move or delete it and run the command again.")
    log(f"{path}: already there, sha256 verified.")


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part does not fit the file on the server: start over
            return None
        raise DownloadError(f"{url}: the server answered {e.code} {e.reason}. The file may have moved or need a "
                            f"login: check the dataset's page, and pass a working address with --url.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: could not connect ({reason}). Check the network connection "
                            f"(and https_proxy if you are behind a proxy), then run the command again.") from None


def _resumed_from(response) -> int | None:
    """The first byte of a 206 answer (Content-Range: bytes START-END/TOTAL); None for a whole-file answer."""
    if response.status != 206:
        return None
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1  # a range we cannot read: not usable for appending


def fetch(remote: RemoteFile, out_dir: str, *, progress: bool = True, log: Callable[[str], None] = print,
          timeout: float = 60.0) -> str:
    """Download ``remote`` into ``out_dir`` (checked, renamed into place); return its path.

    A file already in place is checked instead of fetched. Raises DownloadError naming the
    address: a server error, a broken-off transfer (the .part is kept for a resume), a size or
    sha256 mismatch (the .part is deleted).
    """
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, remote.filename)
    if os.path.exists(final):
        _check_present(remote, final, log, progress)
        return final
    if remote.url is None:
        raise ManualDownloadRequired(f"{remote.filename} has no download address; put it into {out_dir} by hand.")
    url, part = remote.url, final + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if remote.size is not None and have >= remote.size:
        _remove(part)  # as long as the whole file or longer: nothing sensible to resume
        have = 0
    response = _open(url, have, timeout)
    if response is None:
        _remove(part)
        have, response = 0, _open(url, 0, timeout)
    with response:
        start = _resumed_from(response)
        if have and start != have:
            if start is not None:  # a range we did not ask for: ask again for the whole file
                response.close()
                _remove(part)
                return fetch(remote, out_dir, progress=progress, log=log, timeout=timeout)
            have = 0  # the server ignores Range and sends the whole file: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if remote.size is not None and total is not None and total != remote.size:
            _remove(part)
            raise DownloadError(f"{url}: size mismatch: the server offers {total:,} bytes, the registry expects {remote.size:,}. "
                                f"The file on the server has changed (or the address is wrong); nothing was kept.")
        got, digest = have, hashlib.sha256()
        if have:
            log(f"{remote.filename}: resuming at byte {have:,}")
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    digest.update(chunk)
        with open(part, "ab" if have else "wb") as f, _bar(total, remote.filename, progress, have) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
                    if remote.size is not None and got > remote.size:
                        break  # reported below, with the .part deleted
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(_broken_off(url, got, total, part, e)) from None
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name says the file is complete
    if total is not None and got < total:
        raise DownloadError(_broken_off(url, got, total, part, "the connection closed early"))
    if remote.size is not None and got != remote.size:
        _remove(part)
        raise DownloadError(f"{url}: size mismatch: got {got:,} bytes, the registry expects {remote.size:,}; the file was deleted. "
                            f"The file on the server has changed or the address is wrong.")
    sha = digest.hexdigest()
    if remote.sha256 is not None and sha != remote.sha256.lower():
        _remove(part)
        raise DownloadError(f"{url}: sha256 mismatch: expected {remote.sha256}, got {sha}; the file was deleted. "
                            f"Run the command again; if it happens again the file on the server differs from "
                            f"the one the registry pins.")
    os.replace(part, final)
    log(f"{final}: {got:,} bytes, sha256 verified." if remote.sha256 else _unpinned(final, sha))
    return final


def _broken_off(url: str, got: int, total, part: str, why) -> str:
    of = f" of {total:,}" if total is not None else ""
    return (f"{url}: the transfer stopped after {got:,}{of} bytes ({why}). Nothing was written under the final "
            f"name; {part} is kept: run the command again to resume it.")


def extract(archive: str, out_dir: str, log: Callable[[str], None] = print) -> list[str]:
    """Unpack a .zip, .tar(.gz)/.tgz or .gz file into ``out_dir``; return the top-level paths it holds.

    Unpacks into a temporary folder beside the results and renames each top-level entry into
    place, so an interrupted run leaves no half-unpacked file or folder. Entries already in
    ``out_dir`` are kept as they are.
    """
    name = os.path.basename(archive)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=".extract-")
    try:
        try:
            if name.endswith(".zip") or zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)  # zipfile drops absolute paths and '..' from member names
            elif name.endswith((".tar", ".tar.gz", ".tgz")):
                with tarfile.open(archive) as t:
                    if hasattr(tarfile, "data_filter"):
                        t.extractall(tmp, filter="data")  # no links or paths out of tmp
                    else:
                        _safe_members(t, archive)
                        t.extractall(tmp)
            elif name.endswith(".gz"):
                with gzip.open(archive, "rb") as src, open(os.path.join(tmp, name[:-3]), "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            elif name.endswith(".7z"):
                raise DownloadError(f"{archive}: 7z archives cannot be unpacked with the standard library; "
                                    f"unpack it with `7z x {archive} -o{out_dir}`.")
            else:
                raise DownloadError(f"{archive}: not an archive nextitem unpacks (.zip, .tar, .tar.gz, .tgz, .gz).")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(f"{archive}: could not be unpacked ({e}); the archive is damaged: delete it and "
                                f"download it again.") from None
        paths = []
        for entry in sorted(os.listdir(tmp)):
            target = os.path.join(out_dir, entry)
            if os.path.exists(target):
                log(f"{target}: already there, kept (delete it to unpack {name} again).")
            else:
                os.replace(os.path.join(tmp, entry), target)
                log(f"{target}: unpacked from {name}.")
            paths.append(target)
        return paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_members(t: tarfile.TarFile, archive: str) -> None:
    for m in t.getmembers():
        if m.name.startswith(("/", "\\")) or ".." in m.name.replace("\\", "/").split("/") or m.issym() or m.islnk():
            raise DownloadError(f"{archive}: member {m.name!r} would be written outside the folder; not unpacked.")


def manual_steps(dataset: Dataset, out_dir: str) -> str:
    """What a person has to do to get ``dataset`` into ``out_dir``."""
    lines = [f"{dataset.name} ({dataset.title}) cannot be downloaded by nextitem: it needs {dataset.access or 'a person'}.",
             "To get it:"]
    lines += [f"  {i}. {step}" for i, step in enumerate(dataset.manual, 1)]
    lines.append(f"  {len(dataset.manual) + 1}. Put these files into {os.path.abspath(out_dir)}:")
    lines += [f"       {f.filename}{' (optional)' if f.optional else ''}" for f in dataset.files]
    lines.append(f"Then run `nextitem download {dataset.name} --out {out_dir}` again: it checks the files.")
    lines.append(f"Terms: {dataset.terms}.")
    return "\n".join(lines)


def download(dataset: str | Dataset, out_dir, *, registry: Mapping[str, Dataset] | None = None, url: str | None = None,
             extract_archives: bool = False, progress: bool = True, log: Callable[[str], None] = print,
             timeout: float = 60.0) -> list[str]:
    """Fetch (or check, where already there) the files of ``dataset`` into ``out_dir``; return their paths.

    ``dataset`` is a name in ``registry`` (default: DATASETS) or a Dataset. ``url`` replaces the
    address of a one-file dataset (a mirror, or a link a form sent you); its pinned size and
    checksum still apply. With ``extract_archives``, the archives are unpacked too and the paths
    returned are what they hold. Raises ManualDownloadRequired, with the steps, for a dataset that
    needs a person and whose files are not in ``out_dir`` yet.
    """
    ds = dataset if isinstance(dataset, Dataset) else get_dataset(dataset, registry)
    out_dir = os.fspath(out_dir)
    if url is not None:
        if len(ds.files) != 1:
            raise ConfigError(f"--url replaces the address of a one-file dataset; {ds.name} has "
                              f"{len(ds.files)} files: {', '.join(f.filename for f in ds.files)}.")
        ds = replace(ds, files=(replace(ds.files[0], url=url),), manual=())
    missing = [f for f in ds.files if f.url is None and not f.optional
               and not os.path.exists(os.path.join(out_dir, f.filename))]
    if missing:
        raise ManualDownloadRequired(manual_steps(ds, out_dir))
    paths = []
    for remote in ds.files:
        if remote.url is None and not os.path.exists(os.path.join(out_dir, remote.filename)):
            continue  # an optional file that is not there
        path = fetch(remote, out_dir, progress=progress, log=log, timeout=timeout)
        paths += extract(path, out_dir, log) if extract_archives and remote.archive else [path]
    return paths


# ---- the command line: nextitem download ----

def describe(ds: Dataset) -> str:
    lines = [f"{ds.name}  {ds.title}",
             f"  recipe   {', '.join(ds.recipes) or '-'}",
             f"  page     {ds.page}",
             f"  terms    {ds.terms}",
             f"  access   {f'by hand, {ds.access} (the command prints the steps)' if ds.manual else 'direct download'}"]
    for f in ds.files:
        size = f"{f.size:,} bytes" if f.size is not None else "size not pinned"
        lines.append(f"  file     {f.filename}{' (optional)' if f.optional else ''}  {size}  "
                     f"sha256 {f.sha256 or 'not pinned'}")
        if f.url:
            lines.append(f"           {f.url}")
    if ds.note:
        lines.append(f"  note     {ds.note}")
    return "\n".join(lines)


def add_command(subparsers) -> None:
    """Register ``nextitem download`` on the main parser's subcommands."""
    d = subparsers.add_parser("download", help="download a public dataset's raw files and check them (--list shows them)",
                              description="Download a public dataset's raw files into --out, checking size and sha256; "
                              "for datasets behind a login or a form, print the steps. Datasets: " + ", ".join(DATASETS) + ".")
    d.add_argument("name", nargs="?", help="dataset name (see --list)")
    d.add_argument("--out", metavar="DIR", help="folder for the files")
    d.add_argument("--list", action="store_true", help="list the datasets: address, files, size, sha256, terms")
    d.add_argument("--extract", action="store_true", help="also unpack the .zip archives")
    d.add_argument("--url", help="download a one-file dataset from this address instead (a mirror, or a link a form sent you)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=run_command)


def run_command(args: argparse.Namespace, registry: Mapping[str, Dataset] | None = None) -> int:
    registry = DATASETS if registry is None else registry
    if args.list:
        print("\n\n".join(describe(ds) for ds in registry.values()))
        return 0
    if not args.name or not args.out:
        raise ConfigError("give a dataset name and --out DIR (nextitem download NAME --out DIR), or --list.")
    try:
        paths = download(args.name, args.out, registry=registry, url=args.url, extract_archives=args.extract,
                         progress=not args.quiet)
    except ManualDownloadRequired as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.name}: {len(paths)} file(s) ready in {args.out}")
    return 0
