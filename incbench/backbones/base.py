"""The backbone contract: what every model a backbone's `build` returns implements.

A newcomer adding a backbone reads this file. A backbone module `incbench/backbones/<name>.py`
defines `Params` (a frozen dataclass extending `Recipe`: architecture knobs + the training
recipe) and `build(params, n_users, n_items, side=None, seed=0, config=None) -> Backbone`.
The model subclasses `Backbone`: the required methods raise until implemented; the optional
hooks are documented no-ops the harness always calls, so generic code never asks a model what
it has and names no backbone.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pandas as pd
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The training recipe every backbone shares (M0 and full_retrain use it; every fit of the
    backbone uses the stopping rule). A backbone's Params extends it and may change defaults."""

    pretrain_groups: tuple[str, ...] = ()  # groups the recipe trains; () = every group
    pretrain_epochs: int = 40  # at most; early stopping (val_fraction, patience) decides
    lr: float = 0.01
    batch_size: int = 4096
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # time-ordered validation tail of every fit (0 = no early stop)
    patience: int = 2  # epochs without a better validation loss before stopping

    def check_recipe(self, name: str) -> None:
        from incbench.config import ConfigError

        if self.pretrain_epochs < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError(f"backbones.{name}: pretrain_epochs, lr and batch_size must be > 0")
        if not 0 <= self.val_fraction < 1 or self.patience < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"backbones.{name}: val_fraction in [0, 1), patience >= 0, weight_decay >= 0"
            )


class Backbone(nn.Module):
    """Required: groups, grow, score, item_index, score_index, config. Optional: the hooks."""

    # ---- required ------------------------------------------------------------------------
    def groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Ordered [(name, [Parameter, ...])], input side first, "head" last; every parameter
        in exactly one group."""
        raise NotImplementedError

    def grow(self, n_users: int, n_items: int) -> None:
        """Append rows for new users/items (cold rows); old rows untouched."""
        raise NotImplementedError

    def score(self, users: torch.Tensor, items: torch.Tensor, rows=None) -> torch.Tensor:
        """One logit per (user, item) pair. During a fit, `rows` holds each example's position
        in the frame given to `prepare_training` (for per-example features); else None."""
        raise NotImplementedError

    def item_index(self, n_items: int) -> torch.Tensor:
        """The catalogue side over items 0..n_items-1, computed once (what serving caches)."""
        raise NotImplementedError

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Logits [len(users), len(index)] against an `item_index`."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able dict from which `build(..., config=...)` rebuilds the same shapes."""
        raise NotImplementedError

    def score_all(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        return self.score_index(users, self.item_index(n_items))

    # ---- optional hooks: no-ops unless a backbone needs them -------------------------------
    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor | None:
        """A scalar added to each training step's loss (e.g. L2 of the batch's rows)."""
        return None

    def score_and_penalty(self, users: torch.Tensor, items: torch.Tensor, rows=None):
        """One training step's (logits, penalty or None); what `fit` calls. Override it when
        the two can share work (mf looks its rows up once); the default calls both."""
        return self.score(users, items, rows=rows), self.penalty(users, items)

    def prepare_training(self, rows: pd.DataFrame, probe: bool = False) -> None:
        """Before a fit on `rows` (time-ordered): per-example features, frozen-prefix caches.
        `probe`: a FLOP probe on these rows only."""

    def finish_training(self) -> None:
        """After every fit (also on error): drop what prepare_training built."""

    def lr_scale(self, group: str) -> float:
        """Multiplier of a fit's lr for this group (pretrained weights may need a smaller one)."""
        return 1.0

    def capped_groups(self) -> list[str] | None:
        """The groups a `max_steps` budget binds (None: every fit)."""
        return None

    def observe(self, interactions: pd.DataFrame) -> None:
        """New train interactions, after pretraining and after every update (user features)."""

    @contextlib.contextmanager
    def served_after(self, interactions: pd.DataFrame):
        """Inside: score as the model will be served once it has observed `interactions`
        (validation rows scored during a fit, `selection: holdout`); afterwards the model holds
        exactly what it held before. No user features: nothing to do."""
        yield

    def invalidate(self) -> None:
        """After every update: drop cached catalogue values whose weights changed."""

    def adopt_features(self, other: Backbone) -> None:
        """A fresh model (full_retrain) takes the previous model's data-derived features."""


def grown(emb: nn.Embedding, n: int) -> nn.Embedding:
    """`emb` with rows up to `n`: old rows kept bit for bit, new rows zero (a cold user or item
    starts from the shared prior); the same object when it already has `n` rows."""
    if n <= emb.num_embeddings:
        return emb
    new = nn.Embedding(n, emb.embedding_dim).to(emb.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: emb.num_embeddings] = emb.weight
    new.weight.requires_grad_(emb.weight.requires_grad)
    return new
