"""Why the text model looks like it does: ablations of `text` on ml-100k, M0 kept frozen.

A plain script (not collected by pytest): `python benchmarks/diagnose_text.py` (about 5 min
on 2 cores; needs data/windows/ml-100k, i.e. `dvc repro split@ml-100k`). Each variant trains
M0 on the base period with the backbone's recipe, is then served unchanged on windows 1..5
(profiles fed as in the protocol) and prints the mean over the windows of

    auc / gauc          explicit feedback among observed rows (liked vs disliked)
    warm / cold users   NDCG@10 of users seen / not seen before the window
    cold items          NDCG@10 on items first seen in the window, and the median rank (of
                        ~1,500) of those items' positives: the part only a content model has

Variants:
    recipe         the backbone as configured (ID parts + text on both sides, time-correct
                   profiles in training)
    skewed         the same, but trained with empty profiles and served with filled ones (the
                   former recipe's train/serve skew)
    no-text-l2     the same without the L2 on the text parts (l2_content 0)
    text-items     no item ID part: items are their text only (the former item side)
    id-dropout     the recipe with 50% of training examples hiding their item ID part
                   (DropoutNet-style; `id_dropout: 0.5`), so the text part must score alone
    mf, popularity the ID-only backbone and the count floor, for scale
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from incbench import evaluate, references
from incbench.backbones import mf, text
from incbench.config import Protocol
from incbench.protocol import pretrain_model
from incbench.split import load_windows

KEYS = ("auc", "gauc", "warm_user:ndcg@10", "cold_user:ndcg@10", "cold_item:ndcg@10")


def cold_item_rank(model, windows, t: int) -> float:
    """Median rank (0 = top) of window t's positives on items first seen in t, all users."""
    n_old, n_new = windows.known(t - 1)[1], windows.known(t)[1]
    rows = windows.periods[t]
    rows = rows[(rows["item_idx"] >= n_old) & (rows["positive"] > 0)]
    if not len(rows):
        return float("nan")
    with torch.no_grad():
        scores = model.score_index(torch.tensor(rows["user_idx"].values), model.item_index(n_new))
    own = scores[torch.arange(len(rows)), torch.tensor(rows["item_idx"].values)]
    return float(np.median((scores > own[:, None]).sum(1).numpy()))


def serve_frozen(model, windows, first: int = 1) -> dict:
    """M0 served unchanged on windows 1..N (profiles fed); the mean over windows first..N."""
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    per_window = []
    for t in range(1, windows.n_windows + 1):
        model.grow(*known[t])
        model.eval()
        metrics, _ = evaluate.next_window(model, windows.periods, t, known, "cpu", 0)
        values = {k: metrics.get(k) for k in KEYS}
        values["cold_item_median_rank"] = cold_item_rank(model, windows, t)
        per_window.append(values)
        period = windows.periods[t]
        model.observe(period[period["part"] == "train"])
    kept = per_window[first - 1 :]
    return {k: round(float(np.nanmean([w[k] for w in kept])), 4) for k in kept[0]}


def main(root: Path) -> dict:
    windows = load_windows(root / "data" / "windows" / "ml-100k")
    out = {}
    base = text.Params()
    variants = {
        "recipe": (base, False),
        "skewed": (base, True),
        "no-text-l2": (dataclasses.replace(base, l2_content=0.0), False),
        "text-items": (
            dataclasses.replace(base, pretrain_groups=("user_tower", "projection", "head")),
            False,
        ),  # fmt: skip
        "id-dropout": (dataclasses.replace(base, id_dropout=0.5), False),
    }
    real = text.profiles_before
    for name, (params, skew) in variants.items():
        if skew:  # training sees empty profiles; serving still fills them
            text.profiles_before = lambda users, *rest: np.full((len(users), rest[-1]), -1)
        try:
            model, fit = pretrain_model(windows, text, params, Protocol(), seed=0)
        finally:
            text.profiles_before = real
        out[name] = {"fit_epochs": fit.epochs, "fit_final_loss": round(fit.final_loss, 4),
                     **serve_frozen(model, windows)}  # fmt: skip
        print(name, out[name], flush=True)
    model, fit = pretrain_model(windows, mf, mf.Params(), Protocol(), seed=0)
    out["mf"] = {"fit_epochs": fit.epochs, "fit_final_loss": round(fit.final_loss, 4),
                 **serve_frozen(model, windows)}  # fmt: skip
    print("mf", out["mf"], flush=True)
    pop, _ = references.evaluate_reference("popularity", windows)
    out["popularity"] = {k: round(float(pop[k].mean()), 4) for k in KEYS if k in pop}
    print("popularity", out["popularity"])
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print(json.dumps(main(root), indent=1))
