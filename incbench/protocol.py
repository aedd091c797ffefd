"""The prequential loop (DESIGN.md section 3): test on window t, then update, then retain.

    M0 = pretrain(base.train)                               (stage `pretrain`, once)
    for t in 1..N:
        evaluate M_{t-1} on window t                        next-window quality (headline)
        M_t = method.update(M_{t-1}, window t train, history)   metered by the harness
        evaluate M_t on the holdout parts of periods 0..t   retention matrix R[t][j]

The harness owns this loop, data loading, negatives, seeding, evaluation and timing; a method
only implements `update` (see incbench/method.py).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from incbench import backbones, evaluate, io, method, provenance, serving, train, tuning
from incbench.config import ConfigError, Protocol, from_mapping, load_params, protocol_from
from incbench.meter import CONTENDED, Meter
from incbench.split import Windows, load_windows


def run_id(dataset: str, backbone: str, method_name: str, seed: int) -> str:
    return f"{dataset}-{backbone}-{method_name}-{seed}"


def model_id(dataset: str, backbone: str, seed: int) -> str:
    return f"{dataset}-{backbone}-{seed}"


def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for but MPS is not available; use cpu")
    return device


def backbone_params(params: dict, name: str):
    module = backbones.get(name)
    options = (params.get("backbones") or {}).get(name)
    return module, from_mapping(module.Params, options, f"backbones.{name}")


def _determinism(device: str) -> None:
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")


def pretrain_model(
    windows: Windows, bmodule, bparams, protocol: Protocol, seed: int, device: str = "cpu"
):
    """M0: a fresh model trained on the base period's train part with the backbone's recipe."""
    _determinism(device)
    n_users, n_items = windows.known(0)
    model = bmodule.build(
        bparams, n_users, n_items, side=windows.items, seed=train.seed_for(seed, 0, "init")
    )
    model.to(device)
    fit = train.fit(
        model, base_train(windows), n_items=n_items, n_negatives=protocol.n_negatives, lr=bparams.lr,
        epochs=bparams.pretrain_epochs, batch_size=bparams.batch_size, seed=train.seed_for(seed, 0, "fit"),
        groups=list(bparams.pretrain_groups) or None, device=device, **fit_options(bparams),
    )  # fmt: skip
    observe(model, base_train(windows))
    return model, fit


def fit_options(bparams) -> dict:
    """The backbone recipe's knobs every fit of that backbone uses (stopping rule, budget)."""
    return {"weight_decay": bparams.weight_decay, "max_steps": bparams.max_steps,
            "val_fraction": bparams.val_fraction, "patience": bparams.patience}  # fmt: skip


def fit_record(results: list[train.FitResult]) -> dict:
    """Per update: steps of all fits, and how the last fit ended (convergence is visible)."""
    if not results:
        return {"fit_steps": 0, "fit_epochs": 0, "fit_stopped": "no_fit"}
    last = results[-1]
    return {"fit_steps": sum(r.steps for r in results), "fit_epochs": last.epochs,
            "fit_stopped": last.stopped, "fit_first_loss": last.first_loss,
            "fit_final_loss": last.final_loss, "fit_val_loss": last.val_loss}  # fmt: skip


def observe(model, interactions: pd.DataFrame) -> None:
    """Feed new train interactions to models that keep user features (text: profiles)."""
    hook = getattr(model, "observe", None)
    if hook:
        hook(interactions)


def outside_budget(bparams, backbone: str, seed: int) -> str | None:
    """Why this seed is not run for this backbone (its `seeds` budget), or None."""
    seeds = getattr(bparams, "seeds", ())
    if seeds and seed not in seeds:
        return f"seed {seed} is outside backbones.{backbone}.seeds {list(seeds)} (compute budget)"
    return None


def pretrain(dataset: str, backbone: str, seed: int, root: Path) -> Path:
    """`incbench pretrain`: train M0 and save it under models/."""
    params = load_params(root)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    module, bparams = backbone_params(params, backbone)
    out = root / "models" / model_id(dataset, backbone, seed)
    if why := outside_budget(bparams, backbone, seed):
        with io.atomic_dir(out) as build:
            io.write_json(build / "SKIPPED.json", {"reason": why})
        io.write_json(out.parent / f"{out.name}.pretrain.json", {"skipped": why})
        return out
    windows = load_windows(root / "data" / "windows" / dataset)
    with Meter(device) as meter:
        model, fit = pretrain_model(windows, module, bparams, protocol, seed, device)
    train.save_model(model, backbone, out)
    served = copy.deepcopy(model)  # serving latency is the backbone's, measured once: M0 on
    served.grow(*windows.known(1))  # window 1's catalogue, for window 1's users
    serving_figures = measure_serving(
        served, windows.periods[1], windows.known(1)[1], device, seed, 1
    )
    del served
    io.write_json(out.parent / f"{out.name}.pretrain.json", {
        **dataclasses.asdict(fit), **dataclasses.asdict(meter.result), "serving": serving_figures,
    })  # fmt: skip
    return out


@dataclasses.dataclass
class RunResult:
    summary: dict[str, Any]
    windows: pd.DataFrame
    per_user: pd.DataFrame
    retention: pd.DataFrame
    cost: dict[str, Any]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _delta(before: dict[str, torch.Tensor], model: torch.nn.Module) -> tuple[int, int]:
    """(parameters changed, bytes of a row-sparse delta a server would receive)."""
    changed = nbytes = 0
    after = model.state_dict()
    plain = {k.replace(".base_layer", ""): v for k, v in before.items()}  # peft wraps layers
    for name, new in after.items():
        old = plain.get(name.replace(".base_layer", ""))
        if old is None or old.shape != new.shape:
            changed += new.numel()
            nbytes += new.numel() * new.element_size()
            continue
        diff = (
            (old != new.detach()).reshape(new.shape[0], -1)
            if new.dim()
            else (old != new).reshape(1, 1)
        )
        changed += int(diff.sum())
        rows = int(diff.any(dim=1).sum())
        row_bytes = (new.numel() // max(new.shape[0], 1) if new.dim() else 1) * new.element_size()
        nbytes += rows * row_bytes + (rows * 8 if new.dim() > 1 else 0)  # + row indices
    return changed, nbytes


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything fixed for one run: data, method, backbone, protocol, seed, device."""

    windows: Windows
    spec: method.MethodSpec
    mparams: Any
    protocol: Protocol
    backbone: str
    bmodule: Any
    bparams: Any
    seed: int
    device: str = "cpu"
    lean: bool = False  # tuning trials: next-window quality only (no serving, FLOPs, retention)

    def known(self, t: int) -> tuple[int, int]:
        return self.windows.known(t)

    def build(self, n_users: int, n_items: int, seed: int) -> torch.nn.Module:
        model = self.bmodule.build(
            self.bparams, n_users, n_items, side=self.windows.items, seed=seed
        )
        return model.to(self.device)


def make_context(
    setup: Setup, model, t: int, history: list[pd.DataFrame], state: dict
) -> method.UpdateContext:
    """The UpdateContext for window t (the model must already cover the users/items of t)."""
    n_users, n_items = setup.known(t)
    period = setup.windows.periods[t]
    return method.UpdateContext(
        model=model, window=period[period["part"] == "train"].reset_index(drop=True),
        history=pd.concat(history, ignore_index=True), t=t, seed=setup.seed, n_users=n_users,
        n_items=n_items, backbone=setup.backbone, backbone_params=setup.bparams,
        rng=np.random.default_rng(train.seed_for(setup.seed, t, "method", setup.spec.name)),
        state=state, build=functools.partial(setup.build, n_users, n_items),
        fit_defaults={"n_negatives": setup.protocol.n_negatives, "batch_size": setup.bparams.batch_size,
                      **fit_options(setup.bparams)},
        device=setup.device,
    )  # fmt: skip


def base_train(windows: Windows) -> pd.DataFrame:
    base = windows.periods[0]
    return base[base["part"] == "train"].reset_index(drop=True)


PROBE_ROWS = 256


def measure_serving(model, window: pd.DataFrame, n_items: int, device: str, seed: int, t: int):
    """Latency of the model that serves window t, for requests from window t's users."""
    users = np.unique(window["user_idx"].to_numpy())
    return serving.measure(
        model, users, n_items, device=device, seed=train.seed_for(seed, t, "serve")
    )


def _m0_serving(root: Path, dataset: str, backbone: str, seed: int) -> dict:
    """Serving latency of this run's M0, measured once by the pretrain stage (per backbone)."""
    path = root / "models" / f"{model_id(dataset, backbone, seed)}.pretrain.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    return record.get("serving") or {}


def index_rebuild_ms(model, n_items: int, device: str) -> float:
    """Milliseconds to recompute the serving index (the catalogue side) of `model`."""
    import time

    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.item_index(n_items)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0)


def run_protocol(setup: Setup, m0: torch.nn.Module) -> RunResult:
    """The loop for one method and seed, starting from M0 (left unmodified for the caller)."""
    windows, spec, device = setup.windows, setup.spec, setup.device
    _determinism(device)
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    model = copy.deepcopy(m0)
    state: dict[str, Any] = {}
    rows, per_user, retention = [], [], []
    status, reason = "ok", ""
    history = [base_train(windows)]
    tie = setup.protocol.seed  # ties in rankings: one permutation per protocol, every method
    model.grow(*known[1])
    if why := spec.not_applicable(make_context(setup, model, 1, history, state)):
        return _not_applicable(setup, why)
    model.to(device).eval()
    if not setup.lean:
        retention.append(
            {"t": 0, "j": 0, **evaluate.holdout(model, windows.periods, 0, known, device, tie)}
        )
    for t in range(1, windows.n_windows + 1):
        model.grow(*known[t])  # new users/items of window t get cold rows
        model.to(device).eval()
        metrics, users = evaluate.next_window(model, windows.periods, t, known, device, tie)
        users.insert(0, "window", t)
        per_user.append(users)
        ctx = make_context(setup, model, t, history, state)
        before = _snapshot(model)
        try:
            with Meter(device) as meter:
                model = spec.update(ctx, setup.mparams)
        except train.Diverged as exc:
            status, reason = "failed", f"window {t}: {exc}"
            rows.append({"window": t, "status": "failed", **metrics})
            break
        changed, delta = _delta(before, model)
        del before
        probe = ctx.window.iloc[:PROBE_ROWS]
        flops = 0 if setup.lean else sum(train.update_flops(m, g, probe, n) for m, g, n in ctx.fits)
        trainable = sum(p.numel() for name, ps in model.groups() if name in ctx.trained for p in ps)
        cost = {
            "update_wall_s": meter.result.wall_s, "update_cpu_s": meter.result.cpu_s,
            "peak_mem_mb": meter.result.peak_mem_mb, "peak_mem_kind": meter.result.peak_mem_kind,
            "peak_mem_increase_mb": meter.result.peak_mem_increase_mb,
            "other_cpu_share": meter.result.other_cpu_share, "steal_share": meter.result.steal_share,
            "loadavg_1m": meter.result.loadavg_1m,
            "trainable_params": trainable, "changed_params": changed, "delta_bytes": delta,
            "train_rows": len(ctx.window), "update_gflops": flops / 1e9,
            **fit_record(ctx.results),
        }  # fmt: skip
        rows.append({"window": t, "status": "ok", **metrics, **cost})
        history.append(ctx.window)
        observe(model, ctx.window)  # the protocol feeds user features, for every method alike
        if hasattr(model, "invalidate"):
            model.invalidate()  # weights may have changed outside fit (e.g. merged adapters)
        model.eval()
        if not setup.lean:  # what a server pays after this update: rebuild the item index
            rows[-1]["index_rebuild_ms"] = index_rebuild_ms(model, known[t][1], device)
        for j in range(0 if setup.lean else t + 1):
            retention.append(
                {
                    "t": t,
                    "j": j,
                    **evaluate.holdout(model, windows.periods, j, known, device, tie),
                }
            )
    return _result(setup, status, reason, rows, per_user, retention)


def _not_applicable(setup: Setup, why: str) -> RunResult:
    rows = [
        {"window": t, "status": "not_applicable"} for t in range(1, setup.windows.n_windows + 1)
    ]
    return _result(setup, "not_applicable", why, rows, [], [])


QUALITY_EXCLUDED = (
    "window",
    "status",
    "threshold",
    "warm_rows",
)  # per-window columns that are not metrics


def quality_summary(table: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """(windows 2..N, window 1) means of every per-window quality metric of `table`.

    The headline averages windows 2..N: window 1 evaluates M0, shared by every method, and is
    reported once on its own. With a single window, the headline is that window.
    """
    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        return {}, {}
    names = [c for c in ok.columns if c not in QUALITY_EXCLUDED and c not in COST_COLUMNS
             and not c.startswith(("serve_", "fit_", "peak_mem"))]  # fmt: skip
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(ok[c])]
    late = ok[ok["window"] >= 2] if ok["window"].max() >= 2 else ok
    first = ok[ok["window"] == 1]
    mean = lambda part: {m: _clean(float(part[m].mean())) for m in numeric}  # noqa: E731
    return mean(late), (mean(first) if len(first) else {})


COST_COLUMNS = ("update_wall_s", "update_cpu_s", "peak_mem_mb", "peak_mem_increase_mb",
                "other_cpu_share", "steal_share", "loadavg_1m",
                "update_gflops", "trainable_params", "changed_params", "delta_bytes",
                "index_rebuild_ms", "train_rows")  # fmt: skip


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _result(setup: Setup, status, reason, rows, per_user, retention) -> RunResult:
    windows = setup.windows
    table = pd.DataFrame(rows)
    ok = table[table["status"] == "ok"] if len(table) else table
    next_window, window_1 = quality_summary(table)
    ret = pd.DataFrame(retention, columns=["t", "j", "ndcg@10", "recall@10", "auc"])
    matrix = {}
    for metric in ("ndcg@10", "auc"):
        n = windows.n_windows
        grid = [[None] * (n + 1) for _ in range(n + 1)]
        for r in ret.to_dict("records"):
            grid[int(r["t"])][int(r["j"])] = _clean(float(r[metric]))
        matrix[metric] = grid  # row t = model M_t (row 0: M0), column j = holdout of period j
    summary = {
        "dataset": windows.manifest["dataset"]["name"],
        "dataset_version": windows.manifest["dataset"]["version"],
        "backbone": setup.backbone,
        "method": setup.spec.name,
        "method_version": setup.spec.version,
        "seed": setup.seed,
        "status": status,
        "reason": reason,
        "windows_evaluated": int(len(ok)),
        "next_window": next_window,  # windows 2..N
        "window_1": window_1,  # M0, the same model for every method
        "retention": matrix,
    }
    cost = {c: _clean(float(ok[c].mean())) for c in COST_COLUMNS if c in ok and len(ok)}
    if "update_wall_s" in ok and len(ok):  # robust to a few slow (busy-machine) windows
        cost["update_wall_s_median"] = _clean(float(ok["update_wall_s"].median()))
        cost["update_cpu_s_median"] = _clean(float(ok["update_cpu_s"].median()))
        shares = ok[["other_cpu_share", "steal_share"]].max(axis=1)
        cost["contended_windows"] = int((shares > CONTENDED).sum())
        cost["other_cpu_share_max"] = _clean(float(shares.max()))
    users = pd.concat(per_user, ignore_index=True) if per_user else pd.DataFrame()
    return RunResult(summary, table, users, ret, cost)


def run(dataset: str, backbone: str, method_name: str, seed: int, root: Path) -> Path:
    """`incbench run`: the loop for one (dataset, backbone, method, seed); writes results."""
    params = load_params(root)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    spec = method.get(method_name, root)
    fixed = (params.get("methods") or {}).get(method_name) or {}
    tuned = tuning.tuned_params(root, dataset, backbone, method_name)  # None unless tuned
    mparams = spec.params({**tuned["params"], **fixed} if tuned else fixed)
    bmodule, bparams = backbone_params(params, backbone)
    out = root / "results" / "runs" / run_id(dataset, backbone, method_name, seed)
    if why := outside_budget(bparams, backbone, seed):
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
    split_dir = root / "data" / "windows" / dataset
    windows = load_windows(split_dir)
    _, m0 = train.load_model(root / "models" / model_id(dataset, backbone, seed), device)
    setup = Setup(windows, spec, mparams, protocol, backbone, bmodule, bparams, seed, device)
    result = run_protocol(setup, m0)
    result.summary["tuning"] = (
        {"trials": tuned["trials"], "best_value": tuned["best_value"]} if tuned else None
    )
    out = root / "results" / "runs" / run_id(dataset, backbone, method_name, seed)
    prov = provenance.collect(
        root, device, method={"name": spec.name, "version": spec.version, "params": dataclasses.asdict(mparams)},
        backbone={"name": backbone, "params": dataclasses.asdict(bparams)},
        protocol=dataclasses.asdict(protocol), seed=seed,
        dataset=windows.manifest["dataset"], split_sha256=windows.manifest["sha256"],
        model_sha256=io.sha256_file(root / "models" / model_id(dataset, backbone, seed) / "model.safetensors"),
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
