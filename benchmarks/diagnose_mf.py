"""Why the old `mf` learned only popularity, and what the current one does instead.

A plain script (not collected by pytest): `python benchmarks/diagnose_mf.py [shift]`.
On the synthetic no-drift stream of the calibration (800 users, 400 items, 60,000 rows,
6 phases, no new users/items, popularity_drift 0, preference_shift 0 by default), it trains
M0 on the base period and prints the mean next-window NDCG@10 of windows 1..5 (all users, the
model frozen) after a growing number of epochs, for

    towers   the former backbone: ID embeddings -> two MLP towers (GELU) -> linear head on u ⊙ i,
             init 0.1, no biases, no regularisation (kept here only for this comparison)
    mf       the current backbone (incbench/backbones/mf.py) without its L2 (l2=0)
    mf+l2    the current backbone as configured (per-batch L2 0.01)

plus popularity and, when `implicit` is installed, implicit's ALS. The lead it tests: the
towers stop at 5 epochs while still at the training prior (they learned popularity only) and
need ~30 unregularised epochs to personalise; the dot-product model personalises within a few
epochs but overfits without L2; with the per-batch L2 it plateaus — which is why every fit
early-stops on a validation tail and the backbone is the dot-product model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from incbench import calibration, references, train
from incbench.backbones import mf
from incbench.config import Protocol, load_params

EPOCHS = (5, 10, 20, 30, 50)


class Towers(nn.Module):
    """The former `mf` backbone (two MLP towers on ID embeddings, linear head on u ⊙ i)."""

    def __init__(self, n_users, n_items, dim=32, layers=(64, 32), std=0.1):
        super().__init__()
        self.user_emb, self.item_emb = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=std)
        nn.init.normal_(self.item_emb.weight, std=std)

        def tower():
            return nn.Sequential(nn.Linear(dim, layers[0]), nn.GELU(), nn.Linear(*layers))

        self.user_tower, self.item_tower, self.head = tower(), tower(), nn.Linear(layers[-1], 1)

    def groups(self):
        return [("all", list(self.parameters()))]

    def score(self, users, items):
        u, i = self.user_tower(self.user_emb(users)), self.item_tower(self.item_emb(items))
        return self.head(u * i).squeeze(-1)

    def item_index(self, n_items):
        return self.item_tower(self.item_emb.weight[:n_items])

    def score_index(self, users, index):
        return (self.user_tower(self.user_emb(users)) * self.head.weight) @ index.T + self.head.bias


def ndcg(model, windows) -> float:
    from incbench import evaluate

    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    with torch.no_grad():
        values = [evaluate.next_window(model, windows.periods, t, known)[0]["ndcg@10"]
                  for t in range(1, windows.n_windows + 1)]  # fmt: skip
    return float(np.mean(values))


def curve(model, windows) -> str:
    base = windows.periods[0]
    base = base[base["part"] == "train"]
    done, out = 0, []
    for epochs in EPOCHS:
        fit = train.fit(model, base, n_items=windows.known(0)[1], n_negatives=4, lr=0.01,
                        epochs=epochs - done, batch_size=4096, seed=epochs)  # fmt: skip
        done = epochs
        out.append(f"{epochs}ep loss {fit.final_loss:.3f} NDCG {ndcg(model, windows):.4f}")
    return " | ".join(out)


def main(shift: float = 0.0) -> None:
    torch.manual_seed(0)
    standard = calibration.params_from(load_params(Path(__file__).resolve().parents[1]))
    windows, truth = calibration.stream(standard, Protocol(), shift)
    n_users, n_items = windows.known(windows.n_windows)
    print(f"synthetic, preference_shift {shift}: mean next-window NDCG@10, windows 1..5, frozen M0")
    table, _ = references.evaluate_reference("popularity", windows, truth)
    print(f"popularity: {table['ndcg@10'].mean():.4f}")
    table, _ = references.evaluate_reference("oracle", windows, truth)
    print(f"oracle:     {table['ndcg@10'].mean():.4f}")
    print("towers:", curve(Towers(n_users, n_items), windows))
    print("mf l2=0:", curve(mf.build(mf.Params(l2=0.0), n_users, n_items, seed=0), windows))
    print("mf+l2:  ", curve(mf.build(mf.Params(), n_users, n_items, seed=0), windows))
    try:
        from benchmarks.bench_calibration_als import _als
    except Exception:  # implicit missing (pytest.importorskip raises Skipped): optional here
        return
    print(f"implicit ALS (once): {ndcg(_als(windows, 1, 0), windows):.4f}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
