"""Statistics for the tables: seed spread, confidence intervals, paired tests, continual metrics.

- CI: t-interval, mean ± t_(0.975, n-1) · s / sqrt(n), over seeds in the quality table and over
  users for paired differences (undefined for n = 1).
- Paired test against `full_retrain` (incbench/analysis.py): the unit is the user — per-user
  values averaged over windows and then over seeds, never (seed, user) pairs pooled — compared
  with the Wilcoxon signed-rank test (zero differences dropped, two-sided); the direction of a
  significant result is the sign of W+ − W− (`rank_direction`); the effect is the mean per-user
  difference with a 95% t-interval over users (`mean_std_ci`); p-values are Holm-corrected
  across every test of a family (`holm`). Seed spread: sample std over seeds (`seed_std`),
  NaN (not available) with one seed.
- Continual (retention matrix R[t][j], row 0 = M0): forgetting at the end,
  F = mean_{j<N} (max_{j<=l<N} R[l][j] - R[N][j]); backward transfer (GEM),
  BWT = mean_{j<N} (R[N][j] - R[j][j]).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_std_ci(values, level: float = 0.95) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    nan = float("nan")
    if len(v) == 0:
        return {"mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "n": 0}
    mean = float(v.mean())
    if len(v) == 1:
        return {"mean": mean, "std": nan, "ci_low": nan, "ci_high": nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * std / math.sqrt(len(v))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": len(v)}


def wilcoxon(a, b) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; 1.0 when every pair is equal."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def rank_direction(d) -> int:
    """Sign of the signed-rank statistic W+ − W− of the differences d (zeros and NaN dropped,
    ties given average ranks): +1 if the larger ranks are positive, -1 if negative, else 0."""
    d = np.asarray(d, dtype=np.float64)
    d = d[~np.isnan(d) & (d != 0)]
    if len(d) == 0:
        return 0
    return int(np.sign(np.sum(np.sign(d) * stats.rankdata(np.abs(d)))))


def seed_std(values) -> float:
    """Sample std (ddof 1) over seeds; NaN — not available, never 0 — with fewer than two."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def holm(pvalues: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    keys = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(keys), 0.0, {}
    for rank, key in enumerate(keys):
        running = max(running, min(1.0, (m - rank) * pvalues[key]))
        out[key] = running
    return out


def forgetting(R: list[list[float | None]]) -> float:
    n = len(R) - 1
    terms = []
    for j in range(n):
        past = [R[k][j] for k in range(j, n) if R[k][j] is not None]
        if past and R[n][j] is not None:
            terms.append(max(past) - R[n][j])
    return float(np.mean(terms)) if terms else float("nan")


def bwt(R: list[list[float | None]]) -> float:
    n = len(R) - 1
    terms = [R[n][j] - R[j][j] for j in range(n) if R[n][j] is not None and R[j][j] is not None]
    return float(np.mean(terms)) if terms else float("nan")
