"""Windows: tie rule, order, disjointness, holdout, first-appearance indices, validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from incbench.config import ConfigError, Protocol, from_mapping, protocol_from
from incbench.data import Tables
from incbench.split import cut_points, holdout_mask, split
from incbench.synthetic import SyntheticParams, generate_tables


def table(ts, users=None, items=None, ratings=None):
    n = len(ts)
    return Tables(
        pd.DataFrame(
            {
                "user": users if users is not None else np.arange(n) % 7,
                "item": items if items is not None else np.arange(n) % 11,
                "rating": ratings if ratings is not None else np.full(n, 4.0, dtype=np.float32),
                "timestamp": np.asarray(ts, dtype=np.int64),
            }
        )
    )


def proto(**kw):
    return Protocol(**{"min_window_rows": 1, **kw})


def test_cuts_never_split_a_timestamp():
    # 10 rows at second 5: a naive 50% cut at row 10 would straddle them.
    ts = np.array([1] * 6 + [5] * 10 + [9] * 4 + [12] * 6)
    frames, *_ = split(table(ts), proto(n_windows=2, holdout_fraction=0.0))
    seen = [set(f["timestamp"]) for f in frames]
    for a in range(len(seen)):
        for b in range(a + 1, len(seen)):
            assert not seen[a] & seen[b], "a timestamp appears in two windows"
    assert sum(len(f) for f in frames) == len(ts)


def test_nearest_boundary_is_chosen():
    ts = np.repeat(np.arange(10), 10)  # 100 rows, boundaries every 10
    cuts = cut_points(ts, proto(base_fraction=0.47, n_windows=2))
    # base: 47 -> nearest boundary 50; window 1 ends at 50 + 25 = 75, equidistant from the
    # boundaries 70 and 80: ties go to the lower cut.
    assert cuts.tolist() == [0, 50, 70, 100]
    assert cut_points(ts, proto(base_fraction=0.44, n_windows=1)).tolist() == [0, 40, 100]


def test_windows_are_time_ordered_and_disjoint_on_synthetic():
    tables = generate_tables(SyntheticParams(n_interactions=5000))
    frames, _, _, entries, _ = split(tables, proto(n_windows=5))
    for a, b in zip(frames, frames[1:]):
        assert a["timestamp"].max() < b["timestamp"].min()
    assert sum(e["rows"] for e in entries) == 5000
    for f in frames:  # sorted by (timestamp, user, item) inside each window
        key = f[["timestamp", "user", "item"]].to_numpy()
        assert (np.lexsort(key.T[::-1]) == np.arange(len(f))).all()


def test_equal_duration_mode():
    ts = np.concatenate([np.arange(0, 100), np.arange(100, 200, 10)])  # dense then sparse
    frames, *_ = split(table(ts), proto(base_fraction=0.5, n_windows=2, window_mode="duration"))
    spans = [(f.timestamp.min(), f.timestamp.max()) for f in frames[1:]]
    assert len(frames) == 3
    assert spans[0][0] >= 55 and spans[1][1] == 190


def test_first_appearance_indices_and_new_counts():
    tables = generate_tables(SyntheticParams(n_interactions=4000, new_user_fraction=0.5))
    frames, items, users, entries, _ = split(tables, proto(n_windows=3))
    known = 0
    for f, e in zip(frames, entries):
        assert f["user_idx"].max() < e["n_users_known"]
        assert e["new_users"] == e["n_users_known"] - known
        new = f.loc[f["user_idx"] >= known, "user_idx"].nunique()
        assert new == e["new_users"]
        known = e["n_users_known"]
    assert entries[-1]["new_users"] > 0, "drift knob: users keep arriving"
    assert (items["item_idx"].to_numpy() == np.arange(len(items))).all()
    assert items["title"].notna().all()


def test_holdout_fixed_by_protocol_seed_only():
    tables = generate_tables(SyntheticParams(n_interactions=3000))
    a, *_ = split(tables, proto(n_windows=3, seed=0))
    b, *_ = split(tables, proto(n_windows=3, seed=0))
    c, *_ = split(tables, proto(n_windows=3, seed=1))
    parts = lambda fs: [f["part"].to_numpy() for f in fs]  # noqa: E731
    assert all((x == y).all() for x, y in zip(parts(a), parts(b)))
    assert any((x != y).any() for x, y in zip(parts(a), parts(c)))
    for f in a:
        assert (f["part"] == "holdout").sum() == round(0.1 * len(f))


def test_holdout_mask_exact_size():
    mask = holdout_mask(1001, 0.1, seed=3, window=2)
    assert mask.sum() == 100
    assert (mask == holdout_mask(1001, 0.1, seed=3, window=2)).all()


def test_positive_label_threshold_and_missing_ratings():
    ratings = np.array([1, 3.5, 4, 5, np.nan, 2] * 5, dtype=np.float32)
    frames, *_ = split(table(np.arange(30), ratings=ratings), proto(n_windows=2))
    df = pd.concat(frames)
    expect = np.where(np.isnan(df.rating), True, df.rating >= 4)
    assert (df.positive.to_numpy() == expect).all()


def test_synthetic_is_deterministic():
    a = generate_tables(SyntheticParams(n_interactions=2000, seed=5))
    b = generate_tables(SyntheticParams(n_interactions=2000, seed=5))
    c = generate_tables(SyntheticParams(n_interactions=2000, seed=6))
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    assert not a.interactions.equals(c.interactions)


def test_synthetic_drift_knobs_matter():
    still = generate_tables(SyntheticParams(n_interactions=6000, popularity_drift=0.0,
                                            preference_shift=0.0, new_item_fraction=0.0))  # fmt: skip
    moving = generate_tables(SyntheticParams(n_interactions=6000, popularity_drift=1.0,
                                             preference_shift=1.0, new_item_fraction=0.5))  # fmt: skip

    def overlap(t):  # share of top-20 items in the first phase still top-20 in the last
        df = t.interactions
        first = df.item[df.timestamp < df.timestamp.quantile(0.2)].value_counts().index[:20]
        last = df.item[df.timestamp > df.timestamp.quantile(0.8)].value_counts().index[:20]
        return len(set(first) & set(last)) / 20

    assert overlap(still) > overlap(moving) + 0.3


@pytest.mark.parametrize(
    "values,message",
    [
        ({"n_windows": 0}, "n_windows must be at least 1"),
        ({"base_fraction": 1.5}, "base_fraction must be in"),
        ({"holdout_fraction": -0.1}, "holdout_fraction"),
        ({"n_window": 3}, r"unknown key\(s\) \['n_window'\]"),
        ({"n_windows": "5"}, "protocol.n_windows must be an integer"),
        ({"window_mode": "weekly"}, "must be one of"),
    ],
)
def test_protocol_validation(values, message):
    with pytest.raises(ConfigError, match=message):
        protocol_from({"protocol": values})


def test_too_small_dataset():
    with pytest.raises(ConfigError, match="dataset too small"):
        cut_points(np.array([1, 1, 2, 2]), proto(n_windows=5))
    with pytest.raises(ConfigError, match="min_window_rows"):
        cut_points(np.arange(30), Protocol(n_windows=5, min_window_rows=10))


def test_from_mapping_fills_defaults():
    p = from_mapping(Protocol, {"n_windows": 3}, "protocol")
    assert p.n_windows == 3 and p.base_fraction == 0.5


def test_cli_fetch_split_synthetic(project):
    from incbench.cli import main

    assert main(["split", "synthetic"]) == 2  # not fetched yet: clear error, nothing written
    assert not (project / "data/windows").exists()
    assert main(["fetch", "synthetic"]) == 0
    assert main(["split", "synthetic"]) == 0
    manifest = json.loads((project / "data/windows/synthetic/manifest.json").read_text())
    assert manifest["rows"] == 20_000
    assert set(manifest["sha256"]) >= {"window-0.parquet", "manifest.json"} - {"manifest.json"}


def test_cli_unknown_dataset_suggests(project, capsys):
    from incbench.cli import main

    assert main(["fetch", "ml-100"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'ml-100'" in err and "Did you mean" in err
