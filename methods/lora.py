"""LoRA adapters (peft) on the encoder's attention projections, trained with the head."""

from dataclasses import dataclass

import torch

VERSION = "1"


@dataclass(frozen=True)
class Params:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("query", "key", "value")  # add "dense" for the MLP projections
    lr: float = 0.001
    epochs: int = 1
    merge: bool = False  # serve with adapters merged into the weights (unmerged again to train)

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.targets:
            raise ValueError("rank >= 1, alpha > 0, 0 <= dropout < 1 and at least one target")


def applicable(ctx):
    """Backbones with transformer layers (text)."""
    if not hasattr(ctx.model, "encoder"):
        return f"needs transformer layers; backbone {ctx.backbone} has none"
    return None


def search_space(trial):
    return {
        "rank": trial.suggest_categorical("rank", [4, 8, 16]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 3),
    }


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.encoder.modules() if isinstance(m, LoraLayer)]


def update(ctx, params):
    from peft import LoraConfig, inject_adapter_in_model

    model = ctx.model
    layers = _lora_layers(model)
    if not layers:  # first window: inject adapters (B = 0, so the model is unchanged)
        config = LoraConfig(r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout,
                            target_modules=list(params.targets))  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.rng.integers(2**31))
            inject_adapter_in_model(config, model.encoder)
        model.to(next(model.head.parameters()).device)
        layers = _lora_layers(model)
    for layer in layers:
        if layer.merged:
            layer.unmerge()  # train the adapters, not the merged weights
    ctx.fit(model, ctx.window, lr=params.lr, epochs=params.epochs, groups=["lora", "head"])
    if params.merge:
        for layer in layers:
            layer.merge()
    return model
