"""Quality metrics (DESIGN.md section 4). Vectorised: a batched matrix product plus a sort.

Ranking, full catalogue, never sampled: for each user, every candidate item is scored; items
the caller excludes (already seen) get -inf. Ties between equal scores are broken by a fixed
random priority per item (`tie_priority`, drawn from the protocol seed): never by item index,
which is the order of first appearance and would favour old items; the same for every method. With `hits[r]` = 1 if the item at rank
r (1-based) is a positive:
    HR@K = 1[Σ hits > 0]            Recall@K = Σ hits / |pos|      Precision@K = Σ hits / K
    F1@K = 2PR / (P + R) (0 if both are 0)
    NDCG@K = Σ_r hits[r] / log2(r + 1)  /  Σ_{r=1}^{min(K, |pos|)} 1 / log2(r + 1)
    MRR@K = 1 / rank of the first hit (0 if none)
Only users with at least one (non-excluded) positive are scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

KS = (10, 20)
RANKING = ("hr", "recall", "precision", "f1", "ndcg", "mrr")


def classification(
    labels: np.ndarray, logits: np.ndarray, threshold: float = 0.0, users: np.ndarray | None = None
) -> dict[str, float]:
    """Explicit-feedback classification over observed rows (label = liked).

    Threshold-free: ROC-AUC, GAUC (per-user AUC averaged over users with both labels, weighted
    by their rows, as in CTR papers) and log-loss. Thresholded at `threshold` (a logit chosen
    on past data by the caller): accuracy, precision, recall, F1. `majority_accuracy` is the
    reference a classifier must clear: the accuracy of always predicting the more frequent
    label of *these* rows (an upper bound on the majority rule learned from past data).
    """
    labels = np.asarray(labels, dtype=bool)
    logits = np.asarray(logits, dtype=np.float64)
    names = ("accuracy", "precision", "recall", "f1", "auc", "gauc", "logloss",
             "majority_accuracy", "majority_f1")  # fmt: skip
    if len(labels) == 0:
        return {k: float("nan") for k in names}
    pred = logits >= threshold
    tp = float(np.sum(pred & labels))
    fp = float(np.sum(pred & ~labels))
    fn = float(np.sum(~pred & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc = roc_auc(labels, logits)
    # log-loss from logits, numerically stable: softplus(-z) for positives, softplus(z) else
    z = np.where(labels, -logits, logits)
    logloss = float(np.mean(np.logaddexp(0.0, z)))
    rate = float(labels.mean())
    return {
        "accuracy": float(np.mean(pred == labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": auc,
        "gauc": gauc(labels, logits, users) if users is not None else float("nan"),
        "logloss": logloss,
        "majority_accuracy": max(rate, 1 - rate),
        "majority_f1": 2 * rate / (1 + rate) if rate >= 0.5 else 0.0,
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic: P(score of a positive > score of a negative),
    ties counting one half (average ranks) — the value of scikit-learn's roc_auc_score,
    computed with numpy so a run imports no scikit-learn. NaN without both labels."""
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(np.asarray(scores)[order], return_index=True, return_counts=True)
    ranks = np.empty(len(order))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average ranks
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def user_auc(labels: np.ndarray, logits: np.ndarray, users: np.ndarray) -> pd.DataFrame:
    """Per user with both labels among its rows: its ROC-AUC (columns user_idx, user_auc,
    rows), users in ascending order."""
    frame = pd.DataFrame({"u": users, "y": labels, "s": logits})
    out = []
    for user, part in frame.groupby("u", sort=True):
        y = part["y"].to_numpy()
        if 0 < y.sum() < len(y):
            out.append((user, roc_auc(y, part["s"].to_numpy()), len(y)))
    out = pd.DataFrame(out, columns=["user_idx", "user_auc", "rows"])
    return out.astype({"user_idx": np.int64, "user_auc": np.float64, "rows": np.int64})


def gauc(labels: np.ndarray, logits: np.ndarray, users: np.ndarray) -> float:
    """Per-user ROC-AUC, averaged over users with both labels, weighted by their rows."""
    return weighted_auc(user_auc(labels, logits, users))


def weighted_auc(per_user: pd.DataFrame) -> float:
    """GAUC from a `user_auc` frame: its AUCs averaged, weighted by each user's rows."""
    total = weight = 0.0
    for auc, rows in per_user[["user_auc", "rows"]].itertuples(index=False):
        total += auc * rows
        weight += rows
    return total / weight if weight else float("nan")


def best_threshold(labels: np.ndarray, logits: np.ndarray) -> float:
    """The logit threshold that maximises accuracy on these (past) rows; 0 if there are none.

    Candidates are midpoints between consecutive distinct scores (and both ends), so the
    threshold never sits exactly on a past score."""
    labels = np.asarray(labels, dtype=bool)
    logits = np.asarray(logits, dtype=np.float64)
    if len(labels) == 0:
        return 0.0
    order = np.argsort(-logits, kind="stable")
    s, y = logits[order], labels[order]
    # predicting positive for the top k rows: correct = positives in top k + negatives below
    correct = np.concatenate([[0], np.cumsum(y)]) + (
        (~y).sum() - np.concatenate([[0], np.cumsum(~y)])
    )
    valid = np.concatenate([[True], s[1:] != s[:-1], [True]])  # cut only between distinct scores
    k = int(np.flatnonzero(valid)[np.argmax(correct[valid])])
    if k == 0:
        return float(s[0] + 1.0)
    if k == len(s):
        return float(s[-1] - 1.0)
    return float((s[k - 1] + s[k]) / 2)


def tie_priority(n_items: int, seed: int) -> torch.Tensor:
    """A random priority per item (lower wins a tie); a prefix of it for fewer items."""
    return torch.from_numpy(np.random.default_rng([seed, 7919]).random(n_items))


def top_k(
    scores: torch.Tensor, exclude: torch.Tensor, k: int, priority: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices [B, min(k, I)] of the best items per row, excluded ones last.

    Ties: by `priority` (lower first) when given, else by item index. Exactly the order of a
    stable descending sort of the scores (items pre-ordered by the tie rule), found with one
    `topk` over unique int64 keys: (the float32 score's order-preserving bits, the item's place
    in the tie order). -0.0 counts as 0.0, as in a float comparison."""
    n = scores.shape[1]
    scores = scores.float().masked_fill(exclude, float("-inf")) + 0.0  # -0.0 -> 0.0
    bits = scores.contiguous().view(torch.int32)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    if priority is None:
        place = torch.arange(n, dtype=torch.int64)
    else:
        place = torch.empty(n, dtype=torch.int64)
        place[torch.argsort(priority[:n], stable=True)] = torch.arange(n, dtype=torch.int64)
    keys = (ordered << 32) | (n - 1 - place)  # later in the tie order: smaller key
    return torch.topk(keys, min(k, n), dim=1, largest=True, sorted=True).indices


def ranking(top: torch.Tensor, positives: torch.Tensor, ks=KS) -> dict[str, np.ndarray]:
    """Per-user ranking metrics from top-k indices [B, k] and a positive mask [B, I].

    Rows with no positive give NaN (callers drop them). Positives must already exclude
    items that were excluded from ranking.
    """
    n_pos = positives.sum(dim=1).to(torch.float64)
    hits = positives.gather(1, top).to(torch.float64)  # [B, k]
    kmax = top.shape[1]
    ranks = torch.arange(1, max(max(ks), 1) + 1, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 1)
    out: dict[str, np.ndarray] = {"n_pos": n_pos.numpy()}
    valid = n_pos > 0
    for k in ks:
        h = hits[:, : min(k, kmax)]
        n_hit = h.sum(dim=1)
        recall = n_hit / n_pos.clamp(min=1)
        precision = n_hit / k
        f1 = torch.where(n_hit > 0, 2 * precision * recall / (precision + recall), 0.0)
        dcg = (h * discount[: h.shape[1]]).sum(dim=1)
        ideal_len = torch.minimum(n_pos, torch.tensor(float(k))).long()
        idcg = torch.cumsum(discount[:k], 0)[(ideal_len - 1).clamp(min=0)]
        first = torch.where(h.any(dim=1), h.argmax(dim=1).to(torch.float64) + 1, torch.inf)
        values = {
            "hr": (n_hit > 0).to(torch.float64),
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "ndcg": dcg / idcg,
            "mrr": 1.0 / first,
        }
        for name, v in values.items():
            out[f"{name}@{k}"] = torch.where(valid, v, torch.nan).numpy()
    return out
