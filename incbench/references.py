"""Reference rows: scorers that are not update methods, evaluated by the same code.

    popularity         item counts of train rows before t (base + windows 1..t-1)
    recent_popularity  the same counts over the last period before t only
    oracle             synthetic data only: the generator's own chance that a user's next
                       interaction in window t is a liked one (incbench/synthetic.py, Truth)
    stale_oracle       synthetic data only: the same chance as it was during the base period
                       (the truth's phases weighted by the base period's rows), served
                       unchanged: for scale beside `frozen` (not a bound: a stale model may
                       lean on popularity more than the stale truth does)

Popularity is the floor a learned backbone must clear; the oracle is the ceiling on data whose
truth is known — for ranking: it scores P(next interaction is liked and is this item), not
P(liked | observed), so its classification cells are no ceiling. Each is a tiny object with the scoring interface evaluate.py uses
(`item_index`, `score_index`, `score`), built from data strictly before window t (the oracle
reads the truth at window t's own time: that is what makes it an oracle). Counts tie often;
ties are broken by the protocol's seeded permutation like every other ranking.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from incbench import evaluate, io
from incbench.split import Windows

NAMES = ("popularity", "recent_popularity", "oracle", "stale_oracle")
VERSION = "1"  # bump when a reference's definition changes


class Scores:
    """A scorer from one [users or 1, items] table: a row per user, or one row for all."""

    def __init__(self, table: np.ndarray):
        self.table = torch.as_tensor(np.atleast_2d(table), dtype=torch.float32)

    def item_index(self, n_items: int) -> torch.Tensor:
        return torch.arange(n_items)

    def _rows(self, users: torch.Tensor) -> torch.Tensor:
        if self.table.shape[0] == 1:
            return self.table.expand(len(users), -1)
        return self.table[users]

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self._rows(users.cpu())[:, index.cpu()]

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._rows(users.cpu()).gather(1, items.cpu().unsqueeze(1)).squeeze(1)


def _train(period: pd.DataFrame) -> pd.DataFrame:
    return period[period["part"] == "train"]


def popularity(windows: Windows, t: int, recent: bool = False) -> Scores:
    """log(1 + train count) per item, over all periods before t (or only period t-1)."""
    n_items = windows.known(t)[1]
    periods = windows.periods[t - 1 : t] if recent else windows.periods[:t]
    items = np.concatenate([_train(p)["item_idx"].to_numpy() for p in periods])
    return Scores(np.log1p(np.bincount(items, minlength=n_items)[:n_items].astype(np.float64)))


def oracle(windows: Windows, t: int, truth, stale: bool = False) -> Scores:
    """The truth's expected-liked chance per (user, item), averaged over window t's phases
    (`stale`: over the base period's phases, whatever t is).

    A window can straddle phases of the generator: each phase is weighted by the share of
    window t's (or the base period's) interactions that fall in it.
    """
    n_users, n_items = windows.known(t)
    phases = truth.phase_of(windows.periods[0 if stale else t]["timestamp"].to_numpy())
    weights = np.bincount(phases, minlength=truth.n_phases) / len(phases)
    threshold = (windows.manifest.get("protocol") or {}).get("positive_threshold", 4.0)
    raw_users = windows.users["user"].to_numpy()[:n_users].astype(np.int64)
    raw_items = windows.items["item"].to_numpy()[:n_items].astype(np.int64)
    table = np.zeros((n_users, n_items))
    for phase in np.flatnonzero(weights):
        liked = truth.expected_positive(int(phase), threshold)
        table += weights[phase] * liked[np.ix_(raw_users, raw_items)]
    return Scores(table)


def scorer(name: str, windows: Windows, t: int, truth=None) -> Scores:
    if name == "popularity":
        return popularity(windows, t)
    if name == "recent_popularity":
        return popularity(windows, t, recent=True)
    if name == "oracle":
        if truth is None:
            raise ValueError("the oracle reference needs the generator's truth (synthetic data)")
        return oracle(windows, t, truth)
    if name == "stale_oracle":
        if truth is None:
            raise ValueError("the stale oracle reads the generator's truth (synthetic data)")
        return oracle(windows, t, truth, stale=True)
    raise ValueError(f"unknown reference {name!r}; known: {list(NAMES)}")


def evaluate_reference(
    name: str, windows: Windows, truth=None, tie_seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Next-window metrics of a reference for windows 1..N: (one row per window, per user)."""
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    rows, users = [], []
    for t in range(1, windows.n_windows + 1):
        model = scorer(name, windows, t, truth)
        metrics, per_user = evaluate.next_window(model, windows.periods, t, known, "cpu", tie_seed)
        rows.append({"window": t, "status": "ok", **metrics})
        per_user.insert(0, "window", t)
        users.append(per_user)
    return pd.DataFrame(rows), pd.concat(users, ignore_index=True)


def run_reference(dataset: str, name: str, root: Path) -> Path:
    """`incbench reference`: a reference's run folder, results/runs/<dataset>-reference-<name>-0/,
    in the format of a method's run (summary.json, windows.csv, per_user.parquet,
    provenance.json), so every table shows it beside the methods."""
    from incbench import provenance, synthetic
    from incbench.config import load_params, protocol_from
    from incbench.split import load_windows
    from incbench.summary import quality_summary

    protocol = protocol_from(load_params(root))
    windows = load_windows(root / "data" / "windows" / dataset)
    truth = None
    if name in ("oracle", "stale_oracle"):
        truth = synthetic.Truth.load(root / "data" / "raw" / dataset / "truth.npz")
    table, per_user = evaluate_reference(name, windows, truth, protocol.seed)
    next_window, window_1 = quality_summary(table)
    summary = {
        "dataset": dataset, "dataset_version": windows.manifest["dataset"]["version"],
        "backbone": "reference", "method": name, "method_version": VERSION, "seed": 0,
        "status": "ok", "reason": "", "kind": "reference", "windows_evaluated": len(table),
        "next_window": next_window, "window_1": window_1,
    }  # fmt: skip
    prov = provenance.collect(
        root, "cpu", method={"name": name, "version": VERSION, "params": {}}, backbone=None,
        protocol=dataclasses.asdict(protocol), seed=0,
        dataset=windows.manifest["dataset"], split_sha256=windows.manifest["sha256"],
    )  # fmt: skip
    out = root / "results" / "runs" / f"{dataset}-reference-{name}-0"
    with io.atomic_dir(out) as build:
        io.write_json(build / "summary.json", summary)
        io.write_csv(build / "windows.csv", table)
        io.write_parquet(build / "per_user.parquet", per_user)
        io.write_json(build / "provenance.json", prov)
    return out
