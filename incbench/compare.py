"""`incbench compare A B`: did a rerun reproduce a results folder?

For each (dataset, backbone, method) in either folder and each headline metric, the seeds'
values are compared: `identical` (bit for bit), `within noise` (the difference of means is
under twice its standard error from the seed spread, 2·sqrt(s_A²/n_A + s_B²/n_B)), or
`CHANGED`. Runs present on one side only are listed. Exit code 1 when anything changed or is
missing, so scripts and CI can use it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from incbench import IncbenchError

METRICS = ("ndcg@10", "recall@10", "f1@10", "accuracy", "f1", "auc")


def _runs(folder: Path) -> dict[tuple[str, str, str], dict[int, dict]]:
    runs = folder / "runs" if (folder / "runs").is_dir() else folder
    if not runs.is_dir():
        raise IncbenchError(f"{folder} is not a results folder (expected {folder}/runs/)")
    out: dict[tuple[str, str, str], dict[int, dict]] = {}
    for path in sorted(runs.glob("*/summary.json")):
        s = json.loads(path.read_text())
        out.setdefault((s["dataset"], s["backbone"], s["method"]), {})[s["seed"]] = s
    return out


def _verdict(a: list[float], b: list[float]) -> tuple[str, float]:
    if a == b:
        return "identical", 0.0
    diff = float(np.mean(b) - np.mean(a))
    var = (np.var(a, ddof=1) / len(a) if len(a) > 1 else 0.0) + (
        np.var(b, ddof=1) / len(b) if len(b) > 1 else 0.0
    )
    noise = 2 * math.sqrt(var)
    return ("within noise" if abs(diff) <= noise else "CHANGED"), diff


def compare(a: Path, b: Path, metrics=METRICS) -> tuple[list[list[str]], bool]:
    ra, rb = _runs(a), _runs(b)
    rows, bad = [], False
    for key in sorted(set(ra) | set(rb)):
        name = "/".join(key)
        if key not in ra or key not in rb:
            rows.append([name, "–", "–", "–", "–", f"only in {'B' if key not in ra else 'A'}"])
            bad = True
            continue
        seeds = sorted(set(ra[key]) & set(rb[key]))
        for metric in metrics:
            va = [ra[key][s]["next_window"].get(metric) for s in seeds]
            vb = [rb[key][s]["next_window"].get(metric) for s in seeds]
            if any(v is None for v in va + vb):
                continue
            verdict, diff = _verdict(va, vb)
            bad |= verdict == "CHANGED"
            rows.append([name, metric, f"{np.mean(va):.4f}", f"{np.mean(vb):.4f}", f"{diff:+.4f}",
                         f"{verdict} ({len(seeds)} seeds)"])  # fmt: skip
    return rows, bad


def main(a: Path, b: Path) -> int:
    rows, bad = compare(a, b)
    print(
        tabulate(rows, headers=["run", "metric", "A", "B", "B − A", "verdict"], tablefmt="github")
    )
    print("\nreproduced" if not bad else "\nNOT reproduced: see CHANGED / only-in rows above")
    return 1 if bad else 0
