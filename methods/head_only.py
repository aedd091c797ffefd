"""Continue from M_{t-1}: only the `head` group, window t only."""

from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True)
class Params:
    lr: float = 0.01
    epochs: int = 3


def search_space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 5),
    }


def update(ctx, params):
    ctx.fit(ctx.model, ctx.window, lr=params.lr, epochs=params.epochs, groups=["head"])
    return ctx.model
