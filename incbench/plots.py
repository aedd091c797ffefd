"""Figures for the report (matplotlib, headless): PNG for reading, SVG for papers.

Deterministic output: fixed SVG hash salt and no date metadata, so an unchanged report
rewrites identical bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from incbench import io, stats  # noqa: E402
from incbench.metric_registry import HEADLINE  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "incbench", "figure.dpi": 110, "font.size": 9})


def _save(fig, stem: Path) -> list[Path]:
    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = stem.with_suffix(f".{ext}")
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def by_window(curves: dict[str, np.ndarray], metric: str, title: str, stem: Path) -> list[Path]:
    """curves[method] = array [seeds, windows]: mean line and min-max band over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, values in curves.items():
        x = np.arange(1, values.shape[1] + 1)
        mean = np.nanmean(values, axis=0)
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=name)
        if values.shape[0] > 1:
            ax.fill_between(
                x, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.15, color=line.get_color()
            )
    ax.set_xlabel("window t (model M_(t-1) evaluated on window t)")
    ax.set_ylabel(metric)
    ax.set_xticks(np.arange(1, max(v.shape[1] for v in curves.values()) + 1))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, stem)


def pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Methods not dominated by a cheaper-or-equal and better-or-equal one."""
    front = []
    for name, (cost, quality) in points.items():
        dominated = any(c <= cost and q >= quality and (c, q) != (cost, quality)
                        for other, (c, q) in points.items() if other != name)  # fmt: skip
        if not dominated:
            front.append(name)
    return front


def quality_vs_cost(points: dict[str, tuple[float, float, float]], metric: str, title: str,
                    stem: Path, floor: float = 1e-3) -> list[Path]:  # fmt: skip
    """points[method] = (update seconds, metric mean, metric std); log-scale cost axis."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    front = pareto({k: (v[0], v[1]) for k, v in points.items()})
    for name, (cost, quality, std) in points.items():
        x = max(cost, floor)
        ax.errorbar(x, quality, yerr=0 if np.isnan(std) else std, fmt="o", ms=5,
                    mfc="none" if name not in front else None, capsize=2)  # fmt: skip
        label = name + (" (no update)" if cost < floor else "")
        ax.annotate(label, (x, quality), textcoords="offset points", xytext=(4, 4), fontsize=7)
    fx = sorted((max(points[n][0], floor), points[n][1]) for n in front)
    ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", ls="--", lw=1, color="grey",
            label="Pareto front (filled markers)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"update wall seconds per window (log; < {floor:g} s drawn at {floor:g})")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, stem)


def retention(matrices: dict[str, np.ndarray], title: str, stem: Path) -> list[Path]:
    """One heat map per method: R[t][j] (rows: model M_t; columns: holdout of period j)."""
    n = len(matrices)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False)
    finite = [m[np.isfinite(m)] for m in matrices.values() if np.isfinite(m).any()]
    vmin = min(f.min() for f in finite) if finite else 0
    vmax = max(f.max() for f in finite) if finite else 1
    for ax, (name, mat) in zip(axes.flat, matrices.items()):
        im = ax.imshow(np.ma.masked_invalid(mat), vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("holdout of period j", fontsize=7)
        ax.set_ylabel("model M_t", fontsize=7)
        ax.set_xticks(range(mat.shape[1]))
        ax.set_yticks(range(mat.shape[0]))
        for (i, j), v in np.ndenumerate(mat):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="w")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, stem)


def tuning_history(
    histories: dict[str, tuple[np.ndarray, np.ndarray]], title: str, stem: Path
) -> list[Path]:
    """histories[method] = (trial numbers, best-so-far objective)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for name, (x, best) in histories.items():
        ax.step(x, best, where="post", marker="o", ms=3, label=name)
    ax.set_xlabel("trial (0 = the method's defaults)")
    ax.set_ylabel("best validation NDCG@10 so far")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, stem)


def make_plots(folder: Path, stem: str, records, dataset: str, backbone: str) -> list[Path]:
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return []
    methods = list(dict.fromkeys(r["method"] for r in ok))
    curves, points, matrices = {}, {}, {}
    for m in methods:
        recs = [r for r in ok if r["method"] == m]
        width = max(len(r["by_window"]) for r in recs)
        curves[m] = np.array([[np.nan if v is None else v for v in r["by_window"]]
                              + [np.nan] * (width - len(r["by_window"])) for r in recs])  # fmt: skip
        q = stats.mean_std_ci([r.get(HEADLINE) for r in recs])
        points[m] = (
            float(np.mean([r.get("update_wall_s") or 0.0 for r in recs])),
            q["mean"],
            q["std"],
        )
        mats = np.array(
            [[[np.nan if v is None else v for v in row] for row in r["retention"]] for r in recs]
        )
        with warnings.catch_warnings():  # cells above the diagonal are NaN for every seed
            warnings.simplefilter("ignore", RuntimeWarning)
            matrices[m] = np.nanmean(mats, axis=0)
    title = f"{dataset} / {backbone}"
    return [
        *by_window(curves, "next-window NDCG@10 (warm users)", f"{title}: warm-user NDCG@10 by window (band: seeds min-max)",
                         folder / f"{stem}-ndcg_by_window"),
        *quality_vs_cost(points, "NDCG@10 (warm users, windows 2..N)", f"{title}: quality vs update cost",
                               folder / f"{stem}-quality_vs_cost"),
        *tuning_history_plot(records, folder.parent / "tuning", stem, folder / f"{stem}-tuning_history", title),
        *retention(matrices, f"{title}: retention matrix R[t][j] (NDCG@10, mean over seeds)",
                         folder / f"{stem}-retention"),
    ]  # fmt: skip


def tuning_history_plot(
    records, tuning_dir: Path, prefix: str, stem: Path, title: str
) -> list[Path]:
    """Best-so-far validation score by trial, one line per tuned method."""
    histories = {}
    for rec in records:
        best = rec.get("tuning_record")
        if rec["method"] in histories or not best or not best.get("tuned"):
            continue
        trials = pd.read_csv(tuning_dir / f"{prefix}-{rec['method']}" / "trials.csv")
        done = trials[trials["state"] == "COMPLETE"]
        histories[rec["method"]] = (done["number"].to_numpy(), done["value"].cummax().to_numpy())
    if not histories:
        return []
    return tuning_history(histories, f"{title}: tuning (best-so-far validation NDCG@10)", stem)
