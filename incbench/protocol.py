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
import math
import sys
from typing import Any

import numpy as np
import pandas as pd
import torch

from incbench import backbones, evaluate, flops, method, metric_registry, train
from incbench.config import (
    Budget,
    ConfigError,
    Protocol,
    from_mapping,
)
from incbench.meter import Meter, contention, snapshot, update_delta
from incbench.metrics import roc_auc
from incbench.progress import progress
from incbench.serving import index_rebuild_ms
from incbench.split import Windows
from incbench.summary import COST_COLUMNS, clean, quality_summary


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


NO_BUDGET = Budget()  # every seed, tuning.trials, no step cap


def _determinism(device: str) -> None:
    """torch.use_deterministic_algorithms(True), without its import of torch._inductor
    (2 s of start-up per stage; nothing here compiles): the flag is set on the C side, and
    the compiler's flag too if something else has imported the compiler."""
    torch._C._set_deterministic_algorithms(True, warn_only=device != "cpu")
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = True


def pretrain_model(
    windows: Windows, bmodule, bparams, protocol: Protocol, seed: int, device: str = "cpu",
    budget: Budget = NO_BUDGET,
):  # fmt: skip
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
        groups=list(bparams.pretrain_groups) or None, device=device, **fit_options(bparams, budget),
        **validation(protocol, windows, 0),
    )  # fmt: skip
    model.observe(base_train(windows))
    return model, fit


def fit_options(bparams, budget: Budget) -> dict:
    """The knobs every fit of a backbone uses: the recipe's stopping rule, the budget's cap."""
    return {"weight_decay": bparams.weight_decay, "max_steps": budget.max_steps,
            "val_fraction": bparams.val_fraction, "patience": bparams.patience}  # fmt: skip


def fit_record(results: list[train.FitResult]) -> dict:
    """Per update: steps of all fits, and how the last fit ended (convergence is visible)."""
    if not results:
        return {"fit_steps": 0, "fit_epochs": 0, "fit_stopped": "no_fit"}
    last = results[-1]
    return {"fit_steps": sum(r.steps for r in results), "fit_epochs": last.epochs,
            "fit_stopped": last.stopped, "fit_first_loss": last.first_loss,
            "fit_final_loss": last.final_loss, "fit_val_loss": last.val_loss}  # fmt: skip


def outside_budget(budget: Budget, backbone: str, seed: int, method: str | None = None
                   ) -> str | None:  # fmt: skip
    """Why this seed (or method) is not run for this backbone (its budget), or None."""
    if method is not None and budget.methods and method not in budget.methods:
        return (f"method {method} is outside budget.{backbone}.methods {list(budget.methods)} "
                "(compute budget)")  # fmt: skip
    if budget.seeds and seed not in budget.seeds:
        return (
            f"seed {seed} is outside budget.{backbone}.seeds {list(budget.seeds)} (compute budget)"
        )
    return None


@dataclasses.dataclass
class RunResult:
    summary: dict[str, Any]
    windows: pd.DataFrame
    per_user: pd.DataFrame
    retention: pd.DataFrame
    cost: dict[str, Any]


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
    budget: Budget = NO_BUDGET  # the backbone's compute budget (its max_steps cap)

    def known(self, t: int) -> tuple[int, int]:
        return self.windows.known(t)

    def build(self, n_users: int, n_items: int, seed: int) -> torch.nn.Module:
        model = self.bmodule.build(
            self.bparams, n_users, n_items, side=self.windows.items, seed=seed
        )
        return model.to(self.device)


def make_context(
    setup: Setup, model, t: int, history: list[pd.DataFrame], state: dict, m0=None
) -> method.UpdateContext:
    """The UpdateContext for window t (the model must already cover the users/items of t)."""
    n_users, n_items = setup.known(t)
    window = train_rows(setup.windows, t)
    return method.UpdateContext(
        model=model, window=window,
        history=pd.concat(history, ignore_index=True), t=t, seed=setup.seed, n_users=n_users,
        n_items=n_items, backbone=setup.backbone, backbone_params=setup.bparams,
        rng=np.random.default_rng(train.seed_for(setup.seed, t, "method", setup.spec.name)),
        state=state, build=functools.partial(setup.build, n_users, n_items),
        fit_defaults={"n_negatives": setup.protocol.n_negatives, "batch_size": setup.bparams.batch_size,
                      **fit_options(setup.bparams, setup.budget),
                      **validation(setup.protocol, setup.windows, t, window)},
        device=setup.device, m0=m0, periods=tuple(history),
        step_budget=setup.protocol.step_budget,
    )  # fmt: skip


def base_train(windows: Windows) -> pd.DataFrame:
    return train_rows(windows, 0)


def holdout_rows(windows: Windows, t: int) -> pd.DataFrame:
    period = windows.periods[t]
    return period[period["part"] == "holdout"].reset_index(drop=True)


def train_rows(windows: Windows, t: int) -> pd.DataFrame:
    period = windows.periods[t]
    return period[period["part"] == "train"].reset_index(drop=True)


def validation(protocol: Protocol, windows: Windows, t: int,
               observed: pd.DataFrame | None = None) -> dict:  # fmt: skip
    """`selection: holdout`: period t's holdout part is every fit's validation frame, scored
    as served after period t's train part (as the guard and the next window see the model;
    `observed`: that train part when the caller holds it already)."""
    if protocol.selection != "holdout":
        return {}
    observed = train_rows(windows, t) if observed is None else observed
    return {"validation": train.Validation(holdout_rows(windows, t), observed)}


def holdout_auc(model, windows: Windows, t: int, device: str) -> float:
    """AUC of `model`'s logits for the liked label on period t's holdout rows (the guard)."""
    rows = holdout_rows(windows, t)
    return roc_auc(rows["positive"].to_numpy(), evaluate.logits(model, rows, device))


PROBE_ROWS = 32  # the FLOP rates are exact for any probe with two or more items: small is cheap


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
    held: dict = {}  # retention: each holdout's rows and exclusion set, built once per run
    if not setup.lean:  # a first build loads and tokenises (text), cached for the process:
        setup.build(*known[1], seed=0)  # here, not inside the first timed fresh_model()
    model.grow(*known[1])
    if why := spec.not_applicable(make_context(setup, model, 1, history, state)):
        return _not_applicable(setup, why)
    model.to(device).eval()
    if not setup.lean:
        retention.append(
            {
                "t": 0,
                "j": 0,
                **evaluate.holdout(model, windows.periods, 0, known, device, tie, held),
            }  # fmt: skip
        )
    label = f"{setup.backbone}/{spec.name} seed {setup.seed}: windows"
    for t in progress(range(1, windows.n_windows + 1), label):
        model.grow(*known[t])  # new users/items of window t get cold rows
        model.to(device).eval()
        metrics, users = evaluate.next_window(model, windows.periods, t, known, device, tie)
        users.insert(0, "window", t)
        per_user.append(users)
        ctx = make_context(setup, model, t, history, state, m0)
        before = snapshot(model)
        guarded = setup.protocol.update_guard == "holdout_auc"
        # the guard's fallback: M_(t-1) and the method's state as they were before the update
        previous = (copy.deepcopy(model), copy.deepcopy(state)) if guarded else None
        try:
            with Meter(device) as meter:
                model = spec.update(ctx, setup.mparams)
                candidate = model
                if guarded:  # part of the update: its validation passes are timed too
                    model, guard = _guard(model, previous[0], ctx.window, setup, t)
        except train.Diverged as exc:
            status, reason = "failed", f"window {t}: {exc}"
            rows.append({"window": t, "status": "failed", **metrics})
            break
        if guarded and guard["guard_kept_previous"]:  # the update is discarded, state too
            state.clear()
            state.update(previous[1])
        del previous
        changed, delta = update_delta(before, model)
        del before
        probe = ctx.window.iloc[:PROBE_ROWS]
        n_flops = 0 if setup.lean else sum(flops.update_flops(m, g, probe, work, extra)
                                         for m, g, work, extra in ctx.fits)  # fmt: skip
        trainable = sum(p.numel() for name, ps in candidate.groups() if name in ctx.trained
                        for p in ps)  # fmt: skip
        del candidate
        cost = {
            "update_wall_s": meter.result.wall_s, "update_cpu_s": meter.result.cpu_s,
            "peak_mem_mb": meter.result.peak_mem_mb, "peak_mem_kind": meter.result.peak_mem_kind,
            "peak_mem_increase_mb": meter.result.peak_mem_increase_mb,
            "other_cpu_share": meter.result.other_cpu_share, "steal_share": meter.result.steal_share,
            "loadavg_1m": meter.result.loadavg_1m,
            "trainable_params": trainable, "changed_params": changed, "delta_bytes": delta,
            "train_rows": len(ctx.window), "update_gflops": n_flops / 1e9,
            **fit_record(ctx.results), **(guard if guarded else {}),
        }  # fmt: skip
        rows.append({"window": t, "status": "ok", **metrics, **cost})
        history.append(ctx.window)
        if not guarded:  # (the guard fed and invalidated both candidates already)
            model.observe(ctx.window)  # the protocol feeds user features, every method alike
            model.invalidate()  # weights may have changed outside fit (e.g. merged adapters)
        model.eval()
        if not setup.lean:  # what a server pays after this update: rebuild the item index
            rows[-1]["index_rebuild_ms"] = index_rebuild_ms(model, known[t][1], device)
        for j in range(0 if setup.lean else t + 1):
            retention.append(
                {
                    "t": t,
                    "j": j,
                    **evaluate.holdout(model, windows.periods, j, known, device, tie, held),
                }
            )
    return _result(setup, status, reason, rows, per_user, retention)


def _guard(model, previous, window: pd.DataFrame, setup: Setup, t: int
           ) -> tuple[torch.nn.Module, dict]:  # fmt: skip
    """`update_guard: holdout_auc`: M_t if its AUC on window t's holdout part is higher than
    M_(t-1)'s, else M_(t-1) (LSAT keeps the old weights when validation AUC does not improve).
    Both are scored as served: after observing window t's train part (user features). An AUC
    that cannot be computed (the holdout has one label) cannot judge: the update is kept, and
    the row says so (guard_undefined)."""
    for m in (model, previous):
        m.observe(window)
        m.invalidate()
        m.to(setup.device).eval()
    new, old = (holdout_auc(m, setup.windows, t, setup.device) for m in (model, previous))
    undefined = math.isnan(new) or math.isnan(old)
    kept = not undefined and not new > old  # a tie keeps M_(t-1)
    guard = {"guard_auc_update": new, "guard_auc_previous": old, "guard_kept_previous": int(kept),
             "guard_undefined": int(undefined)}  # fmt: skip
    return (previous if kept else model), guard


def _not_applicable(setup: Setup, why: str) -> RunResult:
    rows = [
        {"window": t, "status": "not_applicable"} for t in range(1, setup.windows.n_windows + 1)
    ]
    return _result(setup, "not_applicable", why, rows, [], [])


def _result(setup: Setup, status, reason, rows, per_user, retention) -> RunResult:
    windows = setup.windows
    table = pd.DataFrame(rows)
    ok = table[table["status"] == "ok"] if len(table) else table
    next_window, window_1 = quality_summary(table)
    ret = pd.DataFrame(retention, columns=["t", "j", *metric_registry.RETENTION])
    matrix = {}
    for metric in metric_registry.RETENTION_MATRICES:
        n = windows.n_windows
        grid = [[None] * (n + 1) for _ in range(n + 1)]
        for r in ret.to_dict("records"):
            grid[int(r["t"])][int(r["j"])] = clean(float(r[metric]))
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
    cost = {c: clean(float(ok[c].mean())) for c in COST_COLUMNS if c in ok and len(ok)}
    if "update_wall_s" in ok and len(ok):  # robust to a few slow (busy-machine) windows
        cost["update_wall_s_median"] = clean(float(ok["update_wall_s"].median()))
        cost["update_cpu_s_median"] = clean(float(ok["update_cpu_s"].median()))
        cost.update({k: clean(v) if isinstance(v, float) else v
                     for k, v in contention(ok).items()})  # fmt: skip
    users = pd.concat(per_user, ignore_index=True) if per_user else pd.DataFrame()
    return RunResult(summary, table, users, ret, cost)
