"""`incbench report`: comparison tables from the run results, in Markdown, LaTeX and CSV.

One table per (dataset, backbone): one row per method (with its version) in params.yaml order,
next-window metrics averaged over windows, then mean ± sample std over seeds. Methods that were
not applicable, failed, or have no result yet say so in the `status` column. Output is a pure
function of the run files and params: re-running on unchanged runs gives identical bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from incbench import io
from incbench.config import load_params, protocol_from
from incbench.protocol import run_id

COLUMNS = [  # (key in summary.next_window or cost.json, header, decimals)
    ("ndcg@10", "NDCG@10", 4),
    ("recall@10", "Recall@10", 4),
    ("f1@10", "F1@10", 4),
    ("accuracy", "Accuracy", 4),
    ("f1", "F1", 4),
    ("auc", "AUC", 4),
    ("cold_item:ndcg@10", "NDCG@10 cold items", 4),
    ("update_wall_s", "Update s", 2),
]


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect(root: Path, params: dict, dataset: str, backbone: str) -> list[dict[str, Any]]:
    """One record per (method, seed) of the grid, with status and the values used in tables."""
    records = []
    for method_name in params.get("methods") or {}:
        for seed in params.get("seeds") or []:
            folder = root / "results" / "runs" / run_id(dataset, backbone, method_name, seed)
            summary, cost = _load(folder / "summary.json"), _load(folder / "cost.json")
            rec = {"method": method_name, "seed": seed, "version": None, "status": "missing",
                   "reason": f"no result in {folder.relative_to(root)}: run dvc repro"}  # fmt: skip
            if summary:
                rec.update(version=summary["method_version"], status=summary["status"],
                           reason=summary["reason"], **summary["next_window"])  # fmt: skip
                rec["device"] = (cost or {}).get("device_name")
                if summary["status"] == "ok":
                    rec.update({k: v for k, v in (cost or {}).items() if k.endswith("_s")})
            records.append(rec)
    return records


def _fmt(values: list[float], decimals: int) -> tuple[str, float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–", float("nan"), float("nan")
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    text = f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if len(vals) > 1 else "")
    return text, mean, std


def table(records: list[dict[str, Any]]) -> tuple[list[list[str]], pd.DataFrame]:
    rows, csv_rows = [], []
    for method_name in dict.fromkeys(r["method"] for r in records):
        recs = [r for r in records if r["method"] == method_name]
        ok = [r for r in recs if r["status"] == "ok"]
        version = next((r["version"] for r in recs if r["version"]), "?")
        label = f"{method_name} (v{version})"
        if ok:
            status = "ok" if len(ok) == len(recs) else f"ok on {len(ok)}/{len(recs)} seeds"
        else:
            first = recs[0]
            status = f"{first['status'].replace('_', ' ')}: {first['reason']}"
        row, csv_row = [label], {"method": method_name, "version": version, "seeds": len(ok)}
        for key, _, decimals in COLUMNS:
            text, mean, std = _fmt([r.get(key) for r in ok], decimals)
            row.append(text)
            csv_row[f"{key}_mean"], csv_row[f"{key}_std"] = mean, std
        row.append(status)
        csv_row["status"] = status
        rows.append(row)
        csv_rows.append(csv_row)
    return rows, pd.DataFrame(csv_rows)


def caption(root: Path, params: dict, dataset: str, backbone: str, records) -> str:
    protocol = protocol_from(params)
    manifest = _load(root / "data" / "windows" / dataset / "manifest.json") or {}
    split_hash = (manifest.get("sha256") or {}).get("window-0.parquet", "")[:12] or "unknown"
    devices = sorted({r["device"] for r in records if r.get("device")}) or ["unknown"]
    seeds = params.get("seeds") or []
    return (
        f"{dataset} / {backbone}: next-window metrics (model M_(t-1) on window t) averaged over "
        f"{protocol.n_windows} windows, mean ± std over seeds {seeds}. Protocol: base "
        f"{protocol.base_fraction:g}, {protocol.n_windows} windows by {protocol.window_mode}, "
        f"holdout {protocol.holdout_fraction:g}, positive = rating >= "
        f"{protocol.positive_threshold:g}, {protocol.n_negatives} negatives, full-catalogue "
        f"ranking. Split {split_hash}. Update seconds measured on {', '.join(devices)}."
    )


def write_table(
    out: Path, stem: str, headers: list[str], rows, csv: pd.DataFrame, cap: str
) -> list[Path]:
    md = (
        f"{cap}\n\n"
        + tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
        + "\n"
    )
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.csv"]
    io.write_text(paths[0], md)
    io.write_text(paths[1], latex(headers, rows, cap))
    io.write_csv(paths[2], csv)
    return paths


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
                    "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--"}.get(ch, ch))  # fmt: skip
    return "".join(out).replace(">=", r"$\geq$")


def report(root: Path) -> list[Path]:
    params = load_params(root)
    out = root / "results" / "tables"
    headers = ["Method", *(h for _, h, _ in COLUMNS), "Status"]
    written = []
    for dataset in params.get("datasets") or {}:
        for backbone in params.get("backbones") or {}:
            records = collect(root, params, dataset, backbone)
            rows, csv = table(records)
            cap = caption(root, params, dataset, backbone, records)
            written += write_table(out, f"quality-{dataset}-{backbone}", headers, rows, csv, cap)
    return written
