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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from incbench import IncbenchError, io


@dataclasses.dataclass(frozen=True)
class Batch:
    """One training step's examples as the harness builds them: a shuffled slice of the
    epoch's observed rows (label = positive) and their sampled negatives (label 0); `rows` =
    each example's position in the fit's time-ordered frame (a negative shares its row's).
    What an `extra_loss(model, batch)` receives."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor


ExtraLoss = Callable[[nn.Module, Batch], torch.Tensor]  # a method's term, added to every step


class Diverged(IncbenchError):
    """The loss became NaN or infinite; the run records a failure row for this method."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What one fit did: recorded per fit (pretrain.json, windows.csv) so convergence shows."""

    steps: int  # optimiser steps, selection and refit together
    examples: int  # examples trained on (positives + negatives), every pass counted
    final_loss: float  # mean training loss of the last epoch (without the L2 penalty)
    first_loss: float = float("nan")  # mean training loss of the first epoch
    epochs: int = 0  # epochs of the fit that produced the weights (the refit's count)
    stopped: str = ""  # early_stop | max_epochs | max_steps | step_budget | no_validation | empty
    val_loss: float = float("nan")  # best validation loss (early stopping only)
    # the work behind the FLOP count (update_flops): unique items per training step, summed
    # (counted when the fit trains a per-item group, e.g. an encoder), validation passes
    # (forward only, once per epoch over the tail) and the pre-fit caching, counted directly
    unique_items: int = 0
    eval_calls: int = 0
    eval_examples: int = 0
    eval_unique_items: int = 0
    setup_flops: int = 0

    def record(self, prefix: str = "fit_") -> dict:
        return {f"{prefix}{k}": v for k, v in dataclasses.asdict(self).items()}


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


def _adam(model: nn.Module, groups: list[str] | None, lr: float, weight_decay: float):
    """Adam over the chosen groups; each group's lr is `lr` times the backbone's `lr_scale`
    for it (text: pretrained encoder layers train at a hundredth of the method's lr)."""
    chosen = group_names(model) if groups is None else groups
    param_groups = [{"params": ps, "lr": lr * model.lr_scale(name)}
                    for name, ps in model.groups() if name in chosen and ps]  # fmt: skip
    return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay)


MIN_VALIDATION_ROWS = 50  # fewer rows in the tail: no early stopping, all epochs run


@dataclasses.dataclass(frozen=True)
class Validation:
    """`selection: holdout`: the rows a fit selects its epoch on (a period's holdout part,
    never trained on), scored as the model will be served: after observing `observed` (the
    period's train part: the user features a backbone keeps, e.g. text's profiles)."""

    rows: pd.DataFrame
    observed: pd.DataFrame


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
    step_budget: int = 0,
    val_fraction: float = 0.0,
    patience: int = 0,
    validation: Validation | None = None,
    device: str = "cpu",
    extra_loss: ExtraLoss | None = None,
) -> FitResult:
    """Train `model` in place on `interactions` (columns user_idx, item_idx, positive).

    `epochs` is a maximum. With `val_fraction` and `patience` set (and no `max_steps` cap),
    the stopping rule is early stopping on time-ordered data, past rows only:

        rows of this fit, oldest → newest
        ├──────────── selection part (1 - val_fraction) ────────────┼── validation tail ──┤
        1. from the starting weights, train on the selection part; after each epoch, the
           BCE of the tail (its rows + seeded negatives); stop after `patience` epochs
           without a better value: E* = the best epoch;
        2. restore the starting weights and train on *all* rows for E* epochs (the newest
           rows matter most under drift, so none is left out of the final model).

    With a `validation` (the protocol's `selection: holdout`: the period's holdout part, rows
    never trained on) the rule selects on it instead: train on all rows, after each epoch the
    BCE of the validation rows (+ seeded negatives, scored as served: `served_after` the
    period's train rows), stop after `patience` epochs without a better value, and keep the
    weights of the best epoch (no second pass). It needs MIN_VALIDATION_ROWS validation rows,
    `val_fraction` > 0 and `patience` > 0 (0 turns early stopping off, as for the tail rule).

    `extra_loss(model, batch)` (a method's own term: a distillation loss, an EWC penalty) is
    added to every training step's loss; early stopping still selects on the protocol's BCE.

    Both passes are part of the fit: its steps, examples and timed cost include them. A
    `max_steps` cap (a compute budget) disables the rule: the fit stops at the cap. A backbone
    that declares `capped_groups()` (text: the encoder's) has the cap bind only fits that train
    one of them; every other fit runs to convergence. `step_budget` (the protocol's equal-compute
    mode, what is left of the update's steps) caps every fit and disables the rule too.
    """
    params = trainable_parameters(model, groups)
    if not params or epochs == 0 or len(interactions) == 0:
        return FitResult(0, 0, float("nan"), stopped="empty")
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    rng = np.random.default_rng(seed)
    if "timestamp" in interactions:
        interactions = interactions.sort_values("timestamp", kind="stable")
    interactions = interactions.reset_index(drop=True)
    capped = model.capped_groups()  # a budget that binds only some groups (None: every fit)
    if max_steps and capped is not None and not set(capped) & set(groups or group_names(model)):
        max_steps = 0
    cap_reason = "max_steps"
    if step_budget and (not max_steps or step_budget < max_steps):
        max_steps, cap_reason = step_budget, "step_budget"
    n_val = int(round(val_fraction * len(interactions))) if patience and not max_steps else 0
    per_item = bool(capped) and bool(set(capped) & set(groups or group_names(model)))
    try:
        from incbench.meter import count_flops

        # row positions below are positions in this frame; its FLOPs (a catalogue encoding,
        # a frozen prefix cached) are counted as they run: few, large ops, no timing skew
        setup = count_flops(lambda: model.prepare_training(interactions))
        work = {"setup_flops": setup}
        model.train()
        held = validation is not None and len(validation.rows) >= MIN_VALIDATION_ROWS
        if held and n_val:  # n_val: val_fraction and patience set, no cap
            return _fit_held_out(model, params, interactions, validation, groups, rng, work,
                                 n_items=n_items, n_negatives=n_negatives, lr=lr, epochs=epochs,
                                 batch_size=batch_size, weight_decay=weight_decay,
                                 patience=patience, device=device, per_item=per_item,
                                 extra_loss=extra_loss)  # fmt: skip
        asked = bool(n_val)
        if validation is not None:  # selection: holdout, and too few rows for the rule
            n_val = 0
        if n_val >= MIN_VALIDATION_ROWS and len(interactions) - n_val > 0:
            start = [p.detach().clone() for p in params]
            n_sel = len(interactions) - n_val
            select = _Epochs(interactions.iloc[:n_sel], n_negatives, n_items, rng, device,
                             count_unique=per_item)  # fmt: skip
            tail = _Epochs(interactions.iloc[n_sel:], n_negatives, n_items, rng, device, n_sel)
            tail = tail.fixed()
            tail_unique = int(tail[1].unique().numel()) if per_item else 0
            opt = _adam(model, groups, lr, weight_decay)
            best, best_epoch, losses, steps, examples = math.inf, 0, [], 0, 0
            for epoch in range(1, epochs + 1):
                loss, s, e = select.run(model, opt, batch_size, 0, lr, extra_loss)
                losses.append(loss)
                steps, examples = steps + s, examples + e
                with torch.no_grad():
                    val = float(nn.functional.binary_cross_entropy_with_logits(
                        model.score(*tail[:2], rows=tail[3]), tail[2]))  # fmt: skip
                work["eval_calls"] = work.get("eval_calls", 0) + 1
                work["eval_examples"] = work.get("eval_examples", 0) + len(tail[0])
                work["eval_unique_items"] = work.get("eval_unique_items", 0) + tail_unique
                if val < best - 1e-6:
                    best, best_epoch = val, epoch
                elif epoch - best_epoch >= patience:
                    break
            stopped = "early_stop" if epoch < epochs else "max_epochs"
            with torch.no_grad():
                for p, p0 in zip(params, start):
                    p.copy_(p0)
            run = _Epochs(interactions, n_negatives, n_items, rng, device, count_unique=per_item)
            opt = _adam(model, groups, lr, weight_decay)
            for _ in range(max(best_epoch, 1)):
                loss, s, e = run.run(model, opt, batch_size, 0, lr, extra_loss)
                steps, examples = steps + s, examples + e
            work["unique_items"] = select.unique + run.unique
            return FitResult(steps, examples, loss, losses[0], max(best_epoch, 1), stopped, best,
                             **work)  # fmt: skip
        run = _Epochs(interactions, n_negatives, n_items, rng, device, count_unique=per_item)
        opt = _adam(model, groups, lr, weight_decay)
        steps = examples = done = 0
        first = loss = float("nan")
        stopped = "no_validation" if asked else "max_epochs"
        for _ in range(epochs):
            loss, s, e = run.run(
                model, opt, batch_size, max_steps - steps if max_steps else 0, lr, extra_loss
            )
            first = loss if done == 0 else first
            steps, examples, done = steps + s, examples + e, done + 1
            if max_steps and steps >= max_steps:
                stopped = cap_reason
                break
        return FitResult(steps, examples, loss, first, done, stopped, unique_items=run.unique,
                         **work)  # fmt: skip
    finally:
        model.finish_training()
        model.eval()
        for p, flag in flags:
            p.requires_grad_(flag)


def _fit_held_out(model, params, interactions, validation, groups, rng, work, *, n_items,
                  n_negatives, lr, epochs, batch_size, weight_decay, patience, device, per_item,
                  extra_loss) -> FitResult:  # fmt: skip
    """`fit`'s rule with a separate validation frame: the best epoch's weights are kept."""
    run = _Epochs(interactions, n_negatives, n_items, rng, device, count_unique=per_item)
    val = _Epochs(validation.rows, n_negatives, n_items, rng, device).fixed()
    val_unique = int(val[1].unique().numel()) if per_item else 0
    opt = _adam(model, groups, lr, weight_decay)
    best, best_epoch, best_params, losses, steps, examples = math.inf, 0, None, [], 0, 0
    for epoch in range(1, epochs + 1):
        loss, s, e = run.run(model, opt, batch_size, 0, lr, extra_loss)
        losses.append(loss)
        steps, examples = steps + s, examples + e
        # rows=None: the validation rows are not the fit's rows; they see served features
        with torch.no_grad(), model.served_after(validation.observed):
            value = float(nn.functional.binary_cross_entropy_with_logits(
                model.score(*val[:2]), val[2]))  # fmt: skip
        work["eval_calls"] = work.get("eval_calls", 0) + 1
        work["eval_examples"] = work.get("eval_examples", 0) + len(val[0])
        work["eval_unique_items"] = work.get("eval_unique_items", 0) + val_unique
        if value < best - 1e-6:
            best, best_epoch = value, epoch
            best_params = [p.detach().clone() for p in params]
        elif epoch - best_epoch >= patience:
            break
    if best_params is None:  # no finite validation value: the last epoch's weights stay
        best_epoch, best_params = epoch, params
    with torch.no_grad():
        for p, kept in zip(params, best_params):
            p.copy_(kept)
    stopped = "early_stop" if epoch < epochs else "max_epochs"
    work["unique_items"] = run.unique
    return FitResult(steps, examples, losses[best_epoch - 1], losses[0], best_epoch, stopped,
                     best, **work)  # fmt: skip


class _Epochs:
    """The protocol's training signal over fixed rows: each epoch draws fresh negatives."""

    def __init__(self, rows: pd.DataFrame, n_negatives, n_items, rng, device, offset: int = 0,
                 count_unique: bool = False):  # fmt: skip
        self.count_unique, self.unique = count_unique, 0  # Σ unique items per step (FLOPs)
        users = rows["user_idx"].to_numpy(np.int64)
        where = np.arange(offset, offset + len(users))  # positions in the fit's frame
        self.rows = torch.from_numpy(np.concatenate([where, np.repeat(where, n_negatives)]))
        self.rows = self.rows.to(device)
        self.items = rows["item_idx"].to_numpy(np.int64)
        labels = rows["positive"].to_numpy(np.float32)
        n = len(users)
        self.n, self.k, self.n_items, self.rng, self.device = n, n_negatives, n_items, rng, device
        self.users = torch.from_numpy(np.concatenate([users, np.repeat(users, n_negatives)]))
        self.users = self.users.to(device)
        y = np.concatenate([labels, np.zeros(n * n_negatives, np.float32)])
        self.labels = torch.from_numpy(y).to(device)

    def _items(self) -> torch.Tensor:
        neg = self.rng.integers(0, self.n_items, size=self.n * self.k)
        return torch.from_numpy(np.concatenate([self.items, neg])).to(self.device)

    def fixed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One seeded draw of negatives, kept: the validation set of early stopping."""
        return self.users, self._items(), self.labels, self.rows

    def batches(self, batch_size: int):
        """One epoch's batches: fresh negatives, a seeded shuffle."""
        items = self._items()
        order = torch.from_numpy(self.rng.permutation(len(self.users))).to(self.device)
        # one gather per epoch, then views: the same batches as gathering per batch, cheaper
        users, items, labels, rows = (x[order] for x in (self.users, items, self.labels, self.rows))
        for lo in range(0, len(order), batch_size):
            hi = lo + batch_size
            yield Batch(users[lo:hi], items[lo:hi], labels[lo:hi], rows[lo:hi])

    def run(self, model, opt, batch_size: int, max_steps: int, lr: float, extra_loss=None):
        """One epoch; returns (mean BCE, steps, examples). Raises Diverged on NaN/inf."""
        total, steps, examples = 0.0, 0, 0
        for batch in self.batches(batch_size):
            u, i = batch.users, batch.items
            if self.count_unique:
                self.unique += int(i.unique().numel())
            logits, penalty = model.score_and_penalty(u, i, rows=batch.rows)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
            full = loss if penalty is None else loss + penalty
            if extra_loss is not None:
                full = full + extra_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            full.backward()
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise Diverged(f"loss became {value} after {steps} steps (lr={lr})")
            total += value * len(u)
            steps += 1
            examples += len(u)
            if max_steps and steps >= max_steps:
                break
        return total / max(examples, 1), steps, examples


def update_flops(
    model: nn.Module, groups: tuple[str, ...], probe: pd.DataFrame, work: FitResult | int,
    extra_loss: ExtraLoss | None = None,
) -> int:  # fmt: skip
    """FLOPs of the training pass `work` (a FitResult, or a number of examples) of `model`
    with only `groups` trainable.

    Every op of a step is linear in one of three things: the examples of the batch (user
    and item rows, the head), the batch's *unique* items (an encoder that trains runs once
    per unique item, not per example) or nothing (once per step, e.g. a map over the whole
    catalogue). Three probe steps on the probe's rows, counted with FlopCounterMode outside
    any timed region (parameters and optimiser untouched), solve for the three rates:

        probe P (r rows, u unique items)       F(P)  = a·r  + b·u  + c
        P twice (2r rows, the same u items)    F(PP) = 2a·r + b·u  + c
        P's rows of half its items (r', u')    F(P') = a·r' + b·u' + c

    and the pass costs a·examples + b·Σ unique + c·steps, plus the same three rates for its
    validation passes (forward only) and the counted pre-fit work (`setup_flops`). Elementwise
    optimiser work is not counted (torch's convention).
    """
    from incbench.meter import count_flops

    if isinstance(work, int):
        work = FitResult(0, work, float("nan"))
    if (work.examples == 0 and work.eval_examples == 0) or len(probe) == 0:
        return work.setup_flops
    chosen = {id(p) for p in trainable_parameters(model, list(groups))}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    device = next(model.parameters()).device
    grads = {id(p): p.grad for p in model.parameters()}
    probe = probe.reset_index(drop=True)
    items = probe["item_idx"].unique()
    half = probe[probe["item_idx"].isin(items[: max(1, len(items) // 2)])]
    variants = [probe, pd.concat([probe, probe], ignore_index=True), half]

    def counted(rows: pd.DataFrame, train: bool) -> int:
        rows = rows.reset_index(drop=True)
        users = torch.from_numpy(rows["user_idx"].to_numpy(np.int64, copy=True)).to(device)
        items = torch.from_numpy(rows["item_idx"].to_numpy(np.int64, copy=True)).to(device)
        labels = torch.zeros(len(rows), device=device)
        model.prepare_training(rows, probe=True)
        try:

            def step():
                positions = torch.arange(len(rows), device=device)
                with torch.set_grad_enabled(train):
                    if not train:
                        logits = model.score(users, items, rows=positions)
                        nn.functional.binary_cross_entropy_with_logits(logits, labels)
                        return
                    logits, penalty = model.score_and_penalty(users, items, rows=positions)
                    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
                    full = loss if penalty is None else loss + penalty
                    if extra_loss is not None:  # e.g. a teacher's forward pass: counted too
                        full = full + extra_loss(model, Batch(users, items, labels, positions))
                full.backward()

            return count_flops(step)
        finally:
            model.finish_training()
            for p in model.parameters():
                p.grad = None

    def rates(train: bool) -> tuple[float, float, float]:
        (r1, u1), (r2, _), (r3, u3) = ((len(v), v["item_idx"].nunique()) for v in variants)
        if u1 == u3 and (work.unique_items or work.eval_unique_items):
            raise IncbenchError("the FLOP probe needs rows on at least two distinct items to "
                                "separate per-item from per-step work")  # fmt: skip
        f1, f2, f3 = (counted(v, train) for v in variants)
        a = (f2 - f1) / (r2 - r1)
        b = (f1 - f3 - a * (r1 - r3)) / (u1 - u3) if u1 > u3 else 0.0
        return a, b, f1 - a * r1 - b * u1

    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
            p.grad = None
        total = float(work.setup_flops)
        if work.examples:
            a, b, c = rates(train=True)
            # without a per-item count, per-item work is 0 (nothing per item trains): b·u -> 0
            b = b if work.unique_items else 0.0
            total += a * work.examples + b * work.unique_items + c * work.steps
        if work.eval_examples:
            a, b, c = rates(train=False)
            total += a * work.eval_examples + b * work.eval_unique_items + c * work.eval_calls
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = grads[id(p)]
    return int(round(total))


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
    return cfg["backbone"], model.to(device).eval()
