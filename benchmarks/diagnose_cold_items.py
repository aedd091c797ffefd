"""Can anything be learned about new items on ml-100k? The committed M0s, served frozen.

A plain script (not collected by pytest): `python benchmarks/diagnose_cold_items.py` (under a
minute on 2 cores; needs `dvc repro pretrain@ml-100k-mf-0 pretrain@ml-100k-text-0`). For each
window t = 1..5, the items first seen in t (never trained on by M_(t-1)) and two views of them:

    catalogue   the protocol's cold-item slice: NDCG@10 over the full catalogue (~1,500
                items) counting only positives on new items, and the median rank of those
                positives (0 = top)
    new only    DropoutNet's cold-start view: each user with a positive on a new item ranks
                only the new items (21 to 62 per window); NDCG@10 against the exact
                expectation of a random order (p positives of n: p/n · Σ_{r<=10} 1/log2(r+1)
                / IDCG), and where the model's mean falls among a constant scorer's
                values under 200 shared tie permutations (users share each window's new
                items, so per-user tests would treat correlated differences as independent)

`mf` scores every new item the same, so its "new only" value is one draw of the protocol's
shared tie permutation (the same order for every user), not a property of the model; the
script shows where 95% of such draws fall (a constant scorer under 200 tie seeds), the
chance range any model's value has to leave. The
README ("Why the text model looks like this") quotes the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from incbench import checkpoint, evaluate
from incbench.metrics import ranking, tie_priority, top_k
from incbench.split import load_windows

DISCOUNT = 1 / np.log2(np.arange(2, 12))  # ranks 1..10
TIE_DRAWS = 200  # shared tie permutations drawn for a constant scorer


def random_ndcg(p: int, n: int) -> float:
    """E[NDCG@10] of a uniformly random order of n items holding p positives."""
    return (p / n) * DISCOUNT[: min(10, n)].sum() / DISCOUNT[: min(10, p)].sum()


def per_user(model, windows, t: int, known, tie_seed: int = 0) -> pd.DataFrame:
    n_old_users, n_old = known[t - 1]
    n_new = known[t][1]
    rows = windows.periods[t]
    pos = rows[(rows["positive"] > 0) & (rows["item_idx"] >= n_old)]
    users = np.unique(pos["user_idx"].to_numpy())
    seen = pd.concat([p[["user_idx", "item_idx"]] for p in windows.periods[:t]])
    scores = model.score_index(torch.from_numpy(users), model.item_index(n_new)).float()
    positives = evaluate._mask(users, (pos["user_idx"].to_numpy(), pos["item_idx"].to_numpy()),
                               n_new)  # fmt: skip
    priority = tie_priority(n_new, tie_seed)
    seen_mask = evaluate._mask(users, (seen["user_idx"].to_numpy(), seen["item_idx"].to_numpy()),
                               n_new)  # fmt: skip
    catalogue = ranking(top_k(scores, seen_mask, 10, priority), positives & ~seen_mask, ks=(10,))
    old = torch.zeros_like(seen_mask)
    old[:, :n_old] = True
    new_only = ranking(top_k(scores, old, 10, priority), positives, ks=(10,))
    ranks = []  # per user: the catalogue rank (0 = top, seen items left out, ties by the
    for row, col in zip(*np.nonzero(positives.numpy())):  # protocol's priority) of each positive
        ahead = (scores[row] > scores[row, col]) | (
            (scores[row] == scores[row, col]) & (priority < priority[col])
        )
        ranks.append((row, int((ahead & ~seen_mask[row]).sum())))
    by_user = pd.DataFrame(ranks, columns=["row", "rank"]).groupby("row")["rank"].apply(list)
    p = positives.sum(1).numpy()
    constant = torch.zeros_like(scores)  # one shared tie permutation per seed, as in the protocol
    draws = np.stack([ranking(top_k(constant, old, 10, tie_priority(n_new, s)), positives,
                              ks=(10,))["ndcg@10"] for s in range(TIE_DRAWS)], axis=1)  # fmt: skip
    return pd.DataFrame({
        "t": t, "warm": users < n_old_users, "constant": list(draws), "catalogue_ndcg": catalogue["ndcg@10"],
        "ranks": [by_user.get(i, []) for i in range(len(users))], "new_ndcg": new_only["ndcg@10"],
        "random_ndcg": [random_ndcg(int(k), n_new - n_old) for k in p],
        "new_items": n_new - n_old,
    })  # fmt: skip


def main(root: Path) -> dict:
    windows = load_windows(root / "data" / "windows" / "ml-100k")
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    out = {}
    for backbone in ("mf", "text"):
        _, model = checkpoint.load_model(root / "models" / f"ml-100k-{backbone}-0")
        model.eval()
        frames = []
        with torch.no_grad():
            for t in range(1, windows.n_windows + 1):
                model.grow(*known[t])
                frames.append(per_user(model, windows, t, known))
                period = windows.periods[t]
                model.observe(period[period["part"] == "train"])
        df = pd.concat(frames, ignore_index=True)
        for name, sel in (("warm users, windows 2..N", df["warm"] & (df["t"] >= 2)),
                          ("all users, windows 1..N", df["t"] >= 1)):  # fmt: skip
            d = df[sel]
            chance = np.stack(d["constant"].to_numpy()).mean(0)  # one mean per tie draw
            row = {"user-windows": len(d), "catalogue NDCG@10": round(d["catalogue_ndcg"].mean(), 4),
                   "median rank": float(np.median(np.concatenate(d["ranks"].to_numpy()))),
                   "new-only NDCG@10": round(d["new_ndcg"].mean(), 4),
                   "random order": round(d["random_ndcg"].mean(), 4),
                   "constant scorer, 95% of tie draws": [round(float(q), 4)
                                                         for q in np.quantile(chance, [0.025, 0.975])],
                   "share of tie draws at or above": float((chance >= d["new_ndcg"].mean()).mean())}  # fmt: skip
            out[f"{backbone}, {name}"] = row
            print(f"{backbone}, {name}: {row}", flush=True)
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
