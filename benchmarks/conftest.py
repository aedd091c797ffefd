"""Shared benchmark fixtures: the ml-100k split (reused from data/ if present)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory):
    """(project root, Windows) for ml-100k under the default protocol."""
    from incbench.fetch import fetch_named
    from incbench.split import load_windows, split_named

    if (REPO / "data/windows/ml-100k/manifest.json").exists():
        return REPO, load_windows(REPO / "data/windows/ml-100k")
    root = tmp_path_factory.mktemp("ml100k")
    for item in ("params.yaml", "methods", "datasets"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    fetch_named("ml-100k", root)
    split_named("ml-100k", root)
    return root, load_windows(root / "data/windows/ml-100k")
