"""Re-initialise and train on all train data up to t (the backbone's pretraining recipe)."""

from dataclasses import dataclass

import pandas as pd

VERSION = "1"


@dataclass(frozen=True)
class Params:
    epochs: int | None = None  # None: the backbone's pretrain_epochs (same recipe as M0)
    lr: float | None = None  # None: the backbone's lr


def update(ctx, params):
    model = ctx.fresh_model()  # ID parts random, pretrained weights (if any) as published
    data = pd.concat([ctx.history, ctx.window], ignore_index=True)
    recipe = ctx.backbone_params
    ctx.fit(
        model,
        data,
        lr=params.lr if params.lr is not None else recipe.lr,
        epochs=params.epochs if params.epochs is not None else recipe.pretrain_epochs,
        groups=ctx.recipe_groups,  # e.g. the text backbone keeps the published LM weights
    )
    return model
