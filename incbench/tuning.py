"""Fair hyperparameter tuning with optuna, on past data only (`tune@<dataset>-<backbone>-<method>`).

Every method is tuned the same way, and never sees windows 1..N:

    base period (train part only) ──► re-split with the same rules into
    │◄─ inner base (pretrain inner M0) ─►│◄ val 1 ►│◄ val 2 ►│◄ val 3 ►│      then window 1 …
    objective: mean next-window NDCG@10 over the validation windows (the protocol, replayed)

- Search spaces live in the method files: `def search_space(trial) -> dict` (optuna's API).
  The method's defaults are enqueued as the first trial; values fixed in params.yaml
  (`methods.<name>`) are never tuned. A method without `search_space` has nothing to tune.
- Same budget for all: `tuning.trials` completed trials each, a TPE sampler seeded by a stable
  hash of (dataset, backbone, method). The inner M0 is trained once per study.
- Studies live in optuna journal files, so an interrupted study resumes where it stopped;
  the file name carries a hash of everything that defines the study (method file, fixed
  params, protocol, backbone params, split), so a changed setup starts a new study.
- Output `results/tuning/<dataset>-<backbone>-<method>/`: `best.json` (read by the run stages
  when `tuning.trials > 0`), `trials.csv`, the journal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from incbench import io, method, train
from incbench.config import ConfigError, Protocol, from_mapping, load_params, protocol_from
from incbench.data import Tables
from incbench.split import Windows, load_windows, split


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    trials: int = 0  # completed trials per method; 0 = use the defaults, no tuning
    base_fraction: float = 0.5  # share of the base period's train rows for the inner M0
    n_windows: int = 3  # validation windows cut from the rest of the base period
    seed: int = 0  # run seed used inside every trial
    max_failed: int = 10  # failed (diverged) trials tolerated before giving up

    def __post_init__(self):
        if self.trials < 0 or self.n_windows < 1 or not 0 < self.base_fraction < 1:
            raise ConfigError("tuning: trials >= 0, n_windows >= 1, 0 < base_fraction < 1")


def tuning_from(params: dict[str, Any]) -> TuningConfig:
    return from_mapping(TuningConfig, params.get("tuning"), "tuning")


def folder(root: Path, dataset: str, backbone: str, method_name: str) -> Path:
    return root / "results" / "tuning" / f"{dataset}-{backbone}-{method_name}"


def inner_windows(
    windows: Windows, protocol: Protocol, cfg: TuningConfig
) -> tuple[Windows, Protocol]:
    """The protocol replayed inside the base period's train part: nothing from windows 1..N."""
    base = windows.periods[0]
    rows = base.loc[base["part"] == "train", ["user", "item", "rating", "timestamp"]]
    side = windows.items.drop(columns=["item_idx"])
    users = windows.users.drop(columns=["user_idx"])
    inner = dataclasses.replace(protocol, base_fraction=cfg.base_fraction, n_windows=cfg.n_windows)
    frames, items, user_table, entries = split(
        Tables(rows.reset_index(drop=True), side, users), inner
    )
    manifest = {"dataset": {**windows.manifest["dataset"], "tuning": True}, "windows": entries,
                "sha256": {}}  # fmt: skip
    return Windows(manifest, frames, items, user_table), inner


def study_key(
    spec, fixed: dict, inner: Protocol, bparams, windows: Windows, cfg: TuningConfig
) -> str:
    ident = {
        "method_file": io.sha256_file(spec.path), "fixed": fixed, "protocol": dataclasses.asdict(inner),
        "backbone": dataclasses.asdict(bparams), "split": windows.manifest.get("sha256", {}),
        "seed": cfg.seed,
    }  # fmt: skip
    return hashlib.sha256(io.dumps_json(ident).encode()).hexdigest()[:12]


def tune(dataset: str, backbone: str, method_name: str, root: Path) -> Path:
    """`incbench tune`: run (or resume) the study and write best.json."""
    import optuna

    from incbench.protocol import (
        Setup,
        backbone_params,
        pretrain_model,
        resolve_device,
        run_protocol,
    )

    params = load_params(root)
    cfg = tuning_from(params)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    spec = method.get(method_name, root)
    fixed = dict((params.get("methods") or {}).get(method_name) or {})
    defaults = spec.params(fixed)  # validates the fixed values before any work
    bmodule, bparams = backbone_params(params, backbone)
    out = folder(root, dataset, backbone, method_name)
    space = getattr(spec.module, "search_space", None)
    record: dict[str, Any] = {"dataset": dataset, "backbone": backbone, "method": method_name,
                              "method_version": spec.version, "trials": 0, "fixed": fixed,
                              "params": dataclasses.asdict(defaults), "tuned": False}  # fmt: skip
    budget = getattr(bparams, "tuning_trials", None)
    if budget is not None:
        cfg = dataclasses.replace(cfg, trials=budget)
    if cfg.trials == 0 or space is None:
        record["reason"] = ("no trials in the budget (tuning.trials / backbones.<name>.tuning_trials)"
                            if cfg.trials == 0 else "no search_space in the method file")  # fmt: skip
        _write(out, record, pd.DataFrame(), None)
        return out

    windows = load_windows(root / "data" / "windows" / dataset)
    inner, inner_protocol = inner_windows(windows, protocol, cfg)
    m0, _ = pretrain_model(inner, bmodule, bparams, inner_protocol, cfg.seed, device)
    key = study_key(spec, fixed, inner_protocol, bparams, windows, cfg)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / f"study-{key}.journal"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    sampler_seed = train.seed_for(dataset, backbone, method_name) % 2**32
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=key, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                                load_if_exists=True)  # fmt: skip
    if not study.trials:
        study.enqueue_trial(dataclasses.asdict(defaults), skip_if_exists=True)
    for t in study.trials:  # left RUNNING by an interrupted run: fail it and queue it again
        if t.state == optuna.trial.TrialState.RUNNING:
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params)

    def objective(trial) -> float:
        values = {k: v for k, v in space(trial).items() if k not in fixed}
        setup = Setup(inner, spec, spec.params({**fixed, **values}), inner_protocol, backbone,
                      bmodule, bparams, cfg.seed, device, lean=True)  # fmt: skip
        summary = run_protocol(setup, m0).summary
        if summary["status"] == "not_applicable":
            raise _NotApplicable(summary["reason"])
        value = summary["next_window"].get("ndcg@10") if summary["status"] == "ok" else None
        if value is None or not math.isfinite(value):
            raise optuna.TrialPruned(summary["reason"] or "no finite NDCG@10")
        return value

    def completed() -> int:
        return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    failed = (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    failures = sum(t.state in failed for t in study.trials)
    try:
        while completed() < cfg.trials:
            if failures > cfg.max_failed:
                raise ConfigError(
                    f"tuning {method_name}: {failures} trials failed; check its search space"
                )
            study.optimize(objective, n_trials=1, catch=())
            failures += study.trials[-1].state in failed
    except _NotApplicable as exc:
        record["reason"] = f"not applicable: {exc}"
        _write(out, record, pd.DataFrame(), journal)
        return out
    best = study.best_trial
    tuned = spec.params({**fixed, **{k: v for k, v in best.params.items() if k not in fixed}})
    record.update(trials=completed(), tuned=True, params=dataclasses.asdict(tuned),
                  best_value=best.value, best_trial=best.number, sampler_seed=sampler_seed,
                  study=journal.name, objective="mean next-window NDCG@10 over "
                  f"{cfg.n_windows} validation windows inside the base period")  # fmt: skip
    trials = pd.DataFrame(
        [
            {"number": t.number, "state": t.state.name, "value": t.value, **t.params}
            for t in study.trials
        ]
    )
    _write(out, record, trials, journal)
    return out


class _NotApplicable(Exception):
    pass


def _write(out: Path, record: dict, trials: pd.DataFrame, journal: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("study-*.journal"):  # studies of an older setup
        if journal is None or stale.name != journal.name:
            stale.unlink()
    io.write_csv(out / "trials.csv", trials)
    io.write_json(out / "best.json", record)


def tuned_params(root: Path, dataset: str, backbone: str, method_name: str) -> dict | None:
    """best.json's record when tuning is on and the study tuned something, else None."""
    path = folder(root, dataset, backbone, method_name) / "best.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("tuned") else None
