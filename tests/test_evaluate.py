"""Evaluation rules: forgetting that measures forgetting, a past-only threshold, warm slices."""

import numpy as np
import pandas as pd
import pytest

from incbench import evaluate
from incbench.metrics import best_threshold, classification, gauc
from incbench.references import Scores


def _period(rows, part):
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "positive"])
    frame["part"] = part
    return frame


def test_learning_a_users_later_items_is_not_forgetting():
    """Period 0: user 0 holds out item 0. Period 1: user 0 trains on items 1..10, which M_1
    learned to rank first. R[1][0] must not drop: every train item of the user in periods
    0..N is excluded from period 0's ranking, for every t alike."""
    p0 = pd.concat([_period([(0, 11, True), (1, 12, True)], "train"),
                    _period([(0, 0, True)], "holdout")])  # fmt: skip
    p1 = _period([(0, i, True) for i in range(1, 11)], "train")
    known = [(2, 13), (2, 13)]
    scores = np.zeros((2, 13))
    scores[0, 1:11] = 10.0  # the later items, learned
    scores[0, 0] = 5.0  # the held-out item comes right after them
    after = evaluate.holdout(Scores(scores), [p0, p1], 0, known)
    assert after["ndcg@10"] == pytest.approx(1.0)  # ranked first once 1..10 are excluded
    # without the later period, the learned items would fill the top 10: the rule matters
    assert evaluate.holdout(Scores(scores), [p0], 0, known[:1])["ndcg@10"] == 0.0


def test_threshold_maximises_past_accuracy_and_is_applied_to_the_next_window():
    labels = np.array([0, 0, 1, 1, 1], dtype=bool)
    logits = np.array([-2.0, -1.0, 0.5, 1.0, 3.0])
    thr = best_threshold(labels, logits)
    assert -1.0 < thr < 0.5
    assert classification(labels, logits, thr)["accuracy"] == 1.0
    # all-positive past data: predict everything positive
    assert best_threshold(np.ones(3, bool), np.array([0.1, 0.2, 0.3])) < 0.1
    cls = classification(np.array([1, 1, 0], bool), np.array([1.0, 2.0, 3.0]), 0.0)
    assert cls["majority_accuracy"] == pytest.approx(2 / 3)
    assert cls["majority_f1"] == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))


def test_gauc_weights_users_by_rows_and_skips_one_label_users():
    labels = np.array([1, 0, 1, 0, 0, 1], bool)
    logits = np.array([2.0, 1.0, 0.0, 1.0, 5.0, 5.0])
    users = np.array([0, 0, 1, 1, 1, 2])  # user 2 has one label only
    # user 0: AUC 1 (2 rows); user 1: positive 0.0 below both negatives: AUC 0 (3 rows)
    assert gauc(labels, logits, users) == pytest.approx((1.0 * 2 + 0.0 * 3) / 5)
