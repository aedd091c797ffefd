"""LSAT: a long-term and a short-term LoRA adapter on the encoder, fused by task arithmetic.

After Shi et al., "Preliminary Study on Incremental Learning for Large Language Model-based
Recommender Systems" (arXiv 2312.15599). Each update at window t:

    periods:  [ base ][ w1 ][ w2 ] … [ w_t ]
    long:     ├──────── all periods up to t ────────┤   adapter re-initialised, then trained
    short:                                  ├─ w_t ─┤   adapter re-initialised, then trained
    served:   W0 + weight · ΔW_long + (1 - weight) · ΔW_short          (LSAT-TA)

Both adapters (peft LoRA, the same rank and targets) live in the one encoder; while one trains
the other is switched off, and the recommendation head trains with each. The served model
applies both at once, each scaled by its weight: exactly the weighted sum of the two adapter
matrices (task arithmetic), at the serving cost of one model. The paper's other fusion,
LSAT-EN (averaging the two adapters' predicted probabilities), needs two item catalogues per
evaluation and is not implemented here; the paper reports the two close. `weight` is chosen
on validation from past data by the tuning stage (the base period's inner windows) when the
text backbone's budget allows tuning; otherwise the default, 0.5, applies.
"""

import warnings
from dataclasses import dataclass

import pandas as pd
import torch

VERSION = "1"

ADAPTERS = ("lsat_long", "lsat_short")


@dataclass(frozen=True)
class Params:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value")
    lr: float = 0.001
    epochs: int = 1
    weight: float = 0.5  # share of the long-term adapter in the served sum

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0 or not self.targets or not 0 <= self.weight <= 1:
            raise ValueError("rank >= 1, alpha > 0, at least one target and 0 <= weight <= 1")


def applicable(ctx):
    """Backbones with transformer layers (text)."""
    if not hasattr(ctx.model, "encoder"):
        return f"needs transformer layers for its LoRA adapters; backbone {ctx.backbone} has none"
    return None


def search_space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight": trial.suggest_float("weight", 0.0, 1.0),
    }


def _layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.encoder.modules() if isinstance(m, LoraLayer)]


def _activate(layers, names, weights=None):
    for layer in layers:
        layer.set_adapter(list(names))
        for name, w in zip(names, weights or [1.0] * len(names)):
            layer.set_scale(name, w)


def update(ctx, params):
    from peft import LoraConfig, inject_adapter_in_model

    model = ctx.model
    if not _layers(model):  # first window: inject both adapters (B = 0: the model is unchanged)
        config = LoraConfig(r=params.rank, lora_alpha=params.alpha,
                            target_modules=list(params.targets))  # fmt: skip
        with warnings.catch_warnings():  # peft warns that a second adapter is one more: intended
            warnings.simplefilter("ignore", UserWarning)
            for name in ADAPTERS:
                inject_adapter_in_model(config, model.encoder, adapter_name=name)
        model.to(next(model.head.parameters()).device)
    layers = _layers(model)
    everything = pd.concat([ctx.history, ctx.window], ignore_index=True)
    for name, rows in zip(ADAPTERS, (everything, ctx.window)):
        with torch.random.fork_rng(devices=[]):  # a fresh adapter, seeded by (run seed, window)
            torch.manual_seed(int(ctx.rng.integers(2**31)))
            for layer in layers:
                layer.reset_lora_parameters(name, init_lora_weights=True)
        _activate(layers, [name])
        ctx.fit(model, rows, lr=params.lr, epochs=params.epochs, groups=["lora", "head"])
    _activate(layers, ADAPTERS, [params.weight, 1.0 - params.weight])
    return model
