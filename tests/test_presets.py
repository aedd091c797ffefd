"""Protocol presets: the LSAT data setup (min_history, fixed-count periods, time-ordered
validation part, label rating > 3), pinned rule by rule on small synthetic logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from incbench.config import CITATIONS, PRESETS, ConfigError, protocol_from
from incbench.data import Tables
from incbench.split import split, write_split
from incbench.synthetic import SyntheticParams, generate_tables


def small(**kw):
    """The LSAT rules at a small scale: history 3, base 40, 4 windows of 30, tail 0.1."""
    values = {**PRESETS["lsat"], "window_rows": 30, "base_rows": 40, "n_windows": 4,
              "min_history": 3, "min_window_rows": 1, **kw}  # fmt: skip
    return protocol_from({"protocol": values})


def log(n=400, users=9, seed=0):
    rng = np.random.default_rng(seed)
    return Tables(
        pd.DataFrame(
            {
                "user": rng.integers(0, users, n),
                "item": rng.integers(0, 50, n),
                "rating": rng.integers(1, 6, n).astype(np.float32),
                "timestamp": np.sort(rng.integers(0, 200, n)),  # many ties: cuts inside seconds
            }
        )
    )


def ordered(tables):
    rows = tables.interactions
    return rows.iloc[np.lexsort((rows["item"], rows["user"], rows["timestamp"]))]


def test_samples_start_at_each_users_fourth_interaction():
    tables = log()
    frames, *_, outside = split(tables, small(base_rows=0))
    kept = pd.concat(frames)
    rows = ordered(tables)
    rank = rows.groupby("user").cumcount()
    samples = rows[rank >= 3]
    assert outside["history_rows"] == int((rank < 3).sum()) == 9 * 3
    # base_rows 0: every sample is in some period, in the same (time, user, item) order
    assert len(kept) == len(samples)
    assert kept[["user", "item", "timestamp"]].to_numpy().tolist() == (
        samples[["user", "item", "timestamp"]].to_numpy().tolist()
    )


def test_periods_are_the_last_samples_cut_by_exact_counts():
    tables = log()
    frames, _, _, entries, outside = split(tables, small())
    assert [len(f) for f in frames] == [40, 30, 30, 30, 30]
    n_samples = 400 - 9 * 3
    assert outside["earlier_samples"] == n_samples - 160
    rows = ordered(tables)
    last = rows[rows.groupby("user").cumcount() >= 3].iloc[-160:]
    kept = pd.concat(frames)
    assert kept[["user", "item", "timestamp"]].to_numpy().tolist() == (
        last[["user", "item", "timestamp"]].to_numpy().tolist()
    )
    for a, b in zip(frames, frames[1:]):
        assert a["timestamp"].max() <= b["timestamp"].min()  # time order (a second may straddle)
    assert [e["rows"] for e in entries] == [40, 30, 30, 30, 30]


def test_validation_part_is_each_periods_last_tenth_by_time():
    frames, _, _, entries, _ = split(log(), small())
    for frame, entry in zip(frames, entries):
        k = int(round(0.1 * len(frame)))
        assert (frame["part"].iloc[-k:] == "holdout").all()
        assert (frame["part"].iloc[:-k] == "train").all()
        assert entry["holdout_rows"] == k and entry["train_rows"] == len(frame) - k


def test_label_is_rating_above_three():
    frames, *_ = split(log(), small())
    kept = pd.concat(frames)
    assert (kept["positive"] == (kept["rating"] > 3)).all()
    assert protocol_from({"protocol": {"preset": "lsat"}}).positive_threshold == 3.5


def test_lsat_preset_is_twenty_periods_of_ten_thousand_with_time_ordered_parts(tmp_path):
    # a log large enough for the real preset: 2,000 users x 10 history rows + 200,000 samples
    tables = generate_tables(
        SyntheticParams(n_users=2000, n_items=500, n_interactions=240_000, new_user_fraction=0.0)
    )
    protocol = protocol_from({"protocol": {"preset": "lsat"}})
    manifest = write_split(tables, protocol, tmp_path / "w", {"name": "synthetic"})
    windows = manifest["windows"]
    assert len(windows) == 20 and manifest["n_windows"] == 19
    assert all(w["rows"] == 10_000 for w in windows)
    assert all(w["train_rows"] == 9_000 and w["holdout_rows"] == 1_000 for w in windows)
    assert manifest["history_rows"] == 2000 * 10
    assert manifest["earlier_samples"] == 240_000 - 20_000 - 200_000
    assert manifest["protocol"]["preset"] == "lsat"
    frame = pd.read_parquet(tmp_path / "w" / windows[7]["file"])
    train, hold = frame[frame["part"] == "train"], frame[frame["part"] == "holdout"]
    assert train["timestamp"].max() <= hold["timestamp"].min()


def test_preset_keys_cannot_be_overridden_and_unknown_presets_are_named():
    with pytest.raises(ConfigError, match="n_windows"):
        protocol_from({"protocol": {"preset": "lsat", "n_windows": 5}})
    with pytest.raises(ConfigError, match="known presets"):
        protocol_from({"protocol": {"preset": "lsta"}})
    # keys the preset leaves free stay free; a preset key restated at its value is fine
    p = protocol_from({"protocol": {"preset": "lsat", "n_negatives": 1, "n_windows": 19}})
    assert p.n_negatives == 1 and p.window_rows == 10_000
    assert "2312.15599" in CITATIONS["lsat"]


def test_fixed_windows_on_too_small_a_log_name_the_fix():
    with pytest.raises(ConfigError, match="window_rows"):
        split(log(n=100), small())
    with pytest.raises(ConfigError, match="window_mode fixed"):
        protocol_from({"protocol": {"window_rows": 10}})
