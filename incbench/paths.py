"""Every name and folder the pipeline writes or reads, in one place (DESIGN.md section 1).

data/raw/<dataset>/                       fetched files (stage fetch)
data/windows/<dataset>/                   the split (stage split)
models/<dataset>-<backbone>-<seed>/       M0 (stage pretrain), + .pretrain.json beside it
models/inner/<dataset>-<backbone>/seed-<s>/   tuning's inner M0s (stage pretrain_inner)
results/tuning/<dataset>-<backbone>-<method>/   studies and best.json (stage tune)
results/runs/<dataset>-<backbone>-<method>-<seed>/   one run (stage run / reference)
"""

from __future__ import annotations

import json
from pathlib import Path


def run_id(dataset: str, backbone: str, method_name: str, seed: int) -> str:
    return f"{dataset}-{backbone}-{method_name}-{seed}"


def model_id(dataset: str, backbone: str, seed: int) -> str:
    return f"{dataset}-{backbone}-{seed}"


def windows_dir(root: Path, dataset: str) -> Path:
    return root / "data" / "windows" / dataset


def model_dir(root: Path, dataset: str, backbone: str, seed: int) -> Path:
    return root / "models" / model_id(dataset, backbone, seed)


def inner_models_dir(root: Path, dataset: str, backbone: str) -> Path:
    """Tuning's inner M0s (one per tuning seed), shared by every method's study."""
    return root / "models" / "inner" / f"{dataset}-{backbone}"


def pretrain_record(root: Path, dataset: str, backbone: str, seed: int) -> Path:
    return root / "models" / f"{model_id(dataset, backbone, seed)}.pretrain.json"


def run_dir(root: Path, dataset: str, backbone: str, method_name: str, seed: int) -> Path:
    return root / "results" / "runs" / run_id(dataset, backbone, method_name, seed)


def tuning_dir(root: Path, dataset: str, backbone: str, method_name: str) -> Path:
    return root / "results" / "tuning" / f"{dataset}-{backbone}-{method_name}"


def tuned_params(root: Path, dataset: str, backbone: str, method_name: str) -> dict | None:
    """best.json's record when the study adopted a tuned setting (keys "params", "trials",
    "best_value", …), else None: the runs then use the method's defaults and the fixed values."""
    path = tuning_dir(root, dataset, backbone, method_name) / "best.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("tuned") else None
