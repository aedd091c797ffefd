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
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tabulate import tabulate

from incbench import analysis, calibration, io, plots, stats
from incbench.config import (
    ConfigError,
    HardwareProfile,
    hardware_profile_from,
    load_params,
    protocol_from,
)
from incbench.protocol import run_id

Column = tuple[str, str, int]  # (record key, header, decimals)

QUALITY: list[Column] = [  # headline: warm users, windows 2..N (summary["next_window"])
    ("warm_user:ndcg@10", "NDCG@10", 4),
    ("warm_user:recall@10", "Recall@10", 4),
    ("warm_user:f1@10", "F1@10", 4),
    ("warm_users", "Users/window", 0),
    ("cold_user:ndcg@10", "NDCG@10 cold users", 4),
    ("cold_users", "Cold users/window", 0),
    ("cold_item:ndcg@10", "NDCG@10 cold items", 4),
    ("auc", "AUC", 4),
    ("gauc", "GAUC", 4),
    ("logloss", "LogLoss", 4),
    ("accuracy", "Accuracy", 4),
    ("f1", "F1", 4),
    ("update_wall_s", "Update s", 2),
    ("cost_vs_full_retrain", "Cost × full_retrain", 3),
    ("tuning", "Tuning", None),
]
MARKED = {"warm_user:ndcg@10": "ndcg@10", "warm_user:recall@10": "recall@10"}  # column -> tested
COST: list[Column] = [
    ("update_wall_s", "Update s", 3),
    ("update_cpu_s", "CPU s", 3),
    ("peak_mem_mb", "Peak MB", 0),
    ("peak_mem_increase_mb", "Peak +MB", 1),
    ("update_gflops", "GFLOPs", 2),
    ("trainable_params", "Trainable params", 0),
    ("changed_params", "Changed params", 0),
    ("delta_kb", "Delta KB", 1),
    ("usd_per_update", "$ / update (est.)", 6),
    ("kwh_per_update", "kWh / update (est.)", 6),
    ("cost_vs_full_retrain", "Cost × full_retrain", 3),
    ("cpu_vs_full_retrain", "CPU × full_retrain", 3),
    ("busy_pct", "Others' CPU % (max)", 0),
]
LATENCY: list[Column] = [
    ("serve_p50_ms", "p50 ms", 3),
    ("serve_p95_ms", "p95 ms", 3),
    ("serve_p99_ms", "p99 ms", 3),
    ("serve_users_per_s", "Users/s (batched)", 0),
    ("serve_mflops_per_request", "MFLOPs / request", 3),
    ("index_rebuild_ms", "Index rebuild ms", 2),
]
SERVING = [c for c in LATENCY if c[0].startswith("serve_")]


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def reference_records(root: Path, params: dict, dataset: str) -> list[dict[str, Any]]:
    """The reference rows (params.yaml `references`), one record each: the same for every
    backbone of the dataset; `kind` tells them from methods."""
    records = []
    for name in params.get("references") or []:
        folder = root / "results" / "runs" / f"{dataset}-reference-{name}-0"
        summary = _load(folder / "summary.json")
        rec = {"method": name, "seed": 0, "version": None, "status": "missing", "kind": "reference",
               "reason": f"no result in {folder.relative_to(root)}: run dvc repro",
               "folder": folder, "tuning": "–"}  # fmt: skip
        if summary:
            rec.update(version=summary["method_version"], status=summary["status"],
                       reason=summary["reason"], **summary["next_window"])  # fmt: skip
            rec["window_1"] = summary.get("window_1") or {}
            rec["logloss"] = None  # counts and probabilities are not logits: no log-loss
            per_window = pd.read_csv(folder / "windows.csv")
            rec["by_window"] = [None if pd.isna(v) else float(v)
                                for v in per_window["warm_user:ndcg@10"]]  # fmt: skip
        records.append(rec)
    return records


def collect(root: Path, params: dict, dataset: str, backbone: str) -> list[dict[str, Any]]:
    """One record per (method, seed) of the grid: status, quality and cost values."""
    records = []
    for method_name in params.get("methods") or {}:
        for seed in params.get("seeds") or []:
            folder = root / "results" / "runs" / run_id(dataset, backbone, method_name, seed)
            summary, cost = _load(folder / "summary.json"), _load(folder / "cost.json")
            rec = {"method": method_name, "seed": seed, "version": None, "status": "missing",
                   "reason": f"no result in {folder.relative_to(root)}: run dvc repro",
                   "kind": "method"}  # fmt: skip
            rec["folder"] = folder
            best = _load(
                root / "results" / "tuning" / f"{dataset}-{backbone}-{method_name}" / "best.json"
            )
            rec["tuning_record"] = best
            if summary and summary["status"] == "skipped":  # outside the backbone's seed budget
                continue
            if summary:
                rec.update(version=summary["method_version"], status=summary["status"],
                           reason=summary["reason"], **summary["next_window"])  # fmt: skip
                rec["window_1"] = summary.get("window_1") or {}
                rec["device"] = (cost or {}).get("device")
                rec["serving_m0"] = (cost or {}).get("serving_m0") or {}
                rec["device_name"] = (cost or {}).get("device_name")
                rec["provenance"] = _load(folder / "provenance.json") or {}
                if summary["status"] == "ok":
                    rec.update({k: v for k, v in (cost or {}).items() if k not in rec})
                    rec["retention"] = summary["retention"]["ndcg@10"]
                    tuned = summary.get("tuning")
                    rec["tuning"] = f"{tuned['trials']} trials" if tuned else "defaults"
                    per_window = pd.read_csv(folder / "windows.csv")
                    per_window = per_window[per_window["status"] == "ok"]
                    rec["by_window"] = [
                        None if pd.isna(v) else float(v) for v in per_window["warm_user:ndcg@10"]
                    ]
                    if "fit_stopped" in per_window:  # the compute cap: which updates it cut
                        capped = per_window[per_window["fit_stopped"] == "max_steps"]
                        rec["capped_windows"] = len(capped)
                        rec["capped_steps"] = int(capped["fit_steps"].max()) if len(capped) else 0
            records.append(rec)
    return records


def grid_seeds(params: dict, backbone: str) -> list[int]:
    budget = ((params.get("backbones") or {}).get(backbone) or {}).get("seeds") or []
    return [s for s in params.get("seeds") or [] if not budget or s in budget]


def add_estimates(
    records: list[dict[str, Any]], profile_name: str, profile: HardwareProfile
) -> None:
    """Derived columns: $ and kWh per update from measured seconds, cost relative to
    full_retrain (ratio of mean update seconds, same dataset/backbone), delta in MB."""
    for rec in records:
        if (
            rec["status"] == "ok"
            and rec.get("device")
            and rec["device"].split(":")[0] != profile.kind
        ):
            raise ConfigError(
                f"{rec['method']} seed {rec['seed']} was measured on {rec['device']} but "
                f"hardware_profile {profile_name!r} describes a {profile.kind} machine; set "
                "hardware_profile in params.yaml to a profile of the hardware that ran the grid"
            )

    def robust(rec, key):  # the median over windows (older runs: the mean)
        return rec.get(f"{key}_median", rec.get(key))

    retrain = [r for r in records if r["method"] == "full_retrain" and r["status"] == "ok"]
    base = float(np.mean([robust(r, "update_wall_s") for r in retrain])) if retrain else None
    base_cpu = float(np.mean([robust(r, "update_cpu_s") for r in retrain])) if retrain else None
    for rec in records:
        seconds = rec.get("update_wall_s")
        if rec["status"] != "ok" or seconds is None:
            continue
        rec["usd_per_update"] = profile.dollars(seconds)
        rec["kwh_per_update"] = profile.kwh(seconds)
        rec["cost_vs_full_retrain"] = robust(rec, "update_wall_s") / base if base else None
        cpu = robust(rec, "update_cpu_s")
        rec["cpu_vs_full_retrain"] = cpu / base_cpu if base_cpu and cpu is not None else None
        if rec.get("other_cpu_share_max") is not None:
            rec["busy_pct"] = 100 * rec["other_cpu_share_max"]
        if rec.get("delta_bytes") is not None:
            rec["delta_kb"] = rec["delta_bytes"] / 1024
        if rec.get("serve_flops_per_request") is not None:
            rec["serve_mflops_per_request"] = rec["serve_flops_per_request"] / 1e6


def _fmt(values: list[float], decimals: int) -> tuple[str, float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–", float("nan"), float("nan")
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    text = f"{mean:,.{decimals}f}" + (f" ± {std:,.{decimals}f}" if len(vals) > 1 else "")
    return text, mean, std


def table(
    records: list[dict[str, Any]],
    columns: list[Column],
    marks: dict[tuple[str, str], str] | None = None,
) -> tuple[list[list[str]], pd.DataFrame]:
    rows, csv_rows = [], []
    for method_name in dict.fromkeys(r["method"] for r in records):
        recs = [r for r in records if r["method"] == method_name]
        ok = [r for r in recs if r["status"] == "ok"]
        version = next((r["version"] for r in recs if r["version"]), "?")
        label = f"{method_name} (v{version})"
        if ok:
            status = "ok" if len(ok) == len(recs) else f"ok on {len(ok)}/{len(recs)} seeds"
            busy = sum(r.get("contended_windows") or 0 for r in ok)
            if busy:
                status += f" (contended: {busy} window(s) with others' CPU > 25%)"
            capped = [r for r in ok if r.get("capped_windows")]
            if capped:  # a compute cap bound: the row is not a converged fit, and says so
                steps = max(r["capped_steps"] for r in capped)
                windows = max(r["capped_windows"] for r in capped)
                status += f"; capped: ≤{steps} steps/update, compute budget ({windows} windows)"
        else:
            first = recs[0]
            status = f"{first['status'].replace('_', ' ')}: {first['reason']}"
        row, csv_row = [label], {"method": method_name, "version": version, "seeds": len(ok)}
        for key, _, decimals in columns:
            if decimals is None:  # a text column: the same for every seed
                text = next((str(r[key]) for r in ok if r.get(key) is not None), "–")
                row.append(text)
                csv_row[key] = text
                continue
            values = [r.get(key) for r in ok]
            text, mean, std = _fmt(values, decimals)
            mark = (marks or {}).get((method_name, key))
            row.append(f"{text} {mark}" if mark and ok else text)
            ci = stats.mean_std_ci([v for v in values if v is not None])
            csv_row[f"{key}_mean"], csv_row[f"{key}_std"] = mean, std
            csv_row[f"{key}_ci95_low"], csv_row[f"{key}_ci95_high"] = ci["ci_low"], ci["ci_high"]
            if mark:
                csv_row[f"{key}_vs_full_retrain"] = mark
        row.append(status)
        csv_row["status"] = status
        rows.append(row)
        csv_rows.append(csv_row)
    return rows, pd.DataFrame(csv_rows)


def quality_rows(
    refs, records, columns: list[Column], marks
) -> tuple[list[list[str]], pd.DataFrame]:
    """Reference rows, the majority-class reference, M0 on window 1 (shared), then methods."""
    ref_rows, ref_csv = table(refs, columns)
    for row in ref_rows:
        row[0] = row[0].replace(" (v", " (reference v")
    ok = [r for r in records if r["status"] == "ok"]
    majority = {"method": "majority class", "seed": 0, "version": "1", "status": "ok",
                "accuracy": _mean_of(ok, "majority_accuracy"), "f1": _mean_of(ok, "majority_f1")}  # fmt: skip
    maj_rows, maj_csv = table([majority], [c for c in columns if c[0] in ("accuracy", "f1")])
    keys = [c[0] for c in columns if c[0] in ("accuracy", "f1")]
    maj_row = ["majority class (reference)"] + [
        maj_rows[0][1 + keys.index(c[0])] if c[0] in keys else "–" for c in columns
    ] + ["reference: always the more frequent label of the window"]  # fmt: skip
    first = next((m for m in dict.fromkeys(r["method"] for r in ok)), None)
    m0 = [{**r["window_1"], "method": "M0 on window 1", "seed": r["seed"], "version": r["version"],
           "status": "ok"} for r in ok if r["method"] == first and r.get("window_1")]  # fmt: skip
    shared = [c for c in columns if c[0] not in ("update_wall_s", "cost_vs_full_retrain", "tuning")]
    m0_rows, m0_csv = table(m0, shared) if m0 else ([], pd.DataFrame())
    m0_out = []
    for row in m0_rows:
        cells = dict(zip([c[0] for c in shared], row[1:-1]))
        m0_out.append(["M0 on window 1 (shared by every method)"]
                      + [cells.get(c[0], "–") for c in columns] + ["ok"])  # fmt: skip
    rows, csv = table(records, columns, marks)
    m0_csv = m0_csv.assign(method="M0 on window 1") if len(m0_csv) else m0_csv
    maj_csv = maj_csv.assign(method="majority class")
    return (ref_rows + [maj_row] + m0_out + rows,
            pd.concat([ref_csv, maj_csv, m0_csv, csv], ignore_index=True))  # fmt: skip


def latency_rows(records, columns: list[Column]) -> tuple[list[list[str]], pd.DataFrame]:
    """Serving latency is the backbone's (M0's, measured once per seed by the pretrain stage):
    one row; per method only the index rebuild after an update, which does differ."""
    ok = [r for r in records if r["status"] == "ok" and r.get("serving_m0")]
    seen, m0 = set(), []
    for r in ok:
        if r["seed"] not in seen:
            seen.add(r["seed"])
            figures = dict(r["serving_m0"])
            flops = figures.get("serve_flops_per_request")
            figures["serve_mflops_per_request"] = flops / 1e6 if flops is not None else None
            m0.append({**figures, "method": "M0 serving (backbone)", "seed": r["seed"],
                       "version": "-", "status": "ok"})  # fmt: skip
    m0_rows, m0_csv = table(m0, columns) if m0 else ([], pd.DataFrame())
    for row in m0_rows:
        row[0] = "serving, top-10 (backbone: M0, measured once)"
    rebuild = [c for c in columns if not c[0].startswith("serve_")]
    rows, csv = table(records, rebuild)
    out = [[row[0]] + ["–"] * len(SERVING) + row[1:] for row in rows]
    return m0_rows + out, pd.concat([m0_csv, csv], ignore_index=True)


def _mean_of(records, key: str) -> float | None:
    values = [r.get(key) for r in records if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def caption(root: Path, params: dict, dataset: str, backbone: str, records, what: str) -> str:
    protocol = protocol_from(params)
    manifest = _load(root / "data" / "windows" / dataset / "manifest.json") or {}
    split_hash = (manifest.get("sha256") or {}).get("window-0.parquet", "")[:12] or "unknown"
    devices = sorted({r["device_name"] for r in records if r.get("device_name")}) or ["unknown"]
    seeds = grid_seeds(params, backbone)
    return (
        f"{dataset} / {backbone}: {what} ({protocol.n_windows} windows), mean ± std over "
        f"seeds {seeds}. Protocol: base "
        f"{protocol.base_fraction:g}, {protocol.n_windows} windows by {protocol.window_mode}, "
        f"holdout {protocol.holdout_fraction:g}, positive = rating >= "
        f"{protocol.positive_threshold:g}, {protocol.n_negatives} negatives, full-catalogue "
        f"ranking. Split {split_hash}. Measured on {', '.join(devices)}."
    )


def write_table(out: Path, stem: str, headers: list[str], rows, csv: pd.DataFrame, cap: str,
                prov: list[str]) -> list[Path]:  # fmt: skip
    md = (f"{cap} Provenance[^prov].\n\n"
          + tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
          + "\n\n[^prov]: " + "; ".join(prov) + "\n")  # fmt: skip
    tex = latex(headers, rows, cap) + "".join(f"% {tex_escape_comment(line)}\n" for line in prov)
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.csv"]
    io.write_text(paths[0], md)
    io.write_text(paths[1], tex)
    io.write_csv(paths[2], csv)
    return paths


def tex_escape_comment(text: str) -> str:
    return text.replace("\n", " ")


def latex(headers: list[str], rows: list[list[str]], cap: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    spec = "l" + "r" * (len(headers) - 2) + "l"
    line = lambda cells: " & ".join(tex_escape(c) for c in cells) + r" \\"  # noqa: E731
    body = [line(headers), r"\midrule", *(line(r) for r in rows)]
    return "\n".join([
        r"\begin{table}", r"\centering", r"\small", f"\\caption{{{tex_escape(cap)}}}",
        f"\\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}",
        r"\end{table}", "",
    ])  # fmt: skip


def tex_escape(text: str) -> str:
    out = []
    for ch in str(text):
        out.append({"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                    "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--", "×": r"$\times$",
                    "▲": r"$\blacktriangle$", "▼": r"$\blacktriangledown$"}.get(ch, ch))  # fmt: skip
    return "".join(out).replace(">=", r"$\geq$")


KINDS = {
    "quality": (QUALITY, "next-window metrics (model M_(t-1) on window t), mean of windows 2..N"),
    "cost": (COST, "cost per update (window mean), measured by the harness's meter; Peak MB is "
             "the process peak during the update, Peak +MB its rise over the level at the start; "
             "× full_retrain = ratio of medians over windows (wall, CPU seconds), robust to a few "
             "slow windows; Others' CPU % = the largest share of the machine other processes "
             "used during an update (rows with a window above 25% say 'contended')"),
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
            "{NDCG@10, Recall@10} tests of this table. Window 1 (the shared M0) and cold users "
            "are not tested; the marked cells show the same population (warm users, windows "
            "2..N, mean of per-window means). Effects, CIs and seed spread: significance table.")  # fmt: skip


def continual_columns(n_windows: int) -> list[Column]:
    cols = [
        ("forgetting", "Forgetting", 4),
        ("bwt", "BWT", 4),
        ("gap_to_full_retrain", "Gap to full_retrain", 4),
    ]
    return cols + [(f"w{t}", f"NDCG@10 w{t}", 4) for t in range(1, n_windows + 1)]


def provenance(root: Path, records: list[dict[str, Any]], dataset: str) -> list[str]:
    """Footer lines: code, inputs, packages, device, data, method versions (from the runs)."""
    provs = [r["provenance"] for r in records if r.get("provenance")]
    commits = sorted({(p["git"]["commit"] or "unknown")[:12] + ("+dirty" if p["git"]["dirty"] else "")
                      for p in provs})  # fmt: skip
    packages = provs[0]["packages"] if provs else {}
    devices = sorted({p["device_name"] for p in provs})
    split = provs[0]["split_sha256"].get("window-0.parquet", "")[:12] if provs else "?"
    source = (provs[0]["dataset"].get("source") or {}).get("served_by", "?") if provs else "?"
    versions = ", ".join(
        f"{m} v{v}"
        for m, v in dict.fromkeys((r["method"], r["version"]) for r in records if r["version"])
    )
    return [
        f"git {', '.join(commits) or 'unknown'}",
        f"dvc.lock inputs {lock_digest(root, records)}",
        "packages " + ", ".join(f"{k} {v}" for k, v in packages.items()),
        f"device {', '.join(devices) or 'unknown'}",
        f"dataset {dataset} (served by {source}), split {split}",
        f"methods {versions}",
    ]


def lock_digest(root: Path, records: list[dict[str, Any]]) -> str:
    """SHA-256 (12 hex) over the dvc.lock entries (deps, params) of the runs in a table."""
    lock_path = root / "dvc.lock"
    if not lock_path.exists():
        return "none (no dvc.lock)"
    stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    entries = {}
    for rec in records:
        name = f"run@{rec['folder'].name}"
        if name in stages:
            entries[name] = {k: stages[name].get(k) for k in ("deps", "params")}
    return hashlib.sha256(io.dumps_json(entries).encode()).hexdigest()[:12]


def report(root: Path) -> list[Path]:
    params = load_params(root)
    profile_name, profile = hardware_profile_from(params)
    out = root / "results" / "tables"
    plots_dir = root / "results" / "plots"
    written, sections = [], []
    for dataset in params.get("datasets") or {}:
        for backbone in params.get("backbones") or {}:
            records = collect(root, params, dataset, backbone)
            add_estimates(records, profile_name, profile)
            analysis.continual(records)
            sig = analysis.significance(records)
            prov = provenance(root, records, dataset)
            n_windows = protocol_from(params).n_windows
            stem = f"{dataset}-{backbone}"
            refs = reference_records(root, params, dataset)
            for kind, (columns, what) in KINDS.items():
                columns = columns or continual_columns(n_windows)
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
                    cap += " " + QUALITY_NOTE + " " + SIG_NOTE
                if kind in ("cost", "latency"):
                    cap += (f" $ and kWh are estimates from measured seconds at hardware profile "
                            f"'{profile_name}' ({profile.price_per_hour:g} $/h, {profile.watts:g} W).")  # fmt: skip
                recipe = ((params.get("backbones") or {}).get(backbone) or {}).get(
                    "pretrain_groups"
                )
                if kind in ("quality", "cost") and recipe:  # the reference trains fewer groups
                    cap += (f" Note: on {backbone}, full_retrain trains only the recipe's groups "
                            f"{list(recipe)}, so `× full_retrain` of a method that also trains "
                            "other groups (the encoder) compares unlike work.")  # fmt: skip
                headers = ["Method", *(h for _, h, _ in columns), "Status"]
                written += write_table(out, f"{kind}-{stem}", headers, rows, csv, cap, prov)
            written += tuning_table(out, stem, root, params, dataset, backbone, records, prov)
            written += significance_table(
                out, stem, sig, root, params, dataset, backbone, records, prov
            )
            written += make_plots(plots_dir, stem, records, dataset, backbone)
            sections.append((dataset, backbone, stem))
    written += calibration.tables(root, params)  # before the results README, which shows them
    written.append(results_readme(root, params, sections))
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
        q = stats.mean_std_ci([r.get("warm_user:ndcg@10") for r in recs])
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
        *plots.by_window(curves, "next-window NDCG@10 (warm users)", f"{title}: warm-user NDCG@10 by window (band: seeds min-max)",
                         folder / f"{stem}-ndcg_by_window"),
        *plots.quality_vs_cost(points, "NDCG@10 (warm users, windows 2..N)", f"{title}: quality vs update cost",
                               folder / f"{stem}-quality_vs_cost"),
        *tuning_history_plot(records, folder.parent / "tuning", stem, folder / f"{stem}-tuning_history", title),
        *plots.retention(matrices, f"{title}: retention matrix R[t][j] (NDCG@10, mean over seeds)",
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
    return plots.tuning_history(
        histories, f"{title}: tuning (best-so-far validation NDCG@10)", stem
    )


def results_readme(root: Path, params: dict, sections) -> Path:
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
    for backbone in calibration.params_from(params).backbones:  # can the harness see drift?
        table = root / "results" / "tables" / f"calibration-synthetic-{backbone}.md"
        if table.exists():
            lines += [f"## Calibration: synthetic streams with known truth / {backbone}", "",
                      table.read_text(), ""]  # fmt: skip
    path = root / "results" / "README.md"
    io.write_text(path, "\n".join(lines))
    return path
