"""Metric functions against hand-computed values (ties, no positives, K > candidates)."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from incbench.metrics import classification, ranking, top_k


def L(r):  # 1 / log2(r + 1)
    return 1 / math.log2(r + 1)


def test_ranking_hand_computed():
    # one user, 5 items; scores rank items 4,2,0,3,1; positives {2, 3}
    scores = torch.tensor([[0.5, 0.1, 0.8, 0.3, 0.9]])
    exclude = torch.zeros(1, 5, dtype=torch.bool)
    pos = torch.tensor([[False, False, True, True, False]])
    top = top_k(scores, exclude, 3)
    assert top.tolist() == [[4, 2, 0]]
    m = ranking(top, pos, ks=(3,))
    assert m["hr@3"][0] == 1
    assert m["recall@3"][0] == pytest.approx(1 / 2)
    assert m["precision@3"][0] == pytest.approx(1 / 3)
    assert m["f1@3"][0] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert m["ndcg@3"][0] == pytest.approx(L(2) / (L(1) + L(2)))
    assert m["mrr@3"][0] == pytest.approx(1 / 2)


def test_ties_broken_by_item_index_and_exclusions_last():
    scores = torch.tensor([[1.0, 1.0, 1.0, 2.0]])
    exclude = torch.tensor([[False, True, False, False]])
    assert top_k(scores, exclude, 4).tolist() == [[3, 0, 2, 1]]


def test_user_without_positives_is_nan_and_k_larger_than_catalogue():
    scores = torch.tensor([[0.2, 0.1], [0.3, 0.4]])
    exclude = torch.zeros(2, 2, dtype=torch.bool)
    pos = torch.tensor([[False, False], [True, False]])
    m = ranking(top_k(scores, exclude, 10), pos, ks=(10,))
    assert math.isnan(m["ndcg@10"][0]) and math.isnan(m["hr@10"][0])
    # user 2: the only positive is at rank 2 of a 2-item catalogue
    assert m["recall@10"][1] == 1
    assert m["precision@10"][1] == pytest.approx(1 / 10)  # divides by K, as defined
    assert m["ndcg@10"][1] == pytest.approx(L(2) / L(1))
    assert m["mrr@10"][1] == pytest.approx(0.5)


def test_ndcg_ideal_uses_min_k_pos():
    # 4 positives, K = 2, both top-2 are positive: NDCG = 1
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    pos = torch.tensor([[True, True, True, True, False]])
    m = ranking(top_k(scores, torch.zeros(1, 5, dtype=torch.bool), 2), pos, ks=(2,))
    assert m["ndcg@2"][0] == pytest.approx(1.0)
    assert m["recall@2"][0] == pytest.approx(0.5)


def test_no_hit_gives_zeros():
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    pos = torch.tensor([[False, False, True]])
    m = ranking(top_k(scores, torch.zeros(1, 3, dtype=torch.bool), 2), pos, ks=(2,))
    assert m["hr@2"][0] == 0 and m["ndcg@2"][0] == 0 and m["mrr@2"][0] == 0 and m["f1@2"][0] == 0


def test_classification_hand_computed_and_against_sklearn():
    labels = np.array([1, 1, 0, 0, 1], dtype=bool)
    logits = np.array([2.0, -1.0, 0.5, -3.0, 0.0])  # 0.0 -> sigmoid 0.5 -> predicted positive
    m = classification(labels, logits)
    # predictions: 1 0 1 0 1 -> tp 2, fp 1, fn 1, tn 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, logits))
    probs = 1 / (1 + np.exp(-logits))
    assert m["logloss"] == pytest.approx(log_loss(labels, probs))


def test_classification_single_class_auc_is_nan():
    m = classification(np.array([True, True]), np.array([1.0, -1.0]))
    assert math.isnan(m["auc"]) and m["recall"] == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_scikit_learn_with_ties(seed):
    from incbench.metrics import roc_auc

    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def top_k_by_sort(
    scores: torch.Tensor, exclude: torch.Tensor, k: int, priority: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition `top_k` implements: a full stable sort (ties by `priority`)."""
    scores = scores.masked_fill(exclude, float("-inf"))
    if priority is None:
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    else:
        perm = torch.argsort(priority[: scores.shape[1]], stable=True)
        order = perm[torch.sort(scores[:, perm], dim=1, descending=True, stable=True).indices]
    return order[:, : min(k, scores.shape[1])]


def test_top_k_is_exactly_a_stable_sort_with_ties_infinities_and_signed_zeros():
    from incbench.metrics import tie_priority

    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        b, n = (
            int(torch.randint(1, 20, (1,), generator=g)),
            int(torch.randint(1, 50, (1,), generator=g)),
        )
        scores = torch.randint(-3, 4, (b, n), generator=g).float() * 0.5  # many ties
        scores[torch.rand(b, n, generator=g) < 0.1] = -0.0
        scores[torch.rand(b, n, generator=g) < 0.05] = float("inf")
        scores[torch.rand(b, n, generator=g) < 0.05] = float("-inf")
        exclude = torch.rand(b, n, generator=g) < 0.3
        k = int(torch.randint(1, 25, (1,), generator=g))
        priority = tie_priority(n, trial) if trial % 2 else None
        assert torch.equal(
            top_k(scores, exclude, k, priority), top_k_by_sort(scores, exclude, k, priority)
        ), trial
