"""One registry of every number the harness reports: name, direction, family, format.

Evaluation (evaluate.py, summary.py), the report (report.py, tables.py, plots.py), `compare`
and the statistics (analysis.py) take metric names from here, so a metric is added, renamed or
re-labelled in one place. Keys in run summaries may carry slice prefixes, outermost first:

    ndcg@10                      every ranked user of the window
    warm_user:ndcg@10            users known before the window (the headline)
    cold_user:ndcg@10            users first seen in the window
    cold_item:ndcg@10            only the window's new items count as hits
    warm_user:cold_item:ndcg@10  both

Families: `ranking` and `classification` (quality, compared within float tolerance and seed
noise), `count` (users, rows: compared exactly), `cost` (the meter's figures per update),
`estimate` (the report's derived figures: $, kWh, ratios), `latency` (serving, per backbone).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # the key in summaries and per-window tables, without slice prefixes
    label: str  # column header in every table
    higher_is_better: bool | None  # None: not a quality (counts, costs)
    family: str  # ranking | classification | count | cost | estimate | latency
    digits: int  # decimals in tables


KS = (10, 20)  # ranking cut-offs (metrics.py computes these)
_RANKING = {"hr": "HR", "recall": "Recall", "precision": "Precision", "f1": "F1", "ndcg": "NDCG",
            "mrr": "MRR"}  # fmt: skip
_DEFS = [
    *(
        Metric(f"{k}@{cut}", f"{label}@{cut}", True, "ranking", 4)
        for cut in KS
        for k, label in _RANKING.items()
    ),  # fmt: skip
    Metric("accuracy", "Accuracy", True, "classification", 4),
    Metric("precision", "Precision", True, "classification", 4),
    Metric("recall", "Recall", True, "classification", 4),
    Metric("f1", "F1", True, "classification", 4),
    Metric("auc", "AUC", True, "classification", 4),
    Metric("gauc", "GAUC", True, "classification", 4),
    # mean over ranked users of each user's AUC on its rated rows: the per-user unit of AUC
    Metric("user_auc", "User AUC", True, "classification", 4),
    Metric("logloss", "LogLoss", False, "classification", 4),
    Metric("majority_accuracy", "Majority accuracy", None, "classification", 4),
    Metric("majority_f1", "Majority F1", None, "classification", 4),
    Metric("users_ranked", "Users ranked/window", None, "count", 0),
    Metric("warm_users", "Users/window", None, "count", 0),
    Metric("cold_users", "Cold users/window", None, "count", 0),
    Metric("rows", "Rows/window", None, "count", 0),
    Metric("update_wall_s", "Update s", None, "cost", 3),
    Metric("update_cpu_s", "CPU s", None, "cost", 3),
    Metric("peak_mem_mb", "Peak MB", None, "cost", 0),
    Metric("peak_mem_increase_mb", "Peak +MB", None, "cost", 1),
    Metric("update_gflops", "GFLOPs", None, "cost", 2),
    Metric("trainable_params", "Trainable params", None, "cost", 0),
    Metric("changed_params", "Changed params", None, "cost", 0),
    Metric("delta_bytes", "Delta bytes", None, "cost", 0),
    Metric("index_rebuild_ms", "Index rebuild ms", None, "cost", 2),
    Metric("train_rows", "Train rows", None, "cost", 0),
    Metric("fit_steps", "Steps/update", None, "cost", 0),
    Metric("other_cpu_share", "Others' CPU share", None, "cost", 3),
    Metric("steal_share", "CPU steal share", None, "cost", 3),
    Metric("loadavg_1m", "Load average", None, "cost", 2),
    # derived by the report (collect.add_estimates) from the measured figures above
    Metric("delta_kb", "Delta KB", None, "estimate", 1),
    Metric("usd_per_update", "$ / update (est.)", None, "estimate", 6),
    Metric("kwh_per_update", "kWh / update (est.)", None, "estimate", 6),
    Metric("cost_vs_full_retrain", "Cost × full_retrain", None, "estimate", 3),
    Metric("cpu_vs_full_retrain", "CPU × full_retrain", None, "estimate", 3),
    Metric("cost_vs_fine_tune", "Cost × fine_tune", None, "estimate", 3),
    Metric("busy_pct", "Others' CPU % (max)", None, "estimate", 0),
    # serving (serving.py), once per backbone on M0
    Metric("serve_p50_ms", "p50 ms", None, "latency", 3),
    Metric("serve_p95_ms", "p95 ms", None, "latency", 3),
    Metric("serve_p99_ms", "p99 ms", None, "latency", 3),
    Metric("serve_users_per_s", "Users/s (batched)", None, "latency", 0),
    Metric("serve_mflops_per_request", "MFLOPs / request", None, "latency", 3),
]
METRICS: dict[str, Metric] = {m.name: m for m in _DEFS}

SLICES = {"warm_user": "", "cold_user": "cold users", "cold_item": "cold items",
          "warm_item": "warm items"}  # fmt: skip
HEADLINE = "warm_user:ndcg@10"  # tables' first column, tuning's objective, calibration, plots
TESTED = ("ndcg@10", "recall@10")  # per-user metrics behind the significance marks
SLICED = ("ndcg@10", "recall@10", "f1@10", "hr@10", "mrr@10", "ndcg@20", "recall@20")
ITEM_SLICED = ("ndcg@10", "recall@10")  # also reported on new / known items only
RETENTION = ("ndcg@10", "recall@10", "auc")  # R[t][j] columns
RETENTION_MATRICES = ("ndcg@10", "auc")  # summary.json's retention matrices
COST = tuple(m.name for m in _DEFS if m.family == "cost")  # the meter's, per update


def split(key: str) -> tuple[tuple[str, ...], str]:
    """('warm_user', 'cold_item'), 'ndcg@10' for 'warm_user:cold_item:ndcg@10'."""
    *slices, name = key.split(":")
    return tuple(slices), name


def get(key: str) -> Metric:
    """The registered metric behind a (possibly sliced) key; KeyError names the fix."""
    slices, name = split(key)
    if name not in METRICS or any(s not in SLICES for s in slices):
        raise KeyError(f"{key!r} is not a registered metric: add it to incbench/metric_registry.py")
    return METRICS[name]


def known(key: str) -> bool:
    try:
        get(key)
    except KeyError:
        return False
    return True


def label(key: str) -> str:
    """'NDCG@10' for the headline slice, 'NDCG@10 cold users' for another."""
    slices, _ = split(key)
    words = " ".join(SLICES[s] for s in slices if SLICES[s])
    return f"{get(key).label} {words}".strip()


def column(key: str, digits: int | None = None, title: str | None = None):
    """A table column (key, header, decimals) with the registry's defaults."""
    m = get(key)
    return (key, title or label(key), m.digits if digits is None else digits)
