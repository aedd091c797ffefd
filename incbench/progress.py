"""Progress on stderr for long stages — only when stderr is a terminal (quiet in CI and logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
    if not sys.stderr.isatty():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with transformers; without it, no bar
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)
