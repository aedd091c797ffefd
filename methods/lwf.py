"""Learning without Forgetting: fine-tune on window t, distilling M_(t-1)'s scores on each batch.

Li & Hoiem (2017), as used for recommenders: the loss on window t adds
`distill` × BCE(student logits, sigmoid(teacher logits / T)) on the very batch the harness
built (positives and sampled negatives), with the frozen teacher M_(t-1) (`ctx.previous`).
The teacher's forward passes run inside the timed update and are counted in its FLOPs.
"""

from dataclasses import dataclass

import torch

VERSION = "1"


@dataclass(frozen=True)
class Params:
    lr: float = 0.003
    epochs: int = 3
    distill: float = 1.0  # weight of the distillation term
    temperature: float = 1.0

    def __post_init__(self):
        if self.distill < 0 or self.temperature <= 0:
            raise ValueError("distill >= 0 and temperature > 0")


def search_space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 5),
        "distill": trial.suggest_float("distill", 0.1, 10.0, log=True),
    }


def update(ctx, params):
    teacher = ctx.previous  # M_(t-1), frozen; taken before the fit changes ctx.model

    def distillation(model, batch):
        with torch.no_grad():
            target = torch.sigmoid(teacher.score(batch.users, batch.items) / params.temperature)
        student = model.score(batch.users, batch.items, rows=batch.rows) / params.temperature
        return params.distill * torch.nn.functional.binary_cross_entropy_with_logits(
            student, target
        )

    ctx.fit(ctx.model, ctx.window, lr=params.lr, epochs=params.epochs, extra_loss=distillation)
    return ctx.model
