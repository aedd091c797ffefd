"""Retrain from scratch on the newest `windows` periods only (the backbone's recipe).

The classic sliding-window baseline of drifting streams: like full_retrain, but old data is
dropped — window t plus the train parts of the `windows - 1` periods before it (the base
period counts as one). With `windows` larger than the history it equals full_retrain.
"""

from dataclasses import dataclass

import pandas as pd

from incbench.method import use_recipe as resolve  # None: the recipe's epochs and lr

VERSION = "1"


@dataclass(frozen=True)
class Params:
    windows: int = 2  # periods trained on, window t included
    epochs: int | None = None  # None: the backbone's pretrain_epochs (a maximum)
    lr: float | None = None  # None: the backbone's lr

    def __post_init__(self):
        if self.windows < 1:
            raise ValueError("windows >= 1")


def search_space(trial):
    return {
        "windows": trial.suggest_int("windows", 1, 4),
        "lr": trial.suggest_float("lr", 3e-3, 5e-2, log=True),
        "epochs": trial.suggest_int("epochs", 5, 40),
    }


def update(ctx, params):
    params = resolve(params, ctx.backbone_params)
    kept = (
        list(ctx.periods[len(ctx.periods) - (params.windows - 1) :]) if params.windows > 1 else []
    )
    data = pd.concat([*kept, ctx.window], ignore_index=True)
    model = ctx.fresh_model()  # as full_retrain: ID parts fresh, published weights as published
    ctx.fit(model, data, lr=params.lr, epochs=params.epochs, groups=ctx.recipe_groups)
    return model
