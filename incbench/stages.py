"""The stage commands that train and run: `incbench pretrain` and `incbench run`.

They read params.yaml, load data and models, call the loop (incbench/protocol.py, no file
I/O) and write their folders atomically (names: incbench/paths.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd

from incbench import checkpoint, io, method, provenance
from incbench.config import budget_from, load_params, protocol_from
from incbench.meter import Meter
from incbench.paths import model_dir, pretrain_record, run_dir, tuned_params, windows_dir
from incbench.protocol import (
    Setup,
    backbone_params,
    outside_budget,
    pretrain_model,
    resolve_device,
    run_protocol,
)
from incbench.serving import measure_serving
from incbench.split import load_windows


def pretrain(dataset: str, backbone: str, seed: int, root: Path) -> Path:
    """`incbench pretrain`: train M0 and save it under models/."""
    params = load_params(root)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    module, bparams = backbone_params(params, backbone)
    budget = budget_from(params, backbone)
    out = model_dir(root, dataset, backbone, seed)
    if why := outside_budget(budget, backbone, seed):
        with io.atomic_dir(out) as build:
            io.write_json(build / "SKIPPED.json", {"reason": why})
        io.write_json(pretrain_record(root, dataset, backbone, seed), {"skipped": why})
        return out
    windows = load_windows(windows_dir(root, dataset))
    with Meter(device) as meter:
        model, fit = pretrain_model(windows, module, bparams, protocol, seed, device, budget)
    checkpoint.save_model(model, backbone, out)
    served = copy.deepcopy(model)  # serving latency is the backbone's, measured once: M0 on
    served.grow(*windows.known(1))  # window 1's catalogue, for window 1's users
    serving_figures = measure_serving(
        served, windows.periods[1], windows.known(1)[1], device, seed, 1
    )
    del served
    io.write_json(pretrain_record(root, dataset, backbone, seed), {
        **dataclasses.asdict(fit), **dataclasses.asdict(meter.result), "serving": serving_figures,
    })  # fmt: skip
    return out


def _m0_serving(root: Path, dataset: str, backbone: str, seed: int) -> dict:
    """Serving latency of this run's M0, measured once by the pretrain stage (per backbone)."""
    path = pretrain_record(root, dataset, backbone, seed)
    record = json.loads(path.read_text()) if path.exists() else {}
    return record.get("serving") or {}


def run(dataset: str, backbone: str, method_name: str, seed: int, root: Path) -> Path:
    """`incbench run`: the loop for one (dataset, backbone, method, seed); writes results."""
    params = load_params(root)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    spec = method.get(method_name, root)
    fixed = (params.get("methods") or {}).get(method_name) or {}
    tuned = tuned_params(root, dataset, backbone, method_name)  # None unless tuned
    mparams = spec.params({**tuned["params"], **fixed} if tuned else fixed)
    bmodule, bparams = backbone_params(params, backbone)
    budget = budget_from(params, backbone)
    out = run_dir(root, dataset, backbone, method_name, seed)
    if why := outside_budget(budget, backbone, seed, method_name):
        with io.atomic_dir(out) as build:
            summary = {"dataset": dataset, "backbone": backbone, "method": method_name,
                       "method_version": spec.version, "seed": seed, "status": "skipped",
                       "reason": why, "next_window": {}}  # fmt: skip
            io.write_json(build / "summary.json", summary)
            io.write_json(build / "cost.json", {"device": device})
            io.write_csv(build / "windows.csv", pd.DataFrame({"status": ["skipped"]}))
            io.write_csv(build / "retention.csv", pd.DataFrame(columns=["t", "j"]))
            io.write_parquet(build / "per_user.parquet", pd.DataFrame({"window": []}))
            io.write_json(build / "provenance.json", {"skipped": why})
        return out
    split_dir = windows_dir(root, dataset)
    windows = load_windows(split_dir)
    _, m0 = checkpoint.load_model(model_dir(root, dataset, backbone, seed), device)
    setup = Setup(windows, spec, mparams, protocol, backbone, bmodule, bparams, seed, device,
                  budget=budget)  # fmt: skip
    result = run_protocol(setup, m0)
    result.summary["tuning"] = (
        {"trials": tuned["trials"], "best_value": tuned["best_value"]} if tuned else None
    )
    out = run_dir(root, dataset, backbone, method_name, seed)
    prov = provenance.collect(
        root, device, method={"name": spec.name, "version": spec.version, "params": dataclasses.asdict(mparams)},
        backbone={"name": backbone, "params": dataclasses.asdict(bparams)},
        protocol=dataclasses.asdict(protocol), seed=seed,
        dataset=windows.manifest["dataset"], split_sha256=windows.manifest["sha256"],
        model_sha256=io.sha256_file(model_dir(root, dataset, backbone, seed) / "model.safetensors"),
    )  # fmt: skip
    with io.atomic_dir(out) as build:
        io.write_json(build / "summary.json", result.summary)
        io.write_json(
            build / "cost.json",
            {**result.cost, "device": device, "device_name": prov["device_name"],
             "serving_m0": _m0_serving(root, dataset, backbone, seed)},
        )  # fmt: skip
        io.write_csv(build / "windows.csv", result.windows)
        io.write_csv(build / "retention.csv", result.retention)
        io.write_parquet(build / "per_user.parquet", result.per_user)
        io.write_json(build / "provenance.json", prov)
    return out
