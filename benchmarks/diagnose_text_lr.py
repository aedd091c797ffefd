"""Why pretrained encoder weights train at a scaled learning rate (text `encoder_lr_scale`).

A plain script (not collected by pytest): `python benchmarks/diagnose_text_lr.py` (about 4 min
on 2 cores; needs data/windows/ml-100k). Trains the text M0 on the base period, then one
`fine_tune` update on window 1 (2 optimiser steps, the CPU budget) with the encoder's lr scale
1 and 0.01, and prints next-window AUC and warm-user NDCG@10 on window 2 beside the unchanged
M0's. With Adam every weight moves about lr per step, so a method lr meant for ID embeddings
wrecks a pretrained transformer within two steps.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from incbench import evaluate, method
from incbench.backbones import text
from incbench.config import Budget, Protocol
from incbench.protocol import Setup, base_train, make_context, pretrain_model
from incbench.split import load_windows

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("auc", "warm_user:ndcg@10")


def window_2(model, windows, known) -> dict:
    model.grow(*known[2])
    model.eval()
    metrics, _ = evaluate.next_window(model, windows.periods, 2, known, "cpu", 0)
    return {k: round(metrics[k], 4) for k in KEYS}


def main() -> None:
    windows = load_windows(ROOT / "data" / "windows" / "ml-100k")
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    m0, _ = pretrain_model(windows, text, text.Params(), Protocol(), seed=0)
    spec = method.get("fine_tune", ROOT)
    for scale in (1.0, 0.01):
        params = dataclasses.replace(text.Params(), encoder_lr_scale=scale)
        setup = Setup(windows, spec, spec.params({}), Protocol(), "text", text, params, 0,
                      budget=Budget(max_steps=2))  # fmt: skip
        model = copy.deepcopy(m0)
        model.params = params
        model.grow(*known[1])
        ctx = make_context(setup, model, 1, [base_train(windows)], {})
        model = spec.update(ctx, setup.mparams)
        model.observe(ctx.window)
        model.invalidate()
        print(f"fine_tune, encoder lr scale {scale}:", window_2(model, windows, known))
    model = copy.deepcopy(m0)
    model.grow(*known[1])
    period = windows.periods[1]
    model.observe(period[period["part"] == "train"])
    print("frozen M0:", window_2(model, windows, known))


if __name__ == "__main__":
    main()
