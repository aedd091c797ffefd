"""User-level significance against full_retrain (incbench/analysis.py) on hand-made runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from incbench import analysis, report, stats

COLS = ["window", "user_idx", "cold_user", "ndcg@10", "recall@10"]


def _record(tmp_path, method, seed, rows, status="ok"):
    folder = tmp_path / f"{method}-{seed}"
    folder.mkdir()
    frame = pd.DataFrame(rows, columns=COLS)
    frame.to_parquet(folder / "per_user.parquet")
    return {"method": method, "seed": seed, "status": status, "folder": folder, "per_user": frame}


def _values(users, windows, rng):
    """Rows (window, user, cold_user=False, ndcg, recall) with random metric values."""
    return [(w, u, False, rng.random(), rng.random()) for w in windows for u in users]


def test_each_user_counts_once_over_three_seeds(tmp_path):
    rng = np.random.default_rng(0)
    users, windows, seeds = range(30), (1, 2, 3), (0, 1, 2)
    runs = {(m, s): _values(users, windows, rng) for m in ("full_retrain", "x") for s in seeds}
    records = [_record(tmp_path, m, s, rows) for (m, s), rows in runs.items()]

    def seed_averaged(method, metric):
        per_seed = []
        for s in seeds:
            df = pd.DataFrame(runs[(method, s)], columns=COLS)
            per_seed.append(df[df["window"] >= 2].groupby("user_idx")[metric].mean())
        return pd.concat(per_seed, axis=1), pd.concat(per_seed, axis=1).mean(axis=1).to_numpy()

    sig = analysis.significance(records)
    head = sig[sig["family"] == "headline"].set_index("metric")
    for metric in ("ndcg@10", "recall@10"):
        seeds_x, x = seed_averaged("x", metric)
        seeds_ref, ref = seed_averaged("full_retrain", metric)
        row = head.loc[metric]
        assert row["n_users"] == 30 and row["seeds"] == 3 and row["windows"] == "2-3"
        assert row["p"] == pytest.approx(sps.wilcoxon(x, ref).pvalue, rel=1e-12)
        assert row["mean_diff"] == pytest.approx(np.mean(x - ref))
        lo, hi = sps.t.interval(0.95, 29, loc=np.mean(x - ref), scale=sps.sem(x - ref))
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((lo, hi))
        # spread: std over seeds of the seed's mean over users, and of the seed-matched difference
        assert row["seed_std_method"] == pytest.approx(np.std(seeds_x.mean(), ddof=1))
        diff = seeds_x.mean().to_numpy() - seeds_ref.mean().to_numpy()
        assert row["seed_std_diff"] == pytest.approx(np.std(diff, ddof=1))
    per_window = sig[sig["family"] == "per-window"]
    assert sorted(per_window["window"].unique()) == [2, 3] and (per_window["n_users"] == 30).all()


def test_users_missing_from_a_seed_are_left_out(tmp_path):
    rng = np.random.default_rng(1)
    records = [_record(tmp_path, m, s, _values(range(10), (2,), rng))
               for m in ("full_retrain", "x") for s in (0, 1)]  # fmt: skip
    rows = _values(range(9), (2,), rng)  # user 9 not ranked in this seed
    records.append(_record(tmp_path, "y", 0, rows))
    records.append(_record(tmp_path, "y", 1, _values(range(10), (2,), rng)))
    sig = analysis.significance(records)
    head = sig[sig["family"] == "headline"].set_index("method")
    assert head.loc["x", "n_users"].tolist() == [10, 10]
    assert head.loc["y", "n_users"].tolist() == [9, 9]


def test_holm_by_hand_across_windows_and_methods():
    tests = [
        {"method": "a", "window": 2, "p": 0.01, "direction": -1},
        {"method": "a", "window": 3, "p": 0.04, "direction": 1},
        {"method": "b", "window": 2, "p": 0.03, "direction": 1},
        {"method": "b", "window": 3, "p": 0.005, "direction": -1},
    ]
    # sorted p: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> raised to 0.06
    got = analysis.adjust(tests)
    assert [t["p_holm"] for t in got] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [t["verdict"] for t in got] == ["worse", "n.s.", "n.s.", "worse"]


def test_families_and_marks(tmp_path):
    rng = np.random.default_rng(2)
    records = []
    for s in (0, 1):
        ref = _values(range(40), (1, 2, 3), rng)
        worse = [(w, u, c, n - 0.3 - 0.01 * u, r - 0.2 - 0.01 * u) for w, u, c, n, r in ref]
        records += [_record(tmp_path, "full_retrain", s, ref),
                    _record(tmp_path, "same", s, ref), _record(tmp_path, "worse", s, worse)]  # fmt: skip
    sig = analysis.significance(records)
    head, per_window = sig[sig["family"] == "headline"], sig[sig["family"] == "per-window"]
    assert len(head) == 4 and len(per_window) == 8  # 2 methods x 2 metrics (x 2 windows)
    for family in (head, per_window):  # each family is one Holm family across all its rows
        expected = stats.holm(dict(enumerate(family["p"])))
        assert family["p_holm"].tolist() == pytest.approx([expected[i] for i in range(len(family))])
    assert set(head.loc[head["method"] == "same", "verdict"]) == {"n.s."}
    assert (head.loc[head["method"] == "same", "p"] == 1.0).all()
    assert analysis.marks(sig) == {("worse", "ndcg@10"): "▼", ("worse", "recall@10"): "▼"}


def test_marks_come_from_the_headline_only():
    sig = pd.DataFrame({
        "family": ["headline", "headline", "per-window", "per-window"],
        "method": ["a", "b", "a", "b"], "metric": ["ndcg@10"] * 4,
        "verdict": ["better", "n.s.", "worse", "worse"],
    })  # fmt: skip
    assert analysis.marks(sig) == {("a", "ndcg@10"): "▲"}
    assert analysis.marks(pd.DataFrame()) == {}


def test_cold_users_and_window_one_are_not_tested(tmp_path):
    rng = np.random.default_rng(3)
    ref, method = [], []
    for w in (1, 2, 3):
        for u in range(60):
            cold = (u >= 40 and w == 2) or (u >= 50 and w == 3)  # 40..49 warm again in window 3
            n, r = rng.random(), rng.random()
            ref.append((w, u, cold, n, r))
            spoilt = w == 1 or cold  # the method differs only where nothing is tested
            method.append((w, u, cold, 0.0 if spoilt else n, 0.0 if spoilt else r))
    records = [_record(tmp_path, "full_retrain", 0, ref), _record(tmp_path, "x", 0, method)]
    all_rows = (
        pd.DataFrame(method, columns=COLS)["ndcg@10"] - pd.DataFrame(ref, columns=COLS)["ndcg@10"]
    )
    assert sps.wilcoxon(all_rows).pvalue < 1e-6  # pooling everything would find a difference
    sig = analysis.significance(records)
    assert 1 not in set(sig["window"].dropna())
    assert (sig["p"] == 1.0).all() and (sig["mean_diff"] == 0).all()
    assert (sig["verdict"] == "n.s.").all() and analysis.marks(sig) == {}
    n = sig.set_index(["family", "windows"])["n_users"]
    assert (n.loc[("headline", "2-3")] == 50).all()  # users 0..49: warm in window 2 or 3
    assert (n.loc[("per-window", "2")] == 40).all() and (n.loc[("per-window", "3")] == 50).all()


def test_failed_run_only_in_the_windows_it_reached(tmp_path):
    rng = np.random.default_rng(4)
    ref = _values(range(20), (1, 2, 3), rng)
    failed = [row for row in ref if row[0] <= 2]  # failed while updating for window 3
    records = [_record(tmp_path, "full_retrain", 0, ref),
               _record(tmp_path, "boom", 0, failed, status="failed")]  # fmt: skip
    sig = analysis.significance(records)
    assert set(sig["family"]) == {"per-window"} and sig["window"].tolist() == [2, 2]


def test_one_seed_spread_not_available(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    records = [_record(tmp_path, m, 0, _values(range(15), (1, 2), rng))
               for m in ("full_retrain", "x")]  # fmt: skip
    sig = analysis.significance(records)
    assert (sig["seeds"] == 1).all()
    assert sig["seed_std_method"].isna().all() and sig["seed_std_diff"].isna().all()
    monkeypatch.setattr(report, "caption", lambda *args: "caption")
    out = tmp_path / "tables"
    paths = report.significance_table(out, "s", sig, None, None, None, None, records, ["prov"])
    md = paths[0].read_text()
    line = next(x for x in md.splitlines() if x.startswith("| x ") and "headline" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[-2:] == ["n/a", "n/a"]
    csv = pd.read_csv(paths[2])
    assert math.isnan(csv.loc[0, "seed_std_method"]) and math.isnan(csv.loc[0, "seed_std_diff"])


def test_a_difference_that_flips_with_the_seed_gets_no_mark():
    from incbench import analysis

    base = {"family": "headline", "method": "m", "metric": "ndcg@10", "p": 0.001}
    tests = [
        {**base, "direction": 1, "mean_diff": 0.02, "seed_consistent": True},
        {**base, "direction": 1, "mean_diff": 0.02, "seed_consistent": False},  # seeds disagree
        {**base, "direction": 1, "mean_diff": -0.01, "seed_consistent": True},  # mean vs ranks
    ]
    verdicts = [t["verdict"] for t in analysis.adjust(tests)]
    assert verdicts == ["better", "n.s. (seed-dependent)", "n.s. (seed-dependent)"]


def test_a_single_seed_never_carries_a_mark():
    from incbench import analysis

    t = {"family": "headline", "method": "m", "metric": "ndcg@10", "p": 1e-6, "direction": 1,
         "mean_diff": 0.05, "seed_consistent": True}  # fmt: skip
    assert analysis.adjust([{**t, "seeds": 1}])[0]["verdict"] == "n.s. (one seed)"
    assert analysis.adjust([{**t, "seeds": 3}])[0]["verdict"] == "better"
