"""Run summaries from per-window rows: the headline (windows 2..N) and window 1 (shared M0)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from incbench import metric_registry

QUALITY_FAMILIES = ("ranking", "classification", "count")  # what a summary's next_window holds

COST_COLUMNS = metric_registry.COST  # per-window cost figures, averaged into cost.json


def quality_summary(table: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """(windows 2..N, window 1) means of every per-window quality metric of `table`.

    The headline averages windows 2..N: window 1 evaluates M0, shared by every method, and is
    reported once on its own. With a single window, the headline is that window.
    """
    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        return {}, {}
    names = [c for c in ok.columns if metric_registry.known(c)
             and metric_registry.get(c).family in QUALITY_FAMILIES]  # fmt: skip
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(ok[c])]
    late = ok[ok["window"] >= 2] if ok["window"].max() >= 2 else ok
    first = ok[ok["window"] == 1]
    mean = lambda part: {m: clean(float(part[m].mean())) for m in numeric}  # noqa: E731
    return mean(late), (mean(first) if len(first) else {})


def clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
