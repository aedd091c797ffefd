"""Continue from M_{t-1}: the top `k` parameter groups plus the head, window t only."""

from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True)
class Params:
    k: int = 1  # groups below the head to unfreeze (0 = head only)
    lr: float = 0.003
    epochs: int = 3

    def __post_init__(self):
        if self.k < 0:
            raise ValueError("k must be >= 0")


def top_groups(groups: list[str], k: int) -> list[str]:
    """The head (last group) and the k groups just below it."""
    return groups[-(k + 1) :]


def search_space(trial):
    return {
        "k": trial.suggest_int("k", 0, 3),
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 5),
    }


def update(ctx, params):
    groups = top_groups(ctx.groups, params.k)
    ctx.fit(ctx.model, ctx.window, lr=params.lr, epochs=params.epochs, groups=groups)
    return ctx.model
