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

import copy
import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from incbench import IncbenchError, registry, train
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
    step_budget: int = 0  # the protocol's equal-compute mode: optimiser steps per update (0 = off)
    m0: nn.Module | None = None  # the pretrained model (read-only: never train or modify it)
    periods: tuple[pd.DataFrame, ...] = ()  # train parts of periods 0..t-1 (history, split)
    trained: set[str] = dataclasses.field(default_factory=set)
    # (model, groups, FitResult, extra_loss) of every training pass, for the FLOP count
    fits: list[list] = dataclasses.field(default_factory=list)
    results: list[train.FitResult] = dataclasses.field(default_factory=list)  # one per fit
    _calls: int = 0
    _previous: nn.Module | None = None

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
        extra_loss: train.ExtraLoss | None = None,
    ) -> train.FitResult:
        """Train `model` in place on `interactions` with the protocol's training signal, plus
        `extra_loss(model, batch)` on every step if given (its passes are timed and counted)."""
        self._calls += 1
        chosen = train.group_names(model) if groups is None else list(groups)
        budget = {}
        if self.step_budget:  # equal compute: this fit gets what the update has left
            left = self.step_budget - self.steps_used
            if left <= 0:
                result = train.FitResult(0, 0, float("nan"), stopped="step_budget")
                self.results.append(result)
                return result
            budget["step_budget"] = left
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
            extra_loss=extra_loss,
            **budget,
            **self.fit_defaults,
        )
        self.fits.append([model, tuple(chosen), result, extra_loss])  # FLOP count
        self.results.append(result)
        return result

    @property
    def steps_used(self) -> int:
        """Optimiser steps this update's fits have taken so far."""
        return sum(r.steps for r in self.results)

    @property
    def previous(self) -> nn.Module:
        """A frozen copy of M_(t-1) (e.g. a distillation teacher), made on first use: take it
        before the first `fit` of the update (after it, ctx.model is no longer M_(t-1))."""
        if self._previous is None:
            if self._calls:
                raise IncbenchError(
                    "ctx.previous is M_(t-1): take it before the update's first ctx.fit"
                )
            self._previous = copy.deepcopy(self.model).eval()
            for p in self._previous.parameters():
                p.requires_grad_(False)
        return self._previous

    def batches(
        self, model: nn.Module, interactions: pd.DataFrame, *, batch_size: int | None = None
    ):
        """The protocol's batches over `interactions` (seeded negatives, shuffled), one epoch,
        for passes that need gradients without training (e.g. Fisher information). The
        examples are counted as a forward + backward of `model` in the update's FLOPs."""
        self._calls += 1
        rng = np.random.default_rng(train.seed_for(self.seed, self.t, "batches", self._calls))
        rows = interactions.reset_index(drop=True)
        epochs = train._Epochs(rows, self.fit_defaults["n_negatives"], self.n_items, rng,
                               self.device)  # fmt: skip
        entry = [model, tuple(train.group_names(model)), train.FitResult(0, 0, float("nan")), None]
        self.fits.append(entry)
        for batch in epochs.batches(batch_size or self.fit_defaults["batch_size"]):
            done = entry[2]
            entry[2] = dataclasses.replace(done, steps=done.steps + 1,
                                           examples=done.examples + len(batch.users))  # fmt: skip
            yield batch

    @staticmethod
    def pad_like(tensor: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """`tensor` (per-parameter state saved earlier) zero-padded to `param`'s shape: rows
        appended by `grow` (new users/items) get zeros."""
        if tensor.shape == param.shape:
            return tensor
        out = torch.zeros_like(param)
        out[tuple(slice(0, n) for n in tensor.shape)] = tensor
        return out

    def fresh_model(self) -> nn.Module:
        """A newly initialised model of the current size (seeded by run seed and window)."""
        model = self.build(train.seed_for(self.seed, self.t, "fresh"))
        model.adopt_features(self.model)  # e.g. user profiles (data, not weights)
        return model

    @property
    def recipe_groups(self) -> list[str] | None:
        """The groups the backbone's training recipe trains (None = all): full_retrain uses it."""
        return list(self.backbone_params.pretrain_groups) or None


def use_recipe(params: Any, backbone_params: Any) -> Any:
    """`params` with `epochs` / `lr` left at None replaced by the backbone recipe's values
    (pretrain_epochs, lr): what full_retrain-like methods run (tuning's trial 0 too)."""
    return dataclasses.replace(
        params,
        epochs=params.epochs if params.epochs is not None else backbone_params.pretrain_epochs,
        lr=params.lr if params.lr is not None else backbone_params.lr,
    )


class _SuggestedNames:
    """A stand-in optuna trial that records which names a search space suggests."""

    def __init__(self):
        self.names: list[str] = []

    def suggest_float(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_int(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.names.append(name)
        return choices[0]


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    version: str
    description: str
    path: Path
    module: ModuleType

    def params(self, overrides: dict[str, Any] | None) -> Any:
        return from_mapping(self.module.Params, overrides, f"methods.{self.name}")

    def tunable(self) -> list[str]:
        """The Params fields `search_space` suggests (none: the method always runs its
        defaults next to tuned baselines — a comparison should say so)."""
        space = getattr(self.module, "search_space", None)
        if space is None:
            return []
        names = _SuggestedNames()
        space(names)
        return sorted(names.names)

    def applicability(self) -> str:
        """Which backbones it runs on: every one, or what its `applicable` check requires."""
        check = getattr(self.module, "applicable", None)
        if check is None:
            return "every backbone"
        return (check.__doc__ or "checked per backbone").strip().splitlines()[0]

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
