"""Evaluation of one model on one period: next-window quality and holdout retention.

Next window t (model M_{t-1}; DESIGN.md section 4):
  - classification, explicit feedback (as TALLRec / LSAT and CTR papers on MovieLens): over
    the observed interactions of window t (both parts) of warm users (known before t; cold
    users' rows get `cold_user:` columns), label = liked (rating >= threshold);
    AUC, GAUC, log-loss, and accuracy / F1 at a logit threshold chosen on past data only: the
    one that maximises accuracy on the holdout rows of period t-1 (never trained on), scored
    by the same model M_{t-1}. The majority-class accuracy of window t is reported beside it;
  - ranking for each user with a positive in window t, over every item known by the end of
    window t, excluding items the user interacted with before t (any part of any period);
  - slices: cold users/items are those first seen in window t.
Retention R[t][j] (model M_t, holdout part of period j <= t): the same, on the holdout rows of
period j, ranking the items known by the end of period j and excluding items the user
interacted with before j and every item of that user in the train parts of periods j..N — one
fixed exclusion set per j, the same for every t and method: learning a user's later items
never counts as forgetting, and a model that does not change (frozen) keeps R[t][j] = R[j][j].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from incbench.metric_registry import ITEM_SLICED, RETENTION, SLICED
from incbench.metrics import (
    KS,
    best_threshold,
    classification,
    ranking,
    tie_priority,
    top_k,
    user_auc,
    weighted_auc,
)

USER_CHUNK = 1024


def _mask(users: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], n_items: int) -> torch.Tensor:
    """Dense bool [len(users), n_items] marking (user, item) pairs, for the given users."""
    row = np.full(int(max(users.max(), pairs[0].max(initial=0))) + 1, -1, dtype=np.int64)
    row[users] = np.arange(len(users))
    u, i = pairs
    keep = (u < len(row)) & (i < n_items)
    r = row[u[keep]]
    ok = r >= 0
    mask = torch.zeros(len(users), n_items, dtype=torch.bool)
    mask[torch.from_numpy(r[ok]), torch.from_numpy(i[keep][ok])] = True
    return mask


@torch.no_grad()
def rank_users(model, positives: pd.DataFrame, seen: pd.DataFrame, n_items: int,
               cold_item_from: int | None = None, device: str = "cpu",
               tie_seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Per-user ranking metrics. `positives`/`seen`: frames with user_idx, item_idx."""
    users = np.unique(positives["user_idx"].to_numpy())
    pos_pairs = (positives["user_idx"].to_numpy(), positives["item_idx"].to_numpy())
    seen_pairs = (seen["user_idx"].to_numpy(), seen["item_idx"].to_numpy())
    frames = []
    index = model.item_index(n_items)  # the catalogue is encoded once per evaluation
    priority = tie_priority(n_items, tie_seed)  # ties: a seeded permutation, never item index
    for lo in range(0, len(users), USER_CHUNK):
        chunk = users[lo : lo + USER_CHUNK]
        exclude = _mask(chunk, seen_pairs, n_items)
        pos = _mask(chunk, pos_pairs, n_items) & ~exclude
        scores = model.score_index(torch.from_numpy(chunk).to(device), index).float().cpu()
        top = top_k(scores, exclude, max(KS), priority)
        values = {"user_idx": chunk, **ranking(top, pos)}
        if cold_item_from is not None:
            cold = torch.arange(n_items) >= cold_item_from
            for name, part in (("cold_item", pos & cold), ("warm_item", pos & ~cold)):
                sliced = ranking(top, part, ks=(10,))
                for metric in ITEM_SLICED:
                    values[f"{name}:{metric}"] = sliced[metric]
        frames.append(pd.DataFrame(values))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"user_idx": users})
    return out[out["n_pos"] > 0].reset_index(drop=True) if "n_pos" in out else out


@torch.no_grad()
def logits(model, rows: pd.DataFrame, device: str = "cpu", batch: int = 65536) -> np.ndarray:
    u = torch.from_numpy(rows["user_idx"].to_numpy(np.int64, copy=True))
    i = torch.from_numpy(rows["item_idx"].to_numpy(np.int64, copy=True))
    out = [model.score(u[lo : lo + batch].to(device), i[lo : lo + batch].to(device)).float().cpu()
           for lo in range(0, len(u), batch)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def next_window(model, periods: list[pd.DataFrame], t: int, known: list[tuple[int, int]],
                device: str = "cpu", tie_seed: int = 0) -> tuple[dict[str, float], pd.DataFrame]:  # fmt: skip
    """Quality of `model` (M_{t-1}) on window t: (metrics, per-user frame)."""
    window = periods[t]
    n_users_before, n_items_before = known[t - 1]
    n_items = known[t][1]
    seen = pd.concat([p[["user_idx", "item_idx"]] for p in periods[:t]], ignore_index=True)
    past = periods[t - 1]
    past = past[past["part"] == "holdout"]
    threshold = best_threshold(past["positive"].to_numpy(), logits(model, past, device))
    warm_rows = window["user_idx"].to_numpy() < n_users_before
    scores = logits(model, window, device)
    labels, users = window["positive"].to_numpy(), window["user_idx"].to_numpy()
    # each warm user's AUC over its rated rows of window t (users with both labels): GAUC's
    # terms, and the per-user unit behind a test of AUC (analysis.py)
    auc = user_auc(labels[warm_rows], scores[warm_rows], users[warm_rows])
    metrics = classification(labels[warm_rows], scores[warm_rows], threshold)
    metrics["gauc"] = weighted_auc(auc)
    cold = classification(labels[~warm_rows], scores[~warm_rows], threshold)
    metrics.update({f"cold_user:{k}": cold[k] for k in ("auc", "accuracy", "f1", "logloss")})
    metrics["threshold"] = threshold
    metrics["warm_rows"] = float(warm_rows.sum())
    positives = window.loc[window["positive"], ["user_idx", "item_idx"]]
    per_user = rank_users(model, positives, seen, n_items, n_items_before, device, tie_seed)
    per_user["cold_user"] = per_user["user_idx"] >= n_users_before
    per_user = per_user.merge(auc[["user_idx", "user_auc"]], on="user_idx", how="left")
    metrics["warm_user:user_auc"] = _mean(per_user.loc[~per_user["cold_user"], "user_auc"])
    ranking_cols = [c for c in per_user.columns if "@" in c]
    for col in ranking_cols:
        metrics[col] = _mean(per_user[col])
    for name, sel in (("cold_user", per_user["cold_user"]), ("warm_user", ~per_user["cold_user"])):
        for col in SLICED:
            metrics[f"{name}:{col}"] = _mean(per_user.loc[sel, col])
        if "cold_item:ndcg@10" in per_user:
            metrics[f"{name}:cold_item:ndcg@10"] = _mean(per_user.loc[sel, "cold_item:ndcg@10"])
    metrics["users_ranked"] = float(len(per_user))
    metrics["cold_users"] = float(per_user["cold_user"].sum())
    metrics["warm_users"] = float((~per_user["cold_user"]).sum())
    metrics["rows"] = float(len(window))
    return metrics, per_user


def holdout(model, periods: list[pd.DataFrame], j: int, known: list[tuple[int, int]],
            device: str = "cpu", tie_seed: int = 0, cache: dict | None = None
            ) -> dict[str, float]:  # fmt: skip
    """Retention: quality of `model` (any M_t, t >= j) on the holdout part of period j.
    `cache` (one dict per run) keeps each j's rows and exclusion set: they never change."""
    if cache is not None and j in cache:
        rows, seen = cache[j]
    else:
        period = periods[j]
        rows = period[period["part"] == "holdout"]
        trained = periods[j:]  # every train item of the user from j on: fixed per j
        seen = pd.concat(
            [p[["user_idx", "item_idx"]] for p in periods[:j]]
            + [p.loc[p["part"] == "train", ["user_idx", "item_idx"]] for p in trained],
            ignore_index=True,
        )
        if cache is not None:
            cache[j] = rows, seen
    cls = classification(rows["positive"].to_numpy(), logits(model, rows, device))
    positives = rows.loc[rows["positive"], ["user_idx", "item_idx"]]
    per_user = rank_users(model, positives, seen, known[j][1], None, device, tie_seed)
    ranked = lambda m: _mean(per_user[m]) if len(per_user) else float("nan")  # noqa: E731
    return {m: cls[m] if m in cls else ranked(m) for m in RETENTION}


def _mean(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")
