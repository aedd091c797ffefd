"""The typed run record the report works from: one per (method, seed) of the grid and one per
reference row, built once by `collect` from the run folder (summary, cost, provenance and
per-user rows are read there and nowhere else).

What the report derives ($ and kWh, ratios to the references, forgetting, gaps) goes into
`derived`, filled by named passes (`collect.add_estimates`, `analysis.continual`); the fields
read from disk are never rewritten. Rendering code reads any value by key, the same way for
every source:

    record["warm_user:ndcg@10"]   next-window metric (windows 2..N)      record.metrics
    record["update_wall_s"]       the meter's figure (cost.json)          record.cost
    record["cost_vs_full_retrain"], record["forgetting"]   derived       record.derived
    record["status"], record["seed"], …                                   the fields
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

_MISSING = object()


@dataclasses.dataclass(eq=False)
class RunRecord:
    method: str
    seed: int
    kind: str  # "method" or "reference"
    status: str  # ok | failed | not_applicable | skipped | missing
    reason: str = ""
    version: str | None = None
    folder: Path | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # next_window, 2..N
    window_1: dict[str, Any] = dataclasses.field(default_factory=dict)  # M0 on window 1
    cost: dict[str, Any] = dataclasses.field(default_factory=dict)  # cost.json, measured
    by_window: list[float | None] = dataclasses.field(default_factory=list)  # headline per window
    retention: list | None = None  # R[t][j] of the headline ranking metric
    per_user: pd.DataFrame | None = None  # per_user.parquet: the unit of significance tests
    tuning: str | None = None  # "N trials" | "defaults" | "–"
    tuning_record: dict | None = None  # best.json
    capped_windows: int = 0  # windows a compute cap (budget max_steps) cut
    capped_steps: int = 0
    budget_windows: int = 0  # windows that used up the protocol's step budget
    guard_windows: int | None = None  # update_guard: windows that kept M_(t-1) (None: no guard)
    guard_undefined: int = 0  # update_guard: windows whose holdout AUC was undefined (kept M_t)
    device: str | None = None
    device_name: str | None = None
    serving_m0: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    derived: dict[str, Any] = dataclasses.field(default_factory=dict)  # the report's passes

    def derive(self, **values: Any) -> None:
        """Add the report's derived values; a name that is already a metric, a cost figure or
        a field is refused, so nothing read from disk is ever shadowed."""
        clash = [k for k in values if k in self.metrics or k in self.cost or k in _FIELDS]
        if clash:
            raise ValueError(f"derived values {clash} would shadow what the run recorded")
        self.derived.update(values)

    def get(self, key: str, default: Any = None) -> Any:
        """A value by key: derived, then metrics, then cost, then a field of the record."""
        for source in (self.derived, self.metrics, self.cost):
            if key in source:
                return source[key]
        if key in _FIELDS:
            return getattr(self, key)
        return default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING


_FIELDS = {f.name for f in dataclasses.fields(RunRecord)}
