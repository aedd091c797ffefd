"""The one training routine every method uses (the harness owns negatives, batches, seeding).

Training signal (DESIGN.md section 3): each interaction gives label `positive`; each is paired
with `n_negatives` items drawn uniformly from the items known so far, label 0 (a drawn item may
occasionally be one the user liked: the standard, cheap approximation). Loss: binary
cross-entropy on logits. Adam over the trainable groups only; a fresh optimiser per call.
Parameters outside the trainable groups get `requires_grad=False` for the call, so their bytes
cannot change, and their previous flags are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from incbench import IncbenchError, io


class Diverged(IncbenchError):
    """The loss became NaN or infinite; the run records a failure row for this method."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    steps: int
    examples: int
    final_loss: float


def seed_for(*parts: int | str) -> int:
    """A stable 63-bit seed from run seed, window, purpose…: no Python `hash()` randomisation."""
    words = [p if isinstance(p, int) else int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little")
             for p in parts]  # fmt: skip
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def group_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.groups()]


def trainable_parameters(model: nn.Module, groups: list[str] | None) -> list[nn.Parameter]:
    known = group_names(model)
    chosen = known if groups is None else groups
    unknown = [g for g in chosen if g not in known]
    if unknown:
        raise IncbenchError(f"unknown parameter group(s) {unknown}; this backbone has {known}")
    return [p for name, ps in model.groups() if name in chosen for p in ps]


def fit(
    model: nn.Module,
    interactions: pd.DataFrame,
    *,
    n_items: int,
    n_negatives: int,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    groups: list[str] | None = None,
    weight_decay: float = 0.0,
    max_steps: int = 0,
    device: str = "cpu",
) -> FitResult:
    """Train `model` in place on `interactions` (columns user_idx, item_idx, positive)."""
    params = trainable_parameters(model, groups)
    if not params or epochs == 0 or len(interactions) == 0:
        return FitResult(0, 0, float("nan"))
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    prepare = getattr(model, "prepare_training", None)  # e.g. cache a frozen encoder prefix
    rng = np.random.default_rng(seed)
    users = interactions["user_idx"].to_numpy(np.int64)
    items = interactions["item_idx"].to_numpy(np.int64)
    labels = interactions["positive"].to_numpy(np.float32)
    n = len(users)
    u_all = torch.from_numpy(np.concatenate([users, np.repeat(users, n_negatives)])).to(device)
    y_all = torch.from_numpy(np.concatenate([labels, np.zeros(n * n_negatives, np.float32)]))
    y_all = y_all.to(device)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    steps, examples, loss_value = 0, 0, float("nan")
    try:
        if prepare:
            prepare()
        for _ in range(epochs):
            neg = rng.integers(0, n_items, size=n * n_negatives)
            i_all = torch.from_numpy(np.concatenate([items, neg])).to(device)
            order = torch.from_numpy(rng.permutation(len(u_all))).to(device)
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                loss = loss_fn(model.score(u_all[idx], i_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                examples += len(idx)
                if max_steps and steps >= max_steps:
                    break
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise Diverged(f"loss became {loss_value} after {steps} steps (lr={lr})")
            if max_steps and steps >= max_steps:
                break
    finally:
        if hasattr(model, "finish_training"):
            model.finish_training()
        model.eval()
        for p, flag in flags:
            p.requires_grad_(flag)
    return FitResult(steps, examples, loss_value)


def update_flops(
    model: nn.Module, groups: tuple[str, ...], probe: pd.DataFrame, examples: int
) -> int:
    """FLOPs of training `model` on `examples` examples with only `groups` trainable.

    One forward + backward on a small probe batch is counted with FlopCounterMode (outside any
    timed region; parameters and optimiser untouched) and scaled by examples / probe size:
    every op of a training step is linear in the batch size. Elementwise optimiser work is not
    counted (torch's convention).
    """
    from incbench.meter import count_flops

    if examples == 0 or len(probe) == 0:
        return 0
    chosen = {id(p) for p in trainable_parameters(model, list(groups))}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    users = torch.from_numpy(probe["user_idx"].to_numpy(np.int64, copy=True))
    items = torch.from_numpy(probe["item_idx"].to_numpy(np.int64, copy=True))
    device = next(model.parameters()).device
    users, items = users.to(device), items.to(device)
    labels = torch.zeros(len(probe), device=device)
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
            p.grad = None
        if hasattr(model, "prepare_training"):
            model.prepare_training(items)  # the frozen prefix for the probe's items only
        flops = count_flops(lambda: nn.functional.binary_cross_entropy_with_logits(
            model.score(users, items), labels).backward())  # fmt: skip
    finally:
        if hasattr(model, "finish_training"):
            model.finish_training()
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = grads[id(p)]
    return int(round(flops * examples / len(probe)))


# ---- checkpoints: safetensors weights + JSON config (never pickle) --------------------------


def save_model(model: nn.Module, backbone: str, folder: Path) -> None:
    with io.atomic_dir(folder) as build:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(build / "model.safetensors"))
        io.write_json(build / "config.json", {"backbone": backbone, **model.config()})


def load_model(folder: Path, device: str = "cpu") -> tuple[str, nn.Module]:
    from incbench import backbones
    from incbench.config import from_mapping

    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise IncbenchError(f"no model at {folder}: run the pretrain stage first (dvc repro)")
    cfg = json.loads(cfg_path.read_text())
    module = backbones.get(cfg["backbone"])
    params = from_mapping(module.Params, cfg["params"], f"{folder}/config.json params")
    model = module.build(params, cfg["n_users"], cfg["n_items"], seed=0, config=cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    if "n_catalogue" in cfg:  # text: the catalogue visible to the model
        model.n_items = cfg["n_items"]
    return cfg["backbone"], model.to(device).eval()
