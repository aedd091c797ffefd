"""Rendering one table three ways: Markdown (+ provenance footnote), LaTeX (booktabs, +
provenance comments) and CSV — written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from incbench import io, stats

Column = tuple[str, str, int]  # (record key, header, decimals; None = a text column)


def fmt(values: list[float], decimals: int) -> tuple[str, float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–", float("nan"), float("nan")
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    text = f"{mean:,.{decimals}f}" + (f" ± {std:,.{decimals}f}" if len(vals) > 1 else "")
    return text, mean, std


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
                unit = "step" if steps == 1 else "steps"
                status += f"; capped: ≤{steps} {unit}/update, compute budget ({windows} windows)"
            if any(r.get("budget_windows") for r in ok):  # the protocol's equal-compute mode
                windows = max(r["budget_windows"] for r in ok)
                status += f"; step budget used up ({windows} windows)"
            guarded = [r for r in ok if r.get("guard_windows") is not None]
            if guarded:  # the protocol's update_guard: how often it kept M_(t-1)
                kept = sum(r["guard_windows"] for r in guarded) / len(guarded)
                status += (f"; update_guard kept M_(t-1) in {kept:.3g} of "
                           f"{len(guarded[0]['by_window'])} updates (mean over seeds)")  # fmt: skip
                if any(r.get("guard_undefined") for r in guarded):
                    undefined = max(r["guard_undefined"] for r in guarded)
                    status += (f", could not judge {undefined} (holdout AUC undefined: one "
                               "label), update kept")  # fmt: skip
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
            text, mean, std = fmt(values, decimals)
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
    out = [[row[0]] + ["–"] * (len(columns) - len(rebuild)) + row[1:] for row in rows]
    return m0_rows + out, pd.concat([m0_csv, csv], ignore_index=True)


def _mean_of(records, key: str) -> float | None:
    values = [r.get(key) for r in records if r.get(key) is not None]
    return float(np.mean(values)) if values else None
