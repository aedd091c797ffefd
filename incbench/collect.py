"""Run records for the report (`records.RunRecord`): one per (method, seed) of the grid and one
per reference row, built once from the run folders (summary, cost, provenance, per-user rows
read here and nowhere else); `add_estimates` fills their `derived` ($, kWh, ratios).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from incbench import io
from incbench.config import ConfigError, HardwareProfile, budget_from
from incbench.meter import contention
from incbench.metric_registry import HEADLINE, RETENTION_MATRICES
from incbench.paths import run_dir, tuning_dir
from incbench.records import RunRecord


def load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def reference_records(root: Path, params: dict, dataset: str) -> list[RunRecord]:
    """The reference rows (params.yaml `references`), one record each: the same for every
    backbone of the dataset; `kind` tells them from methods."""
    records = []
    for name in params.get("references") or []:
        folder = root / "results" / "runs" / f"{dataset}-reference-{name}-0"
        summary = load_json(folder / "summary.json")
        rec = RunRecord(name, 0, "reference", "missing", folder=folder, tuning="–",
                        reason=f"no result in {folder.relative_to(root)}: run dvc repro")  # fmt: skip
        if summary:
            per_window = pd.read_csv(folder / "windows.csv")
            rec = dataclasses.replace(
                rec, version=summary["method_version"], status=summary["status"],
                reason=summary["reason"], window_1=summary.get("window_1") or {},
                # counts and probabilities are not logits: no log-loss
                metrics={**summary["next_window"], "logloss": None},
                by_window=[None if pd.isna(v) else float(v) for v in per_window[HEADLINE]],
            )  # fmt: skip
        records.append(rec)
    return records


def collect(root: Path, params: dict, dataset: str, backbone: str) -> list[RunRecord]:
    """One record per (method, seed) of the grid: status, quality and cost values."""
    records = []
    for method_name in params.get("methods") or {}:
        for seed in params.get("seeds") or []:
            folder = run_dir(root, dataset, backbone, method_name, seed)
            records += _record(root, folder, params, dataset, backbone, method_name, seed)
    return records


def _record(root, folder, params, dataset, backbone, method_name, seed) -> list[RunRecord]:
    """The run's record ([] for a seed outside the budget: its table shows the others)."""
    summary, cost = load_json(folder / "summary.json"), load_json(folder / "cost.json")
    best = load_json(tuning_dir(root, dataset, backbone, method_name) / "best.json")
    rec = RunRecord(method_name, seed, "method", "missing", folder=folder, tuning_record=best,
                    reason=f"no result in {folder.relative_to(root)}: run dvc repro")  # fmt: skip
    if not summary:
        return [rec]
    if summary["status"] == "skipped":  # outside the backbone's budget
        said = ".methods" in summary["reason"] and seed == min(params.get("seeds") or [0])
        skipped = dataclasses.replace(rec, status="skipped", reason=summary["reason"],
                                      version=summary.get("method_version"))  # fmt: skip
        return [skipped] if said else []
    cost = cost or {}
    users = folder / "per_user.parquet"  # read here once; analysis uses the record
    rec = dataclasses.replace(
        rec, version=summary["method_version"], status=summary["status"],
        reason=summary["reason"], metrics=dict(summary["next_window"]),
        window_1=summary.get("window_1") or {}, device=cost.get("device"),
        serving_m0=cost.get("serving_m0") or {}, device_name=cost.get("device_name"),
        provenance=load_json(folder / "provenance.json") or {},
        per_user=pd.read_parquet(users) if users.exists() else None,
    )  # fmt: skip
    if summary["status"] != "ok":
        return [rec]
    tuned = summary.get("tuning")
    per_window = pd.read_csv(folder / "windows.csv")
    per_window = per_window[per_window["status"] == "ok"]
    extra = {}
    if "fit_stopped" in per_window:  # the compute cap / step budget: which updates it cut
        capped = per_window[per_window["fit_stopped"] == "max_steps"]
        extra = {"capped_windows": len(capped),
                 "capped_steps": int(capped["fit_steps"].max()) if len(capped) else 0,
                 "budget_windows": int((per_window["fit_stopped"] == "step_budget").sum())}  # fmt: skip
    if "guard_kept_previous" in per_window:  # update_guard: the updates it turned down
        extra["guard_windows"] = int(per_window["guard_kept_previous"].sum())
        extra["guard_undefined"] = int(per_window.get("guard_undefined", pd.Series(0)).sum())
    cost = {**cost, **contention(per_window)}
    return [dataclasses.replace(
        rec, cost={k: v for k, v in cost.items() if k not in ("device", "device_name", "serving_m0")},
        retention=summary["retention"][RETENTION_MATRICES[0]],
        tuning=f"{tuned['trials']} trials" if tuned else "defaults",
        by_window=[None if pd.isna(v) else float(v) for v in per_window[HEADLINE]], **extra,
    )]  # fmt: skip


def grid_seeds(params: dict, backbone: str) -> list[int]:
    budget = budget_from(params, backbone).seeds
    return [s for s in params.get("seeds") or [] if not budget or s in budget]


def add_estimates(records: list[RunRecord], profile_name: str, profile: HardwareProfile) -> None:
    """Derived columns: $ and kWh per update from measured seconds; cost relative to two
    references of the same dataset/backbone (ratios of median update seconds): full_retrain
    (the recipe's groups, all data) and fine_tune (every group, the window only) — on a
    backbone whose recipe leaves groups out (text: the encoder), a method that trains those
    groups is compared with like work by the second; delta in KB."""
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

    def reference(name, key):
        ok = [r for r in records if r["method"] == name and r["status"] == "ok"]
        return float(np.mean([robust(r, key) for r in ok])) if ok else None

    base, base_cpu = (
        reference("full_retrain", "update_wall_s"),
        reference("full_retrain", "update_cpu_s"),
    )
    tune = reference("fine_tune", "update_wall_s")
    for rec in records:
        seconds = rec.get("update_wall_s")
        if rec["status"] != "ok" or seconds is None:
            continue
        cpu = robust(rec, "update_cpu_s")
        derived = {
            "usd_per_update": profile.dollars(seconds),
            "kwh_per_update": profile.kwh(seconds),
            "cost_vs_full_retrain": robust(rec, "update_wall_s") / base if base else None,
            "cost_vs_fine_tune": robust(rec, "update_wall_s") / tune if tune else None,
            "cpu_vs_full_retrain": cpu / base_cpu if base_cpu and cpu is not None else None,
        }
        if rec.get("other_cpu_share_max") is not None:
            derived["busy_pct"] = 100 * rec["other_cpu_share_max"]
        if rec.get("delta_bytes") is not None:
            derived["delta_kb"] = rec["delta_bytes"] / 1024
        rec.derive(**derived)


def provenance(root: Path, records: list[RunRecord], dataset: str) -> list[str]:
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


def lock_digest(root: Path, records: list[RunRecord]) -> str:
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
