"""The FLOPs of an update, counted by torch's FlopCounterMode (meter.count_flops), never
estimated from a formula of ours: `update_flops` gives the FLOPs of a whole training
pass (a fit's steps, examples, unique items and validation passes, as train.fit records them)
from three small probe steps counted outside any timed region (see its docstring).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from incbench import IncbenchError
from incbench.meter import count_flops
from incbench.train import Batch, ExtraLoss, FitResult, trainable_parameters


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
