"""Evidence from raw runs: paired significance against full_retrain and continual metrics.

Inputs are the records `collect.collect` builds (one per method and seed, with its per-user rows);
outputs are long tables the report formats. See incbench/stats.py for the definitions.

Significance (DESIGN.md §4, headline = warm users, windows 2..N; window 1 evaluates the shared
M0 for every method and is never tested; cold users are never tested):
1. Per run (method, seed), per warm user: the mean of the per-user metric over the windows
   2..N in which that user was ranked as a warm user.
2. Seeds: those both the method and full_retrain have; users: those with a value in every one
   of these seeds of both methods. Per user, the mean over seeds, for each method — the unit is
   the user, counted once; seeds are never pooled as extra users.
3. Paired Wilcoxon signed-rank test (two-sided, zero differences dropped) of the method's
   seed-averaged per-user values against full_retrain's; effect = mean per-user difference
   (method − full_retrain) with a 95% t-interval over users.
4. Holm across every headline test (all methods × TESTED metrics): the family behind the
   quality table's ▲/▼ marks. Verdict better/worse where the Holm p < ALPHA, in the direction
   of the signed-rank statistic (W+ − W−), else n.s.
5. Seed spread: the std over seeds of the method's mean over the tested users and of the
   difference of that mean to full_retrain's (seed-matched); NaN (not available) with one seed.
Per-window tests (family "per-window": one window t >= 2 instead of the mean over 2..N, the same
steps otherwise, failed runs contributing the windows they were evaluated on) are a second Holm
family across all their methods × metrics × windows; they appear in the significance table only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from incbench import stats
from incbench.metric_registry import TESTED
from incbench.records import RunRecord

REFERENCE = "full_retrain"
ALPHA = 0.05
FIRST_TESTED = 2  # window 1 evaluates the shared M0: identical for every method
HEADLINE, PER_WINDOW = "headline", "per-window"
COLUMNS = ["family", "method", "metric", "window", "windows", "seeds", "n_users",
           "method_mean", "reference_mean", "mean_diff", "ci95_low", "ci95_high", "p", "p_holm",
           "verdict", "seed_std_method", "seed_std_diff", "seed_consistent"]  # fmt: skip

Runs = dict[str, dict[Any, pd.DataFrame]]  # method -> seed -> warm per-user rows


def _warm(rec: dict[str, Any]) -> pd.DataFrame:
    """Warm users' per-user rows of windows >= FIRST_TESTED (none if the run wrote none)."""
    df = rec.get("per_user")
    if df is None or not len(df):
        return pd.DataFrame(columns=["window", "user_idx", "cold_user", *TESTED, "user_auc"])
    return df[~df["cold_user"].astype(bool) & (df["window"] >= FIRST_TESTED)]


def _runs(records: list[dict[str, Any]], statuses: tuple[str, ...]) -> Runs:
    out: Runs = {}
    for rec in records:
        if rec["status"] in statuses:
            out.setdefault(rec["method"], {})[rec["seed"]] = _warm(rec)
    return out


def user_values(rows: pd.DataFrame, metric: str, window: int | None = None) -> pd.Series:
    """Per user (index user_idx): the metric in `window`, or with None its mean over every
    window in `rows`; users without a value are dropped."""
    if metric not in rows:  # a run written before the metric existed: no value
        return pd.Series(dtype=float)
    if window is not None:
        rows = rows[rows["window"] == window]
    return rows.groupby("user_idx")[metric].mean().dropna()


def paired(method: dict[Any, pd.Series], reference: dict[Any, pd.Series]) -> dict | None:
    """One method against the reference, each given as seed -> per-user values: users present
    in every shared seed of both, averaged over seeds, then one Wilcoxon test over users.
    None when the two share no seed or no user."""
    seeds = sorted(set(method) & set(reference))
    if not seeds:
        return None
    users = sorted(set.intersection(*(set(method[s].index) & set(reference[s].index)
                                      for s in seeds)))  # fmt: skip
    if not users:
        return None
    a = pd.DataFrame({s: method[s].loc[users] for s in seeds})  # rows users, columns seeds
    b = pd.DataFrame({s: reference[s].loc[users] for s in seeds})
    a_user, b_user = a.mean(axis=1).to_numpy(), b.mean(axis=1).to_numpy()
    a_seed, b_seed = a.mean(axis=0).to_numpy(), b.mean(axis=0).to_numpy()
    ci = stats.mean_std_ci(a_user - b_user)
    return {"seeds": len(seeds), "n_users": len(users),
            "method_mean": float(a_user.mean()), "reference_mean": float(b_user.mean()),
            "mean_diff": ci["mean"], "ci95_low": ci["ci_low"], "ci95_high": ci["ci_high"],
            "p": stats.wilcoxon(a_user, b_user), "direction": stats.rank_direction(a_user - b_user),
            "seed_std_method": stats.seed_std(a_seed),
            "seed_std_diff": stats.seed_std(a_seed - b_seed),
            "seed_consistent": bool(np.all(np.sign(a_seed - b_seed) == np.sign(ci["mean"])))}  # fmt: skip


def _test(runs: Runs, method: str, metric: str, window: int | None) -> dict | None:
    """A headline (window None: mean over the windows 2..N) or per-window test."""

    def values(name: str) -> dict[Any, pd.Series]:
        series = {seed: user_values(rows, metric, window) for seed, rows in runs[name].items()}
        return {seed: s for seed, s in series.items() if len(s)}  # seeds that reached the window

    result = paired(values(method), values(REFERENCE))
    if result is None:
        return None
    entered = sorted({int(w) for rows in runs[method].values() for w in rows["window"]})
    span = str(window) if window is not None else f"{entered[0]}-{entered[-1]}"
    return {"family": PER_WINDOW if window is not None else HEADLINE, "method": method,
            "metric": metric, "window": window, "windows": span, **result}  # fmt: skip


def adjust(tests: list[dict]) -> list[dict]:
    """Holm across all `tests` (one family); verdict from the adjusted p and the direction."""
    adjusted = stats.holm({i: t["p"] for i, t in enumerate(tests)})
    out = []
    for i, t in enumerate(tests):
        significant = adjusted[i] < ALPHA and t["direction"] != 0
        # a mark also needs the mean difference to agree with the rank test and every seed to
        # agree with it: a difference that flips with the training seed is not the method's
        mean_sign = np.sign(t.get("mean_diff", t["direction"]))
        agrees = mean_sign == t["direction"] and t.get("seed_consistent", True)
        if significant and not agrees:
            verdict = "n.s. (seed-dependent)"
        elif significant and t.get("seeds", 2) < 2:  # users are not replicates of training
            verdict = "n.s. (one seed)"
        else:
            verdict = ("better" if t["direction"] > 0 else "worse") if significant else "n.s."
        out.append({**t, "p_holm": adjusted[i], "verdict": verdict})
    return out


def significance(records: list[dict[str, Any]], tested: tuple[str, ...] = TESTED) -> pd.DataFrame:
    """The headline tests (family "headline", window empty), then the per-window tests
    (family "per-window"), each family Holm-corrected on its own; columns COLUMNS. `tested`:
    the per-user metrics (a preset that leads with AUC adds user_auc: report.tested)."""
    headline_runs = _runs(records, ("ok",))
    window_runs = _runs(records, ("ok", "failed"))
    if REFERENCE not in window_runs:
        return pd.DataFrame()
    methods = [m for m in window_runs if m != REFERENCE]
    headline = [_test(headline_runs, m, metric, None)
                for m in methods if m in headline_runs and REFERENCE in headline_runs
                for metric in tested]  # fmt: skip
    windows = sorted({int(w) for runs in window_runs.values() for rows in runs.values()
                      for w in rows["window"]})  # fmt: skip
    per_window = [_test(window_runs, m, metric, t)
                  for t in windows for m in methods for metric in tested]  # fmt: skip
    rows = adjust([t for t in headline if t]) + adjust([t for t in per_window if t])
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["window"] = out["window"].astype("Int64")
    return out


def marks(sig: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Cell marks for the quality table from the headline tests only: ▲ / ▼ = significantly
    better / worse than full_retrain (Holm across the table's tests); no mark when n.s."""
    if sig.empty:
        return {}
    head = sig[sig["family"] == HEADLINE]
    symbol = {"better": "▲", "worse": "▼"}
    return {(m, metric): symbol[v]
            for m, metric, v in zip(head["method"], head["metric"], head["verdict"])
            if v in symbol}  # fmt: skip


def continual(records: list[RunRecord]) -> list[RunRecord]:
    """Per record: forgetting, BWT, next-window NDCG@10 by window, gap to full_retrain."""
    reference = {r["seed"]: r["by_window"] for r in records
                 if r["method"] == REFERENCE and r["status"] == "ok"}  # fmt: skip
    for rec in records:
        if rec["status"] != "ok":
            continue
        R = rec["retention"]
        derived = {"forgetting": stats.forgetting(R), "bwt": stats.bwt(R)}
        curve = rec["by_window"]
        for t, value in enumerate(curve, start=1):
            derived[f"w{t}"] = value
        ref = reference.get(rec["seed"])
        if ref is not None:  # paired by window; window 1 (the shared M0) left out of the mean
            gaps = {t: a - b for t, (a, b) in enumerate(zip(curve, ref), start=1)
                    if a is not None and b is not None}  # fmt: skip
            late = [g for t, g in gaps.items() if t >= FIRST_TESTED]
            derived["gap_to_full_retrain"] = float(np.mean(late)) if late else None
            for t, gap in gaps.items():
                derived[f"gap_w{t}"] = gap
        rec.derive(**derived)
    return records
