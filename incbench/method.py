"""The method plugin interface and the context the harness hands to `update`.

A method is one file, `methods/<name>.py`, defining:

    VERSION = "1"                     # bump when the method's behaviour changes
    @dataclass(frozen=True)
    class Params: ...                 # typed knobs; the defaults live here
    def update(ctx, params) -> model  # M_t from M_{t-1}; may modify ctx.model in place
    def applicable(ctx) -> str | None # optional: a reason string when it cannot run

`update` receives an `UpdateContext`; the harness owns the loop, data loading, negatives,
seeding, evaluation and timing, so a method only decides *what* to train *on which data*.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from incbench import registry, train
from incbench.config import ConfigError, from_mapping


@dataclasses.dataclass
class UpdateContext:
    """Everything a method may use for one update at window t."""

    model: nn.Module  # M_{t-1}, already grown to the users/items known by the end of window t
    window: pd.DataFrame  # the train part of window t (user_idx, item_idx, positive, …)
    history: pd.DataFrame  # train parts of all periods before t, base included (read-only)
    t: int
    seed: int
    n_users: int
    n_items: int
    backbone: str
    backbone_params: Any
    rng: np.random.Generator  # method-private randomness for this window
    state: dict[str, Any]  # method-private, kept across the windows of this run only
    build: Callable[[int], nn.Module]  # seed -> freshly initialised model of the current size
    fit_defaults: dict[str, Any]
    device: str = "cpu"
    trained: set[str] = dataclasses.field(default_factory=set)
    fits: list[tuple[nn.Module, tuple[str, ...], int]] = dataclasses.field(default_factory=list)
    results: list[train.FitResult] = dataclasses.field(default_factory=list)  # one per fit
    _calls: int = 0

    @property
    def groups(self) -> list[str]:
        """Parameter-group names of the model, input side first, "head" last."""
        return train.group_names(self.model)

    def fit(
        self,
        model: nn.Module,
        interactions: pd.DataFrame,
        *,
        lr: float,
        epochs: int,
        groups: list[str] | None = None,
    ) -> train.FitResult:
        """Train `model` in place on `interactions` with the protocol's training signal."""
        self._calls += 1
        chosen = train.group_names(model) if groups is None else list(groups)
        self.trained.update(chosen)
        result = train.fit(
            model,
            interactions,
            lr=lr,
            epochs=epochs,
            groups=chosen,
            n_items=self.n_items,
            seed=train.seed_for(self.seed, self.t, "fit", self._calls),
            device=self.device,
            **self.fit_defaults,
        )
        self.fits.append((model, tuple(chosen), result.examples))  # for the FLOP count
        self.results.append(result)
        return result

    def fresh_model(self) -> nn.Module:
        """A newly initialised model of the current size (seeded by run seed and window)."""
        model = self.build(train.seed_for(self.seed, self.t, "fresh"))
        model.adopt_features(self.model)  # e.g. user profiles (data, not weights)
        return model

    @property
    def recipe_groups(self) -> list[str] | None:
        """The groups the backbone's training recipe trains (None = all): full_retrain uses it."""
        return list(self.backbone_params.pretrain_groups) or None


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    version: str
    description: str
    path: Path
    module: ModuleType

    def params(self, overrides: dict[str, Any] | None) -> Any:
        return from_mapping(self.module.Params, overrides, f"methods.{self.name}")

    def not_applicable(self, ctx: UpdateContext) -> str | None:
        check = getattr(self.module, "applicable", None)
        return check(ctx) if check else None

    def update(self, ctx: UpdateContext, params: Any) -> nn.Module:
        model = self.module.update(ctx, params)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"methods/{self.name}.py: update() must return the model")
        return model


def get(name: str, root: Path | None = None) -> MethodSpec:
    module = registry.load("methods", name, root)
    path = Path(module.__file__)
    problems = []
    if not isinstance(getattr(module, "VERSION", None), str):
        problems.append('VERSION = "1" (a string)')
    if not (
        inspect.isclass(getattr(module, "Params", None)) and dataclasses.is_dataclass(module.Params)
    ):
        problems.append("a dataclass named Params (may be empty)")
    if not callable(getattr(module, "update", None)):
        problems.append("def update(ctx, params) -> model")
    if problems:
        raise ConfigError(f"{path} must define: {'; '.join(problems)}")
    doc = (module.__doc__ or "").strip().splitlines()
    return MethodSpec(name, module.VERSION, doc[0] if doc else "", path, module)


def all_methods(root: Path | None = None) -> list[MethodSpec]:
    return [get(n, root) for n in registry.names("methods", root)]
