"""Continue from M_{t-1}: the top `k` layers (transformer) or groups (other backbones) + head.

On a backbone with transformer layers (groups named `layer.0` … `layer.(L-1)`, e.g. `text`),
`k` counts encoder layers from the top: k=1 trains `layer.(L-1)`, the groups above the encoder
(`projection`, …) and the head; the rest of the encoder and the ID parts stay frozen. On any
other backbone (`mf`: embeddings, biases, head) `k` counts the groups just below the head.
k=0 is head_only everywhere. Window t only.
"""

from dataclasses import dataclass

VERSION = "2"  # 2: k counts transformer layers on backbones that have them


@dataclass(frozen=True)
class Params:
    k: int = 1  # transformer layers (or groups) below the head to unfreeze (0 = head only)
    lr: float = 0.003
    epochs: int = 3

    def __post_init__(self):
        if self.k < 0:
            raise ValueError("k must be >= 0")


def top_groups(groups: list[str], k: int) -> list[str]:
    """The groups trained: the head and what lies k layers (or groups) below it."""
    if k == 0:
        return groups[-1:]
    layers = [g for g in groups if g.startswith("layer.")]
    if not layers:
        return groups[-(k + 1) :]
    above = groups[groups.index(layers[-1]) + 1 :]  # e.g. projection, head
    return layers[-k:] + [g for g in above if g != "lora"]


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
