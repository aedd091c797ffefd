"""Evidence from raw runs: paired significance against full_retrain and continual metrics.

Inputs are the records `report.collect` builds (one per method and seed, with the run folder);
outputs are long tables the report formats. See incbench/stats.py for the definitions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incbench import stats

REFERENCE = "full_retrain"
TESTED = ("ndcg@10", "recall@10")
ALPHA = 0.05


def _per_user(folder: Path) -> pd.DataFrame:
    path = folder / "per_user.parquet"
    return (
        pd.read_parquet(path, columns=["window", "user_idx", *TESTED])
        if path.exists()
        else pd.DataFrame()
    )


def significance(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (method, window, metric): pairs, mean difference, p, Holm p, verdict.

    A run that failed part-way still contributes the windows it was evaluated on."""
    ok = [r for r in records if r["status"] in ("ok", "failed")]
    reference = {r["seed"]: _per_user(r["folder"]) for r in ok if r["method"] == REFERENCE}
    if not reference:
        return pd.DataFrame()
    rows = []
    for rec in ok:
        if rec["method"] == REFERENCE or rec["seed"] not in reference:
            continue
        merged = _per_user(rec["folder"]).merge(
            reference[rec["seed"]], on=["window", "user_idx"], suffixes=("", "_ref")
        )
        merged["seed"] = rec["seed"]
        rows.append(merged.assign(method=rec["method"]))
    if not rows:
        return pd.DataFrame()
    pairs = pd.concat(rows, ignore_index=True)
    out = []
    for (window, metric), group in _by_window_metric(pairs):
        pvals, info = {}, {}
        for method_name, g in group.groupby("method", sort=False):
            a, b = g[metric].to_numpy(), g[f"{metric}_ref"].to_numpy()
            pvals[method_name] = stats.wilcoxon(a, b)
            info[method_name] = (len(g), float(np.nanmean(a - b)))
        adjusted = stats.holm(pvals)
        for method_name, p in pvals.items():
            n, diff = info[method_name]
            significant = adjusted[method_name] < ALPHA
            verdict = ("better" if diff > 0 else "worse") if significant else "n.s."
            out.append({"method": method_name, "window": int(window), "metric": metric, "pairs": n,
                        "mean_diff": diff, "p": p, "p_holm": adjusted[method_name],
                        "verdict": verdict})  # fmt: skip
    return pd.DataFrame(out)


def _by_window_metric(pairs: pd.DataFrame):
    for window, g in pairs.groupby("window", sort=True):
        for metric in TESTED:
            yield (window, metric), g


def marks(sig: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Cell marks for the quality table: ▲k / ▼k = significantly better / worse than
    full_retrain in k windows."""
    out: dict[tuple[str, str], str] = {}
    if sig.empty:
        return out
    for (method_name, metric), g in sig.groupby(["method", "metric"], sort=False):
        up, down = int((g["verdict"] == "better").sum()), int((g["verdict"] == "worse").sum())
        out[(method_name, metric)] = " ".join(
            s for s in (f"▲{up}" * bool(up), f"▼{down}" * bool(down)) if s
        )
    return out


def continual(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per record: forgetting, BWT, next-window NDCG@10 by window, gap to full_retrain."""
    reference = {r["seed"]: r["by_window"] for r in records
                 if r["method"] == REFERENCE and r["status"] == "ok"}  # fmt: skip
    for rec in records:
        if rec["status"] != "ok":
            continue
        R = rec["retention"]
        rec["forgetting"] = stats.forgetting(R)
        rec["bwt"] = stats.bwt(R)
        curve = rec["by_window"]
        for t, value in enumerate(curve, start=1):
            rec[f"w{t}"] = value
        ref = reference.get(rec["seed"])
        if ref is not None:
            gaps = [a - b for a, b in zip(curve, ref) if a is not None and b is not None]
            rec["gap_to_full_retrain"] = float(np.mean(gaps)) if gaps else None
            for t, gap in enumerate(gaps, start=1):
                rec[f"gap_w{t}"] = gap
    return records
