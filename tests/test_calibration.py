"""References (popularity, oracle), the generator's truth, tie-breaking, and the calibration
stage's wiring."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from incbench import calibration, references, synthetic
from incbench.config import ConfigError, Protocol, protocol_from
from incbench.metrics import ranking, tie_priority, top_k
from tests.conftest import REPO

SMALL = calibration.CalibrationParams(
    shifts=(0.5,), seeds=(0,), methods=("frozen",),
    stream={"n_users": 50, "n_items": 30, "n_interactions": 4000, "n_phases": 3},
)  # fmt: skip


def test_calibrate_stage_depends_on_exactly_the_calibrated_method_files():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["calibrate"]["do"]
    files = {d for d in stage["deps"] if d.startswith("methods/")}
    cal = calibration.params_from(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert files == {f"methods/{m}.py" for m in cal.methods}


def test_oracle_reads_the_truth_and_nothing_else():
    windows, truth = calibration.stream(SMALL, Protocol(n_windows=3), 0.5)
    t = 2
    a = references.oracle(windows, t, truth).table.numpy()
    # Scramble what users did (keep the clock): the oracle must not change.
    periods = [p.copy() for p in windows.periods]
    for p in periods:
        p["item_idx"] = np.random.default_rng(1).permutation(p["item_idx"].to_numpy())
    scrambled = dataclasses.replace(windows, periods=periods)
    assert np.array_equal(a, references.oracle(scrambled, t, truth).table.numpy())
    # It is the truth's expectation, weighted by the phases window t spans.
    phases = truth.phase_of(windows.periods[t]["timestamp"].to_numpy())
    w = np.bincount(phases, minlength=truth.n_phases) / len(phases)
    users = windows.users["user"].to_numpy()[: a.shape[0]]
    items = windows.items["item"].to_numpy()[: a.shape[1]]
    expect = sum(w[p] * truth.expected_positive(p)[np.ix_(users, items)] for p in range(3))
    assert np.allclose(a, expect, atol=1e-6)


def test_truth_matches_the_generated_stream():
    """Liked interactions per item: the simulated frequencies match the truth's expectation."""
    p = synthetic.params_from({"n_users": 40, "n_items": 25, "n_interactions": 200_000,
                               "n_phases": 1, "new_user_fraction": 0, "new_item_fraction": 0})  # fmt: skip
    tables, truth = synthetic.simulate(p)
    inter = tables.interactions
    liked = inter[inter["rating"] >= 4]
    observed = np.bincount(liked["item"], minlength=p.n_items) / len(inter)
    expected = truth.expected_positive(0).mean(axis=0)  # users are drawn uniformly
    assert np.abs(observed - expected).sum() < 0.03
    assert abs(len(liked) / len(inter) - expected.sum()) < 0.01


def test_popularity_counts_only_train_rows_before_t():
    windows, _ = calibration.stream(SMALL, Protocol(n_windows=3), 0.5)
    t = 2
    scores = references.popularity(windows, t).table.numpy()[0]
    rows = pd.concat([p[p["part"] == "train"] for p in windows.periods[:t]])
    counts = np.bincount(rows["item_idx"], minlength=windows.known(t)[1])
    assert np.allclose(scores, np.log1p(counts))
    recent = references.popularity(windows, t, recent=True).table.numpy()[0]
    last = windows.periods[t - 1]
    counts = np.bincount(last.loc[last["part"] == "train", "item_idx"], minlength=len(recent))
    assert np.allclose(recent, np.log1p(counts))


def test_ties_are_not_broken_by_item_index():
    n_users, n_items = 4000, 100
    scores = torch.zeros(n_users, n_items)  # a constant scorer: every item ties
    exclude = torch.zeros(n_users, n_items, dtype=torch.bool)
    pos = torch.zeros(n_users, n_items, dtype=torch.bool)
    pos[
        torch.arange(n_users),
        torch.from_numpy(np.random.default_rng(0).integers(0, n_items, n_users)),
    ] = True
    top = top_k(scores, exclude, 10, tie_priority(n_items, seed=0))
    hr = ranking(top, pos, ks=(10,))["hr@10"].mean()
    assert hr == pytest.approx(10 / n_items, abs=0.02)  # the random expectation
    # the oldest item (index 0) is not favoured: over protocol seeds it is in the top 10 ~10%
    first = [
        0 in top_k(scores[:1], exclude[:1], 10, tie_priority(n_items, s))[0] for s in range(200)
    ]
    assert 0.03 < np.mean(first) < 0.2
    # and a prefix of the catalogue keeps the same priorities (windows grow the catalogue)
    assert torch.equal(tie_priority(50, 3), tie_priority(100, 3)[:50])


def test_calibration_summary_and_checks_come_from_the_measured_numbers():
    rows = []
    for shift, frozen, retrain in ((0.0, 0.20, 0.20), (0.8, 0.05, 0.10)):
        for seed in (0, 1):
            for w in (1, 2, 3):
                rows += [
                    (shift, "frozen", seed, w, frozen),
                    (shift, "full_retrain", seed, w, retrain),
                ]
        for w in (1, 2, 3):
            rows += [(shift, "oracle", -1, w, 0.4), (shift, "popularity", -1, w, 0.08)]
    long = pd.DataFrame(rows, columns=["shift", "row", "seed", "window", "ndcg"])
    cal = calibration.CalibrationParams(
        shifts=(0.0, 0.8), seeds=(0, 1), methods=("frozen", "full_retrain")
    )
    table, lines = calibration.summarise(long, cal)
    got = table.set_index(["shift", "row"])
    assert got.loc[(0.8, "full_retrain"), "x_frozen"] == pytest.approx(2.0)
    assert got.loc[(0.0, "frozen"), "of_oracle"] == pytest.approx(0.5)
    assert any("required >= 1.3: PASS" in line for line in lines)
    assert any("frozen 0.0500 above popularity 0.0800: FAIL" in line for line in lines)


def test_stale_oracle_is_the_base_period_truth_served_unchanged():
    """Without drift it equals the oracle; with drift it keeps the base period's truth."""
    protocol = Protocol(n_windows=3)
    windows, truth = calibration.stream(SMALL, protocol, 0.0)
    for t in (1, 3):
        assert np.allclose(references.scorer("stale_oracle", windows, t, truth).table.numpy(),
                           references.oracle(windows, t, truth).table.numpy())  # fmt: skip
    windows, truth = calibration.stream(SMALL, protocol, 1.0)
    stale = references.scorer("stale_oracle", windows, 3, truth).table.numpy()
    assert np.array_equal(stale, references.scorer("stale_oracle", windows, 1, truth).table.numpy())
    assert not np.allclose(stale, references.oracle(windows, 3, truth).table.numpy())


def test_checks_keep_their_verdict_and_add_the_truth_for_scale():
    """frozen below popularity stays a FAIL even when the stale oracle is below it too; the
    line adds the stale oracle's score for scale. full_retrain's check is unaffected."""
    cal = dataclasses.replace(
        SMALL, shifts=(0.0, 0.8), seeds=(0, 1), methods=("frozen", "full_retrain")
    )
    values = {  # (shift, row) -> NDCG per window 1..3
        (0.0, "oracle"): 0.30, (0.0, "stale_oracle"): 0.30, (0.0, "popularity"): 0.03,
        (0.0, "frozen"): 0.25, (0.0, "full_retrain"): 0.25,
        (0.8, "oracle"): 0.40, (0.8, "stale_oracle"): 0.06, (0.8, "popularity"): 0.08,
        (0.8, "frozen"): 0.05, (0.8, "full_retrain"): 0.09,
    }  # fmt: skip
    rows = [(shift, row, seed if row in cal.methods else -1, w, v)
            for (shift, row), v in values.items() for seed in (0, 1) for w in (1, 2, 3)]  # fmt: skip
    long = pd.DataFrame(rows, columns=["shift", "row", "seed", "window", "ndcg"]).drop_duplicates()
    _, lines = calibration.summarise(long, cal)
    frozen = next(line for line in lines if "frozen 0.0500 above popularity" in line)
    assert "FAIL (for scale: the stale oracle" in frozen and "0.0600" in frozen
    retrain = next(line for line in lines if "full_retrain 0.0900 above popularity" in line)
    assert retrain.endswith("PASS")
    assert all(("PASS" in line) != ("FAIL" in line) for line in lines)


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_shift_zero_check_names_its_tolerance_by_the_number_of_seeds(seeds):
    """With one seed there is no seed noise: the line says so instead of printing ± 0.000."""
    rows = [(shift, row, seed, w, v)
            for shift in (0.0, 0.8) for seed in seeds for w in (1, 2, 3)
            for row, v in (("frozen", 0.20 + 0.001 * seed), ("full_retrain", 0.21))]  # fmt: skip
    rows += [(shift, ref, -1, w, v) for shift in (0.0, 0.8) for w in (1, 2, 3)
             for ref, v in (("popularity", 0.05), ("oracle", 0.4))]  # fmt: skip
    long = pd.DataFrame(rows, columns=["shift", "row", "seed", "window", "ndcg"])
    cal = dataclasses.replace(SMALL, shifts=(0.0, 0.8), seeds=seeds,
                              methods=("frozen", "full_retrain"))  # fmt: skip
    _, lines = calibration.summarise(long, cal)
    line = next(x for x in lines if x.startswith("shift 0.0: update / frozen"))
    if len(seeds) == 1:
        assert "one seed: no seed noise measured" in line and "±" not in line
    else:
        assert "± 2 SE over seeds" in line and "±" in line.split(":")[2]


GRADUAL = {"n_users": 50, "n_items": 30, "n_interactions": 4000, "n_phases": 4, "drift": "gradual",
           "new_user_fraction": 0.0, "new_item_fraction": 0.0, "popularity_drift": 0.0}  # fmt: skip


def _targets(truth) -> np.ndarray:
    """Each user's drift target under `drift: gradual`: the genre the taste moved toward."""
    return np.argmax(truth.taste[:, -1].astype(float) - truth.taste[:, 0], axis=1)


def test_gradual_drift_moves_taste_monotonically_toward_one_target():
    p = synthetic.params_from({**GRADUAL, "preference_shift": 0.8})
    tables, truth = synthetic.simulate(p)
    a = synthetic.ramp(p)  # the line 0.8 * time at each phase's midpoint: 0.1, 0.3, 0.5, 0.7
    assert np.allclose(a, [0.1, 0.3, 0.5, 0.7]) and np.allclose(np.diff(a), 0.8 / 4)
    taste = truth.taste.astype(float)
    target = np.eye(p.n_genres)[_targets(truth)]
    start = (taste[:, 0] - a[0] * target) / (1 - a[0])  # the Dirichlet start, before any drift
    assert np.allclose(start.sum(axis=1), 1) and (start > -1e-6).all()
    for ph in range(p.n_phases):  # every phase on the line from the start taste to the target
        assert np.allclose(taste[:, ph], (1 - a[ph]) * start + a[ph] * target, atol=1e-5)
    distance = np.abs(taste - target[:, None, :]).sum(axis=2)  # L1 to the target, per phase
    assert np.all(np.diff(distance, axis=1) < 0)
    # The stream follows: the share of interactions in the user's target genre grows by phase.
    inter = tables.interactions
    hit = truth.item_genre[inter["item"]] == _targets(truth)[inter["user"]]
    share = pd.Series(hit).groupby(truth.phase_of(inter["timestamp"].to_numpy())).mean()
    assert share.is_monotonic_increasing and share.iloc[-1] - share.iloc[0] > 0.5
    # No shift, no drift: every phase keeps the start taste.
    _, still = synthetic.simulate(synthetic.params_from({**GRADUAL, "preference_shift": 0.0}))
    assert np.array_equal(still.taste, np.repeat(still.taste[:, :1], p.n_phases, axis=1))


def test_gradual_drift_is_deterministic_and_jumps_stays_the_default():
    p = synthetic.params_from({**GRADUAL, "preference_shift": 0.8})
    (a, ta), (b, tb) = synthetic.simulate(p), synthetic.simulate(p)
    assert a.interactions.equals(b.interactions) and np.array_equal(ta.taste, tb.taste)
    other = synthetic.simulate(dataclasses.replace(p, seed=1))[0]
    assert not a.interactions.equals(other.interactions)
    assert synthetic.SyntheticParams().drift == "jumps"
    with pytest.raises(ConfigError, match="drift"):
        synthetic.params_from({"drift": "sudden"})


def test_oracle_follows_the_gradual_drift_and_the_stale_oracle_does_not():
    """Window by window the oracle puts more of its mass on each user's target genre (it reads
    the taste at the evaluated window); the stale oracle keeps the base period's."""
    cal = dataclasses.replace(SMALL, stream={**GRADUAL, "n_phases": 6})  # 3 base + 3 windows
    windows, truth = calibration.stream(cal, Protocol(n_windows=3), 0.8)
    n_users, n_items = windows.known(3)
    users = windows.users["user"].to_numpy()[:n_users]
    items = windows.items["item"].to_numpy()[:n_items]
    on_target = truth.item_genre[items][None, :] == _targets(truth)[users][:, None]

    def mass(table):  # mean over users of the share of the scores on the target genre
        return float(np.mean((table * on_target).sum(axis=1) / table.sum(axis=1)))

    live = [mass(references.oracle(windows, t, truth).table.numpy()) for t in (1, 2, 3)]
    stale = [mass(references.oracle(windows, t, truth, stale=True).table.numpy()) for t in (1, 2, 3)]  # fmt: skip
    assert live[0] < live[1] < live[2]
    assert stale[0] == stale[2] < live[0]


def test_calibration_stream_phases_fall_on_the_protocol_windows():
    """params.yaml's calibration stream: the base holds the first phases and each window its
    own, so the oracle of window t reads one step of the drift (the module docstring's
    timeline)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cal, protocol = calibration.params_from(params), protocol_from(params)
    windows, truth = calibration.stream(cal, protocol, max(cal.shifts))
    per_window = truth.n_phases * (1 - protocol.base_fraction) / protocol.n_windows
    in_base = truth.n_phases * protocol.base_fraction
    assert per_window == int(per_window) and in_base == int(in_base)
    for t, period in enumerate(windows.periods):
        lo = 0 if t == 0 else int(in_base + (t - 1) * per_window)
        hi = int(in_base) if t == 0 else int(lo + per_window)
        phases = truth.phase_of(period["timestamp"].to_numpy())
        assert np.mean((phases >= lo) & (phases < hi)) > 0.95, (t, np.bincount(phases))
