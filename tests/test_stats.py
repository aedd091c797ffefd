"""Statistics against known values: scipy's own results, Holm by hand, degenerate cases."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from incbench.stats import (
    bwt,
    forgetting,
    holm,
    mean_std_ci,
    rank_direction,
    seed_std,
    wilcoxon,
)


def test_ci_matches_scipy_t_interval():
    v = [0.21, 0.25, 0.22, 0.24]
    got = mean_std_ci(v)
    lo, hi = sps.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=sps.sem(v))
    assert got["ci_low"] == pytest.approx(lo) and got["ci_high"] == pytest.approx(hi)
    assert got["std"] == pytest.approx(np.std(v, ddof=1))


def test_ci_degenerate():
    one = mean_std_ci([0.3])
    assert one["mean"] == 0.3 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    same = mean_std_ci([0.3, 0.3, 0.3])
    assert same["std"] == 0 and same["ci_low"] == same["ci_high"] == pytest.approx(0.3)
    assert mean_std_ci([None, float("nan")])["n"] == 0


def test_wilcoxon_matches_scipy_and_identical_runs():
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(40)
    assert wilcoxon(a, b) == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert wilcoxon(a, a) == 1.0  # identical runs: no evidence of a difference


def test_holm_by_hand():
    # p sorted: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04)
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02}) == pytest.approx(
        {"a": 0.04, "b": 0.03, "c": 0.04}
    )
    # monotone: a later smaller product is raised to the running maximum
    assert holm({"x": 0.02, "y": 0.025, "z": 0.5}) == pytest.approx(
        {"x": 0.06, "y": 0.06, "z": 0.5}
    )


def test_forgetting_and_bwt_by_hand():
    R = [
        [0.5, None, None],
        [0.4, 0.6, None],
        [0.3, 0.5, 0.7],
    ]
    # F = mean(max(0.5, 0.4) - 0.3, 0.6 - 0.5) = mean(0.2, 0.1)
    assert forgetting(R) == pytest.approx(0.15)
    # BWT = mean(0.3 - 0.5, 0.5 - 0.6)
    assert bwt(R) == pytest.approx(-0.15)
    assert math.isnan(forgetting([[None]]))


def test_rank_direction_follows_the_ranks_not_the_mean():
    d = [0.1, 0.2, 0.3, 0.4, -5.0]  # W+ = 1+2+3+4 = 10 > W- = 5, though the mean is negative
    assert rank_direction(d) == 1 and np.mean(d) < 0
    assert rank_direction([-1.0, 0.0, float("nan")]) == -1
    assert rank_direction([1.0, -1.0]) == 0 and rank_direction([0.0]) == 0


def test_seed_std_with_one_seed_is_not_available():
    assert math.isnan(seed_std([0.3])) and math.isnan(seed_std([]))
    assert seed_std([1.0, 3.0]) == pytest.approx(math.sqrt(2))
