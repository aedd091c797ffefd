"""params.yaml: loading and validation, before any work is done.

Every knob the pipeline reads lives in params.yaml (see the file for comments). Sections are
parsed into frozen dataclasses; an unknown key, a wrong type or an out-of-range value is one
clear `ConfigError` naming the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from incbench import IncbenchError


class ConfigError(IncbenchError):
    pass


def project_root() -> Path:
    """The project folder: $INCBENCH_ROOT, else the current directory (where dvc runs us)."""
    return Path(os.environ.get("INCBENCH_ROOT", ".")).resolve()


def load_params(root: Path | None = None) -> dict[str, Any]:
    path = (root or project_root()) / "params.yaml"
    if not path.exists():
        raise ConfigError(
            f"no params.yaml in {path.parent}: run incbench from the project root "
            "(or set INCBENCH_ROOT to it)"
        )
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping at top level")
    return params


def from_mapping(cls: type, values: dict[str, Any] | None, where: str):
    """Build dataclass `cls` from `values`, checking names and types; defaults fill the rest."""
    values = dict(values or {})
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {where}; known keys: {sorted(fields)}. "
            "Fix the spelling or remove them."
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _coerce(hints[name], value, f"{where}.{name}") for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation protocol (DESIGN.md sections 2 and 3); identical for every method.

    `preset` names a documented set of these options (PRESETS below; e.g. `lsat`): the preset
    fills its keys, params.yaml may set the others, and a preset key set to another value is an
    error (a table that cites a preset reproduces it)."""

    base_fraction: float = 0.5
    n_windows: int = 5
    window_mode: typing.Literal["count", "duration", "fixed"] = "count"
    holdout_fraction: float = 0.1
    positive_threshold: float = 4.0
    seed: int = 0
    n_negatives: int = 4
    min_window_rows: int = 20
    # equal optimiser steps (after Prabhu et al., "Computationally Budgeted Continual Learning",
    # CVPR 2023): every update gets at most this many optimiser steps over all its fits (0 = off)
    step_budget: int = 0
    # samples = each user's interactions from the (min_history + 1)-th on (0 = every row); the
    # first min_history are the user's history, not samples: in no period (manifest counts them)
    min_history: int = 0
    # window_mode fixed: the last n_windows * window_rows samples are the windows, exactly
    # window_rows each; the base is the base_rows samples before them (0 = all earlier samples)
    window_rows: int = 0
    base_rows: int = 0
    # holdout part of every period: random rows (under `seed`) or the period's last rows by time
    holdout_mode: typing.Literal["random", "tail"] = "random"
    # where a fit's early stopping picks its epoch count (backbone val_fraction/patience):
    # tail = the newest val_fraction of the fit's own rows, then all rows for that many epochs;
    # holdout = the period's holdout part (base for M0, window t for an update), best epoch kept
    selection: typing.Literal["tail", "holdout"] = "tail"
    # holdout_auc: after each update, keep M_(t-1) unless M_t's AUC on window t's holdout part
    # is higher (LSAT's fine-tuning rule, here for every method alike; none = always accept)
    update_guard: typing.Literal["none", "holdout_auc"] = "none"
    preset: str = ""

    def __post_init__(self):
        fixed = self.window_mode == "fixed"
        checks = [
            (self.step_budget >= 0, "step_budget must be >= 0 (0 = off)"),
            (0.0 < self.base_fraction < 1.0, "base_fraction must be in (0, 1), e.g. 0.5"),
            (self.n_windows >= 1, "n_windows must be at least 1, e.g. 5"),
            (0.0 <= self.holdout_fraction < 1.0, "holdout_fraction must be in [0, 1), e.g. 0.1"),
            (self.n_negatives >= 1, "n_negatives must be at least 1, e.g. 4"),
            (self.min_window_rows >= 1, "min_window_rows must be at least 1"),
            (self.min_history >= 0, "min_history must be >= 0 (0 = every row is a sample)"),
            (self.base_rows >= 0, "base_rows must be >= 0 (0 = all samples before the windows)"),
            (not fixed or self.window_rows >= 1,
             "window_mode fixed needs window_rows >= 1 (samples per window), e.g. 10000"),
            (fixed or (self.window_rows == 0 and self.base_rows == 0),
             "window_rows and base_rows apply to window_mode fixed only; remove them"),
            (self.holdout_fraction > 0
             or (self.selection == "tail" and self.update_guard == "none"),
             "selection: holdout and update_guard: holdout_auc need a holdout part: set "
             "holdout_fraction > 0, e.g. 0.1"),
            (self.preset in ("", *PRESETS),
             f"unknown preset {self.preset!r}; known presets: {sorted(PRESETS)}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid protocol in params.yaml: {message} ({self})")


# Named protocol presets: `protocol: {preset: NAME}` in params.yaml. Each reproduces a
# published setup; its citation is printed in every table it produces (CITATIONS).
PRESETS: dict[str, dict[str, Any]] = {
    # Shi et al., "Preliminary Study on Incremental Learning for Large Language Model-based
    # Recommender Systems" (LSAT), arXiv 2312.15599, CIKM 2024, on MovieLens-1M: samples from a
    # user's 11th interaction on (the previous 10 are its history); the last 200,000 samples by
    # time cut into 20 periods of 10,000 (period 1 = the base, 2..20 = the windows); inside each
    # period the first 90% by time train and the last 10% validate; the next period tests;
    # label = rating > 3 (3.5 on a 1-5 scale with whole or half stars); headline metric AUC.
    # Its training rules: early stopping on the validation part (selection: holdout), and an
    # update is kept only if it raises validation AUC (update_guard: holdout_auc).
    "lsat": {
        "min_history": 10,
        "window_mode": "fixed",
        "window_rows": 10_000,
        "base_rows": 10_000,
        "n_windows": 19,
        "holdout_mode": "tail",
        "holdout_fraction": 0.1,
        "positive_threshold": 3.5,
        "selection": "holdout",
        "update_guard": "holdout_auc",
    },
}
# A preset whose paper leads with another metric: its quality tables lead with it, and its
# per-user form joins the significance tests (report.quality_columns, report.tested).
PRESET_HEADLINES = {"lsat": "auc"}
CITATIONS = {
    "lsat": 'protocol preset lsat: the data setup of Shi et al., "Preliminary Study on '
    'Incremental Learning for Large Language Model-based Recommender Systems" (LSAT), '
    "arXiv 2312.15599 (CIKM 2024)",
}


def protocol_from(params: dict[str, Any]) -> Protocol:
    """params.yaml `protocol`, a preset's keys filled in (and checked against explicit ones)."""
    values = params.get("protocol")
    if isinstance(values, dict) and values.get("preset"):
        name = values["preset"]
        if name not in PRESETS:
            raise ConfigError(
                f"unknown protocol preset {name!r} in params.yaml; known presets: "
                f"{sorted(PRESETS)} (or remove `preset`)"
            )
        clash = {k: v for k, v in values.items() if k in PRESETS[name] and v != PRESETS[name][k]}
        if clash:
            raise ConfigError(
                f"protocol.preset {name} sets {sorted(clash)} to {PRESETS[name]}; params.yaml "
                f"sets {clash}. Remove those keys (or the preset: then the tables do not cite it)"
            )
        values = {**PRESETS[name], **values}
    return from_mapping(Protocol, values, "protocol")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Compute budget of one backbone (params.yaml `budget.<backbone>`): how much of the grid
    runs, not what a model is. Kept apart from the recipe so DVC reruns only what it touches:
    `seeds` and `max_steps` affect pretrain, tune and run stages; `tuning_trials` only tune;
    `methods` only tune and run."""

    seeds: tuple[int, ...] = ()  # the grid seeds this backbone runs (() = all of them)
    methods: tuple[str, ...] = ()  # the grid methods this backbone runs (() = all of them)
    tuning_trials: int | None = None  # trials per tuning study (None = tuning.trials)
    max_steps: int = 0  # optimiser steps per capped fit (0 = no cap; see train.fit)

    def __post_init__(self):
        if self.max_steps < 0 or (self.tuning_trials is not None and self.tuning_trials < 0):
            raise ConfigError("budget: max_steps and tuning_trials must be >= 0")


def budget_from(params: dict[str, Any], backbone: str) -> Budget:
    section = params.get("budget") or {}
    if not isinstance(section, dict):
        raise ConfigError(
            "budget must be a mapping: backbone name -> {seeds, methods, tuning_trials, max_steps}"
        )
    return from_mapping(Budget, section.get(backbone), f"budget.{backbone}")


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    """Price and power of a machine, to turn measured seconds into estimated $ and kWh."""

    kind: typing.Literal["cpu", "cuda", "mps"]
    price_per_hour: float
    watts: float
    note: str = ""

    def __post_init__(self):
        if self.price_per_hour < 0 or self.watts < 0:
            raise ConfigError("hardware_profiles: price_per_hour and watts must be >= 0")

    def dollars(self, seconds: float) -> float:
        return seconds / 3600.0 * self.price_per_hour

    def kwh(self, seconds: float) -> float:
        return seconds / 3600.0 * self.watts / 1000.0


def hardware_profile_from(params: dict[str, Any]) -> tuple[str, HardwareProfile]:
    profiles = params.get("hardware_profiles") or {}
    name = params.get("hardware_profile", "cpu")
    if name not in profiles:
        raise ConfigError(
            f"unknown hardware_profile {name!r}; defined under hardware_profiles: "
            f"{sorted(profiles)}. Set hardware_profile to one of them or add {name!r} there."
        )
    return name, from_mapping(HardwareProfile, profiles[name], f"hardware_profiles.{name}")
