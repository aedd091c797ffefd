"""Is the shift-0 calibration gain the stream's or the recipe's? (README "Can this harness see
drift?", the session-7 sweep table.)

A plain script (not collected by pytest; about 12 min on 2 cores): `python
benchmarks/sweep_calibration_shift0.py`. For each variant it runs the calibration stage's own
measurement (`calibration.measure`) on a copy of this project whose params.yaml differs only in
the variant's keys — shift 0 only, seeds 0 and 1, methods frozen / full_retrain / fine_tune —
and prints frozen's NDCG@10 (mean of windows 2..N, mean over seeds; share of the oracle) and
each update's mean per-seed ratio to frozen.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from incbench import calibration

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # label -> (calibration.stream overrides, backbones.mf overrides)
    "800 / 400 / 60k (the committed stream)": ({}, {}),
    "400 / 400 / 60k": ({"n_users": 400}, {}),
    "800 / 400 / 120k": ({"n_interactions": 120_000}, {}),
    "200 / 400 / 60k": ({"n_users": 200}, {}),
    "200 / 1000 / 60k": ({"n_users": 200, "n_items": 1000}, {}),
    "committed stream, patience 5": ({}, {"patience": 5}),
    "committed stream, patience 10, 80 epochs": ({}, {"patience": 10, "pretrain_epochs": 80}),
    "committed stream, l2 0.003": ({}, {"l2": 0.003}),
}


def run(label: str, stream: dict, mf: dict, base: dict, root: Path) -> str:
    params = copy.deepcopy(base)
    cal = params["calibration"]
    cal.update(shifts=[0.0], seeds=[0, 1], methods=["frozen", "full_retrain", "fine_tune"])
    cal["stream"] = {**cal["stream"], **stream}
    params["backbones"]["mf"] = {**params["backbones"]["mf"], **mf}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    head = calibration._headline(calibration.measure("mf", root))
    value = head.pivot_table(index="row", columns="seed", values="ndcg")
    frozen, oracle = value.loc["frozen"], float(value.loc["oracle"].dropna().iloc[0])
    ratio = {
        m: float((value.loc[m] / frozen).dropna().mean()) for m in ("full_retrain", "fine_tune")
    }
    return (f"| {label} | {frozen.mean():.4f} ({frozen.mean() / oracle:.0%}) | "
            f"{ratio['full_retrain']:.3f} | {ratio['fine_tune']:.3f} |")  # fmt: skip


def main(only: list[str]) -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("methods", "datasets"):
            shutil.copytree(REPO / folder, root / folder)
        print("| variant (users / items / rows) | frozen (of oracle) | full_retrain x frozen | "
              "fine_tune x frozen |\n|---|---|---|---|")  # fmt: skip
        for label, (stream, mf) in VARIANTS.items():
            if not only or any(o in label for o in only):
                print(run(label, stream, mf, base, root), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
