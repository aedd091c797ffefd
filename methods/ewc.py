"""Online EWC: fine-tune on window t with a penalty holding weights that mattered before.

Kirkpatrick et al. (2017), online form (Schwarz et al. 2018): after each update, the diagonal
empirical Fisher F of the loss on a sample of that window's rows (gradients of the protocol's
batches, `ctx.batches`) is folded into the running F (F ← γ·F + F_t) and the weights θ* are
kept; the next update adds (λ/2)·Σ F·(θ − θ*)² over every parameter. Rows appended by `grow`
(new users, items) carry zero Fisher: they are free. The first update (no F yet) is a plain
fine-tune. The Fisher pass runs inside the timed update and is counted in its FLOPs.
"""

from dataclasses import dataclass

import torch
from torch import nn

VERSION = "1"


@dataclass(frozen=True)
class Params:
    lr: float = 0.003
    epochs: int = 3
    lam: float = 100.0  # penalty strength λ
    gamma: float = 0.9  # decay of the running Fisher (online EWC); 1 = sum of all windows
    fisher_rows: int = 2000  # train rows of the window sampled for the Fisher pass

    def __post_init__(self):
        if self.lam < 0 or not 0 <= self.gamma <= 1 or self.fisher_rows < 1:
            raise ValueError("lam >= 0, 0 <= gamma <= 1 and fisher_rows >= 1")


def search_space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 5),
        "lam": trial.suggest_float("lam", 1.0, 1e4, log=True),
    }


def fisher(ctx, model, rows) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: the mean over the protocol's batches of squared gradients."""
    named = {n: p for n, p in model.named_parameters()}
    out = {n: torch.zeros_like(p) for n, p in named.items()}
    flags = {n: p.requires_grad for n, p in named.items()}
    n_batches = 0
    try:
        for p in named.values():
            p.requires_grad_(True)
        for batch in ctx.batches(model, rows):
            model.zero_grad(set_to_none=True)
            loss = nn.functional.binary_cross_entropy_with_logits(
                model.score(batch.users, batch.items), batch.labels
            )
            loss.backward()
            for n, p in named.items():
                if p.grad is not None:
                    out[n] += p.grad.detach().square()
            n_batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in named.items():
            p.requires_grad_(flags[n])
    return {n: f / max(n_batches, 1) for n, f in out.items()}


def update(ctx, params):
    model, state = ctx.model, ctx.state
    penalty = None
    if "fisher" in state:
        named = dict(model.named_parameters())
        kept = {n: (ctx.pad_like(state["theta"][n], named[n]), ctx.pad_like(f, named[n]))
                for n, f in state["fisher"].items() if n in named}  # fmt: skip

        def penalty(m, batch):
            return 0.5 * params.lam * sum((f * (p - theta).square()).sum()
                                          for n, p in m.named_parameters() if n in kept
                                          for theta, f in (kept[n],))  # fmt: skip

    ctx.fit(model, ctx.window, lr=params.lr, epochs=params.epochs, extra_loss=penalty)
    rows = ctx.window.sample(min(params.fisher_rows, len(ctx.window)), random_state=ctx.rng)
    new = fisher(ctx, model, rows)
    old = state.get("fisher", {})
    state["fisher"] = {n: f + params.gamma * ctx.pad_like(old[n], f) if n in old else f
                       for n, f in new.items()}  # fmt: skip
    state["theta"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return model
