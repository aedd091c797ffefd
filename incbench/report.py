"""`incbench report`: tables, plots and results/README.md from the run results.

Per (dataset, backbone), one row per method (with its version) in params.yaml order:
- quality: reference rows (popularity, recent_popularity, majority class), M0 on window 1
  (shared), then methods: warm-user next-window metrics over windows 2..N, cold-user and
  cold-item columns, classification; mean ± sample std over seeds (95% t-CI over seeds in the
  CSV), ▲/▼ marks from the user-level paired tests against full_retrain (analysis.py);
- cost and latency: the meter's figures, $ and kWh estimates from the hardware profile;
  serving latency once per backbone (M0), index rebuild per method;
- continual: forgetting, BWT, gap to full_retrain, NDCG@10 by window (the staleness curve);
- significance: the tests behind the marks (and per-window tests, their own Holm family).
Methods that were not applicable, failed, or have no result yet say so in `Status`. Every
Markdown table ends with a provenance footnote, every LaTeX table with a provenance comment.
Output is a pure function of the run files, dvc.lock and params: re-running on unchanged runs
gives identical bytes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from incbench import analysis, calibration, io
from incbench.collect import (
    add_estimates,
    collect,
    grid_seeds,
    load_json,
    provenance,
    reference_records,
)
from incbench.config import (
    CITATIONS,
    PRESET_HEADLINES,
    hardware_profile_from,
    load_params,
    protocol_from,
)
from incbench.metric_registry import HEADLINE, TESTED, column, label
from incbench.plots import make_plots
from incbench.tables import Column, latency_rows, quality_rows, table, write_table

QUALITY: list[Column] = [  # headline: warm users, windows 2..N (summary["next_window"])
    column(HEADLINE),
    column("warm_user:recall@10"),
    column("warm_user:f1@10"),
    column("warm_users"),
    column("cold_user:ndcg@10"),
    column("cold_users"),
    column("cold_item:ndcg@10"),
    *(column(m) for m in ("auc", "gauc", "logloss", "accuracy", "f1")),
    column("update_wall_s", digits=2),
    column("cost_vs_full_retrain"),
    ("tuning", "Tuning", None),
]
MARKED = {f"warm_user:{m}": m for m in (*TESTED, "user_auc")}  # column -> tested per-user metric


def _leads_with_auc(protocol) -> bool:
    return PRESET_HEADLINES.get(protocol.preset) == "auc"


def quality_columns(protocol) -> list[Column]:
    """QUALITY, or for a preset that leads with AUC (lsat): AUC and User AUC first."""
    if not _leads_with_auc(protocol):
        return QUALITY
    return [column("auc"), column("warm_user:user_auc"), *(c for c in QUALITY if c[0] != "auc")]


def tested(protocol) -> tuple[str, ...]:
    """The per-user metrics of the significance tests: TESTED, plus user_auc for a preset
    that leads with AUC (the test of AUC needs a per-user unit: each user's own AUC)."""
    return (*TESTED, "user_auc") if _leads_with_auc(protocol) else TESTED


COST: list[Column] = [column(m) for m in (
    "update_wall_s", "update_cpu_s", "peak_mem_mb", "peak_mem_increase_mb", "update_gflops",
    "trainable_params", "changed_params", "delta_kb", "fit_steps", "usd_per_update",
    "kwh_per_update", "cost_vs_full_retrain", "cpu_vs_full_retrain", "cost_vs_fine_tune",
    "busy_pct",
)]  # fmt: skip
LATENCY: list[Column] = [column(m) for m in (
    "serve_p50_ms", "serve_p95_ms", "serve_p99_ms", "serve_users_per_s",
    "serve_mflops_per_request", "index_rebuild_ms",
)]  # fmt: skip


def protocol_text(protocol) -> str:
    """The protocol in one line (a preset is named and cited)."""
    if protocol.window_mode == "fixed":
        base = f"{protocol.base_rows} samples" if protocol.base_rows else "every earlier sample"
        cut = f"base {base}, {protocol.n_windows} windows of {protocol.window_rows} samples"
    else:
        cut = (f"base {protocol.base_fraction:g}, {protocol.n_windows} windows by "
               f"{protocol.window_mode}")  # fmt: skip
    text = (
        (f"samples from each user's interaction {protocol.min_history + 1} on, "
         if protocol.min_history else "")
        + f"{cut}, holdout {protocol.holdout_fraction:g}"
        + (" (each period's last rows by time)" if protocol.holdout_mode == "tail" else "")
        + f", positive = rating >= {protocol.positive_threshold:g}, {protocol.n_negatives} "
        "negatives, full-catalogue ranking"
        + (", early stopping on each period's holdout part"
           if protocol.selection == "holdout" else "")
        + (", an update kept only if it raises AUC on its window's holdout part"
           if protocol.update_guard == "holdout_auc" else "")
        + (" (the holdout parts choose the models: retention R[t][t], forgetting and BWT are "
           "not measured on unseen rows)"
           if protocol.selection == "holdout" or protocol.update_guard != "none" else "")
    )  # fmt: skip
    if protocol.preset:
        text += f" — {CITATIONS[protocol.preset]}; the preset's headline metric is AUC"
    return text


def caption(root: Path, params: dict, dataset: str, backbone: str, records, what: str) -> str:
    protocol = protocol_from(params)
    manifest = load_json(root / "data" / "windows" / dataset / "manifest.json") or {}
    split_hash = (manifest.get("sha256") or {}).get("window-0.parquet", "")[:12] or "unknown"
    devices = sorted({r["device_name"] for r in records if r.get("device_name")}) or ["unknown"]
    seeds = grid_seeds(params, backbone)
    return (
        f"{dataset} / {backbone}: {what} ({protocol.n_windows} windows), mean ± std over "
        f"seeds {seeds}. Protocol: {protocol_text(protocol)}. Split {split_hash}. Measured on "
        f"{', '.join(devices)}."
        + (f" Equal optimiser steps: every update at most {protocol.step_budget} optimiser "
           "steps over all its fits, no early stopping (after Prabhu et al., CVPR 2023; a step's "
           "FLOPs still differ by method: see the cost table's GFLOPs); steps used in the cost "
           "table." if protocol.step_budget else "")
    )  # fmt: skip


KINDS = {
    "quality": (QUALITY, "next-window metrics (model M_(t-1) on window t), mean of windows 2..N"),
    "cost": (COST, "cost per update (window mean), measured by the harness's meter; Peak MB is "
             "the process peak during the update, Peak +MB its rise over the level at the start; "
             "× full_retrain = ratio of medians over windows (wall, CPU seconds), robust to a few "
             "slow windows; Others' CPU % = the largest share of the machine other processes "
             "used during an update of 0.1 s or more (rows with a window above 25% say 'contended'; "
             "shorter updates are below the CPU counters' 10 ms resolution and are not judged)"),
    "latency": (LATENCY, "serving: top-10 over the full catalogue for one user, 200 timed "
                "requests after 20 warm-up, throughput in batches of 256 — a property of the "
                "backbone, measured once per seed on M0 (window 1's catalogue and users); per "
                "method, the time to rebuild the serving index (the catalogue side) after each "
                "update, mean over windows"),
    "continual": (None, "continual-learning view from the retention matrix R[t][j] (NDCG@10 of "
                  "M_t on the holdout of period j; row 0 = M0; one fixed exclusion set per j: the "
                  "user's items before j and in the train parts of j..N): forgetting, backward "
                  "transfer (GEM), mean gap of next-window warm-user NDCG@10 to full_retrain "
                  "(same seed, windows 2..N), and warm-user NDCG@10 by window (the staleness "
                  "curve; window 1 = M0)"),
}  # fmt: skip
QUALITY_NOTE = (
    "Ranking columns: warm users (seen before window t) unless marked cold; users/window = "
    "mean number of users ranked per window; cold users (first seen in window t) are ranked by "
    "the backbone's declared cold-user rule, the same for every method. Window 1 evaluates M0 "
    "for every method and is shown once. Classification (explicit feedback): over the observed "
    "rows of window t, label = rating >= threshold (the training signal adds sampled negatives "
    "as label 0); accuracy and F1 at the logit threshold that maximised accuracy on the holdout "
    "of period t-1 (past data only); majority class = always the window's more frequent label; "
    "LogLoss is of the raw logits, whose calibration follows the training prior (sampled "
    "negatives), so it does not rank methods (none for references). "
    "Reference rows are not updates: popularity ranks by train counts before t, "
    "recent_popularity by those of period t-1 only."
)
SIG_NOTE = ("▲ / ▼: significantly better / worse than full_retrain (α = 0.05) on warm users, "
            "windows 2..N: per user, the metric averaged over the windows 2..N where the user "
            "was warm, then over seeds (unit = user, users present in every seed of both "
            "methods); paired Wilcoxon signed-rank test, Holm-corrected across all methods × "
            "{{{tested}}} tests of this table. Window 1 (the shared M0) and cold users "
            "are not tested; the marked cells show the same population (warm users, windows "
            "2..N, mean of per-window means). Effects, CIs and seed spread: significance table.")  # fmt: skip


def continual_columns(n_windows: int) -> list[Column]:
    cols = [
        ("forgetting", "Forgetting", 4),
        ("bwt", "BWT", 4),
        ("gap_to_full_retrain", "Gap to full_retrain", 4),
    ]
    return cols + [(f"w{t}", f"NDCG@10 w{t}", 4) for t in range(1, n_windows + 1)]


def report(root: Path) -> list[Path]:
    params = load_params(root)
    profile_name, profile = hardware_profile_from(params)
    out = root / "results" / "tables"
    plots_dir = root / "results" / "plots"
    written, sections, not_run = [], [], []
    for dataset in params.get("datasets") or {}:
        for backbone in params.get("backbones") or {}:
            records = collect(root, params, dataset, backbone)
            if records and all(r.status == "missing" for r in records):
                not_run.append((dataset, backbone))  # e.g. a profile's text part on a CPU:
                continue  # said once in results/README.md, not as a table of empty rows
            add_estimates(records, profile_name, profile)
            analysis.continual(records)
            protocol = protocol_from(params)
            sig = analysis.significance(records, tested(protocol))
            prov = provenance(root, records, dataset)
            n_windows = protocol.n_windows
            stem = f"{dataset}-{backbone}"
            refs = reference_records(root, params, dataset)
            for kind, (columns, what) in KINDS.items():
                columns = columns or continual_columns(n_windows)
                columns = quality_columns(protocol) if kind == "quality" else columns
                if kind == "quality":
                    marks = {(m, col): mark for (m, tested), mark in analysis.marks(sig).items()
                             for col, name in MARKED.items() if name == tested}  # fmt: skip
                    rows, csv = quality_rows(refs, records, columns, marks)
                elif kind == "latency":
                    rows, csv = latency_rows(records, columns)
                else:
                    rows, csv = table(records, columns)
                cap = caption(root, params, dataset, backbone, records, what)
                if kind == "quality":
                    cap += (
                        " "
                        + QUALITY_NOTE
                        + " "
                        + SIG_NOTE.format(tested=", ".join(label(m) for m in tested(protocol)))
                    )
                if kind in ("cost", "latency"):
                    cap += (f" $ and kWh are estimates from measured seconds at hardware profile "
                            f"'{profile_name}' ({profile.price_per_hour:g} $/h, {profile.watts:g} W).")  # fmt: skip
                recipe = ((params.get("backbones") or {}).get(backbone) or {}).get(
                    "pretrain_groups"
                )
                if kind in ("quality", "cost") and recipe:  # the reference trains fewer groups
                    cap += (f" Note: on {backbone}, full_retrain trains only the recipe's groups "
                            f"{list(recipe)}, so `× full_retrain` of a method that also trains "
                            "other groups (the encoder) compares unlike work; the cost table's "
                            "`× fine_tune` (every group, window t only) is the like-for-like "
                            "reference for those.")  # fmt: skip
                headers = ["Method", *(h for _, h, _ in columns), "Status"]
                written += write_table(out, f"{kind}-{stem}", headers, rows, csv, cap, prov)
            written += tuning_table(out, stem, root, params, dataset, backbone, records, prov)
            written += significance_table(
                out, stem, sig, root, params, dataset, backbone, records, prov
            )
            written += make_plots(plots_dir, stem, records, dataset, backbone)
            sections.append((dataset, backbone, stem))
    written += calibration.tables(root, params)  # before the results README, which shows them
    written.append(results_readme(root, params, sections, not_run))
    return written


def significance_table(
    out, stem, sig, root, params, dataset, backbone, records, prov
) -> list[Path]:
    what = ("paired tests against full_retrain on warm users (cold users and window 1, the "
            "shared M0, excluded). Unit = user: per run, each user's metric averaged over the "
            "tested windows in which the user was warm, then averaged over seeds (seeds both "
            "methods have; users present in every one of them); two-sided Wilcoxon signed-rank "
            "test, zero differences dropped. Headline rows (windows 2..N, behind the quality "
            "table's ▲/▼): Holm across all of them; per-window rows: Holm across all per-window "
            "rows. Mean diff = mean per-user difference (method − full_retrain) with a 95% "
            "t-interval over users; verdict at Holm p < 0.05, in the direction of the "
            "signed-rank statistic, and only if the mean difference and every training seed's "
            "difference agree with that direction (else 'n.s. (seed-dependent)'), and never on "
            "a single training seed ('n.s. (one seed)'); seed std = std over seeds of the method's mean over the "
            "tested users and of the difference (n/a with one seed)")  # fmt: skip
    cap = caption(root, params, dataset, backbone, records, what)
    if sig.empty:
        rows, headers = [["–", "no full_retrain results to compare against"]], ["Method", "Note"]
    else:
        headers = ["Method", "Metric", "Test", "Windows", "Seeds", "Users", "Mean diff", "95% CI",
                   "p", "Holm p", "Verdict", "Seed std method", "Seed std diff"]  # fmt: skip
        std = lambda v: "n/a" if pd.isna(v) else f"{v:.4f}"  # noqa: E731
        ci = lambda lo, hi: "n/a" if pd.isna(lo) else f"[{lo:+.4f}, {hi:+.4f}]"  # noqa: E731
        rows = [[r.method, r.metric, r.family, r.windows, str(r.seeds), str(r.n_users),
                 f"{r.mean_diff:+.4f}", ci(r.ci95_low, r.ci95_high),
                 f"{r.p:.3g}", f"{r.p_holm:.3g}", r.verdict, std(r.seed_std_method),
                 std(r.seed_std_diff)] for r in sig.itertuples()]  # fmt: skip
    return write_table(out, f"significance-{stem}", headers, rows, sig, cap, prov)


def tuning_table(out, stem, root, params, dataset, backbone, records, prov) -> list[Path]:
    cfg = params.get("tuning") or {}
    what = (f"hyperparameter tuning (optuna TPE, seeded per method, start-up trials = trials // 3; "
            f"objective: next-window NDCG@10 over validation windows 2..{cfg.get('n_windows', '?')} cut "
            f"from the base period's train part — never windows 1..N — mean over tuning seeds "
            f"{cfg.get('seeds', '?')}; {cfg.get('trials', 0)} trials per method, the defaults first). "
            "A tuned setting replaces the defaults only if its paired gain over them exceeds the "
            "spread (twice the standard error of the per-seed gain); Margin and Spread show the "
            "comparison that decided")  # fmt: skip
    rows, csv_rows = [], []
    for method_name in dict.fromkeys(r["method"] for r in records):
        best = next((r["tuning_record"] for r in records if r["method"] == method_name), None)
        if not best:
            rows.append([method_name, "–", "–", "–", "–", "–", "missing: run dvc repro"])
            continue
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best["params"].items())) or "–"
        value = f"{best['best_value']:.4f}" if best.get("best_value") is not None else "–"
        margin = f"{best['margin']:+.4f}" if best.get("margin") is not None else "–"
        spread = f"{best['spread']:.4f}" if best.get("spread") is not None else "–"
        status = "tuned (adopted)" if best.get("tuned") else f"defaults ({best.get('reason', '')})"
        if best.get("reproducible") is False:  # parallel trials on a shared optuna storage
            status += f"; {best.get('label', 'non-reproducible')}"
        rows.append([method_name, str(best.get("trials", 0)), value, margin, spread, shown, status])
        csv_rows.append({"method": method_name, "trials": best.get("trials", 0),
                         "best_value": best.get("best_value"), "margin": best.get("margin"),
                         "spread": best.get("spread"), **best["params"], "status": status})  # fmt: skip
    cap = caption(root, params, dataset, backbone, records, what)
    headers = ["Method", "Trials", "Best val. NDCG@10", "Margin vs defaults", "Spread",
               "Params used by the runs", "Status"]  # fmt: skip
    return write_table(out, f"tuning-{stem}", headers, rows, pd.DataFrame(csv_rows), cap, prov)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def results_readme(root: Path, params: dict, sections, not_run=()) -> Path:
    protocol = protocol_from(params)
    lines = [
        "# Results", "",
        "Generated by `incbench report` (the `report` stage of `dvc repro`); do not edit by hand.", "",
        f"Grid: datasets {list(params.get('datasets') or {})}, backbones "
        f"{list(params.get('backbones') or {})}, methods {list(params.get('methods') or {})}, "
        f"seeds {params.get('seeds')}. Protocol: {dataclasses.asdict(protocol)}.", "",
        "Regenerate everything with `make repro` (set-up + `dvc repro`); after changing "
        "params.yaml or adding a method, `dvc repro` reruns only what changed. "
        "`incbench compare OLD NEW` checks that a rerun reproduced these numbers.", "",
    ]  # fmt: skip
    for dataset, backbone, stem in sections:
        quality = (root / "results" / "tables" / f"quality-{stem}.md").read_text()
        lines += [f"## {dataset} / {backbone}", "", quality, ""]
        lines += [f"Also: [cost](tables/cost-{stem}.md), [latency](tables/latency-{stem}.md), "
                  f"[continual](tables/continual-{stem}.md), "
                  f"[significance](tables/significance-{stem}.md), [tuning](tables/tuning-{stem}.md) "
                  "(each also as .tex and .csv).", ""]  # fmt: skip
        for name, what in (("ndcg_by_window", "NDCG@10 by window"), ("quality_vs_cost", "quality vs cost"),
                           ("retention", "retention matrices"), ("tuning_history", "tuning history")):  # fmt: skip
            if (root / "results" / "plots" / f"{stem}-{name}.png").exists():
                lines += [f"![{what}](plots/{stem}-{name}.png)", ""]
    for dataset, backbone in not_run:
        lines += [f"## {dataset} / {backbone}: not run", "",
                  f"No run of {dataset} / {backbone} has a result here: its stages were not "
                  "run on this machine (`dvc status` lists them). No table is written for it.",
                  ""]  # fmt: skip
    for backbone in calibration.params_from(params).backbones:  # can the harness see drift?
        table = root / "results" / "tables" / f"calibration-synthetic-{backbone}.md"
        if table.exists():
            lines += [f"## Calibration: synthetic streams with known truth / {backbone}", "",
                      table.read_text(), ""]  # fmt: skip
    path = root / "results" / "README.md"
    io.write_text(path, "\n".join(lines))
    return path
