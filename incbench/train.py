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
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from incbench import IncbenchError


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

            def tail_bce() -> float:
                return float(nn.functional.binary_cross_entropy_with_logits(
                    model.score(*tail[:2], rows=tail[3]), tail[2]))  # fmt: skip

            best, best_epoch, epoch, losses, steps, examples, _ = _select_epoch(
                model, select, opt, tail_bce, (len(tail[0]), tail_unique), work, epochs=epochs,
                patience=patience, batch_size=batch_size, lr=lr, extra_loss=extra_loss)  # fmt: skip
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

    def held_out_bce() -> float:
        # rows=None: the validation rows are not the fit's rows; they see served features
        with model.served_after(validation.observed):
            return float(nn.functional.binary_cross_entropy_with_logits(
                model.score(*val[:2]), val[2]))  # fmt: skip

    best, best_epoch, epoch, losses, steps, examples, best_params = _select_epoch(
        model, run, opt, held_out_bce, (len(val[0]), val_unique), work, epochs=epochs,
        patience=patience, batch_size=batch_size, lr=lr, extra_loss=extra_loss, keep=params)  # fmt: skip
    if best_params is None:  # no finite validation value: the last epoch's weights stay
        best_epoch, best_params = epoch, params
    with torch.no_grad():
        for p, kept in zip(params, best_params):
            p.copy_(kept)
    stopped = "early_stop" if epoch < epochs else "max_epochs"
    work["unique_items"] = run.unique
    return FitResult(steps, examples, losses[best_epoch - 1], losses[0], best_epoch, stopped,
                     best, **work)  # fmt: skip


def _select_epoch(model, epochs_of, opt, validate, eval_size: tuple[int, int], work: dict, *, epochs,
                  patience, batch_size, lr, extra_loss, keep=None):  # fmt: skip
    """Early stopping, shared by both rules: train epoch by epoch on `epochs_of` (an _Epochs);
    after each epoch `validate()` (a validation BCE, no gradients), counted in `work` with
    `eval_size` (examples, unique items); stop after `patience` epochs without a value better
    by 1e-6. Returns (best value, best epoch, last epoch, losses per epoch, steps, examples,
    copies of `keep` at the best epoch or None)."""
    best, best_epoch, kept, losses, steps, examples = math.inf, 0, None, [], 0, 0
    for epoch in range(1, epochs + 1):
        loss, s, e = epochs_of.run(model, opt, batch_size, 0, lr, extra_loss)
        losses.append(loss)
        steps, examples = steps + s, examples + e
        with torch.no_grad():
            value = validate()
        work["eval_calls"] = work.get("eval_calls", 0) + 1
        work["eval_examples"] = work.get("eval_examples", 0) + eval_size[0]
        work["eval_unique_items"] = work.get("eval_unique_items", 0) + eval_size[1]
        if value < best - 1e-6:
            best, best_epoch = value, epoch
            if keep is not None:
                kept = [p.detach().clone() for p in keep]
        elif epoch - best_epoch >= patience:
            break
    return best, best_epoch, epoch, losses, steps, examples, kept


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
