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


# LSAT's training rules as protocol options: early stopping on the validation part
# (selection: holdout) and an update kept only if it raises validation AUC (update_guard).


def _frame(users, items, positive, start=0):
    n = len(users)
    return pd.DataFrame({"user_idx": users, "item_idx": items, "positive": positive,
                         "timestamp": np.arange(start, start + n)})  # fmt: skip


def test_selection_on_a_validation_frame_keeps_the_best_epochs_weights():
    import torch
    from torch import nn

    from incbench import train
    from incbench.backbones import mf

    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 40, 2
    # training rows: random pairs (nothing to learn but noise); validation rows: other pairs
    rows = _frame(rng.integers(0, n_users, 600), rng.integers(0, n_items, 600), True)
    val = _frame(rng.integers(0, n_users, 200), rng.integers(0, n_items, 200), True, 600)
    model = mf.build(mf.Params(dim=16, l2=0.0), n_users, n_items, seed=0)
    result = train.fit(model, rows, n_items=n_items, n_negatives=k, lr=0.05, epochs=30,
                       batch_size=64, seed=3, patience=2, val_fraction=0.1,
                       validation=train.Validation(val, rows))  # fmt: skip
    steps_per_epoch = -(-len(rows) * (1 + k) // 64)
    # it overfits the noise: stopped early, and after more epochs than the kept ones
    assert result.stopped == "early_stop"
    assert result.steps > result.epochs * steps_per_epoch
    # the kept weights are the best epoch's: their validation BCE (the same seeded negatives
    # fit drew: the first draw of its generator) is the recorded best value
    draw = np.random.default_rng(3).integers(0, n_items, size=len(val) * k)
    users = torch.from_numpy(np.concatenate([val["user_idx"], np.repeat(val["user_idx"], k)]))
    items = torch.from_numpy(np.concatenate([val["item_idx"], draw]))
    labels = torch.cat([torch.ones(len(val)), torch.zeros(len(val) * k)])
    model.train()
    with torch.no_grad():
        bce = float(
            nn.functional.binary_cross_entropy_with_logits(model.score(users, items), labels)
        )
    assert bce == pytest.approx(result.val_loss, abs=1e-6)


def test_selection_with_too_small_a_validation_frame_runs_every_epoch_and_says_so():
    from incbench import train
    from incbench.backbones import mf

    rows = _frame(np.arange(100) % 10, np.arange(100) % 7, True)
    model = mf.build(mf.Params(dim=4), 10, 7, seed=0)
    small = train.Validation(rows.iloc[:10], rows)
    result = train.fit(model, rows, n_items=7, n_negatives=1, lr=0.01, epochs=3, batch_size=50,
                       seed=0, patience=2, val_fraction=0.5, validation=small)  # fmt: skip
    assert result.epochs == 3 and result.stopped == "no_validation"
    # patience 0 (or val_fraction 0) turns early stopping off under either rule
    enough = train.Validation(rows, rows)
    result = train.fit(model, rows, n_items=7, n_negatives=1, lr=0.01, epochs=3, batch_size=50,
                       seed=0, patience=0, val_fraction=0.5, validation=enough)  # fmt: skip
    assert result.epochs == 3 and result.stopped == "max_epochs"


def _guarded(root, name, **protocol):
    import dataclasses

    from tests.conftest import small_setup

    setup, m0 = small_setup(root, name)
    rules = dataclasses.replace(setup.protocol, update_guard="holdout_auc", **protocol)
    return dataclasses.replace(setup, protocol=rules), m0


def test_update_guard_keeps_the_previous_model_unless_validation_auc_rises(
    small_project, monkeypatch
):
    import copy
    import dataclasses
    import types

    import torch

    from incbench import train
    from incbench.protocol import holdout_auc, run_protocol

    monkeypatch.setattr(train, "MIN_VALIDATION_ROWS", 10)  # the small holdouts: 50 rows each
    setup, m0 = _guarded(small_project, "fine_tune", selection="holdout")
    result = run_protocol(setup, m0)
    table = result.windows
    assert result.summary["status"] == "ok" and len(table) == setup.windows.n_windows
    assert set(table["fit_stopped"]) <= {"early_stop", "max_epochs"}  # selection ran
    assert (table["guard_undefined"] == 0).all()
    kept = table["guard_kept_previous"] == 1
    assert kept.any() and (~kept).any()  # both outcomes, on these seeds
    assert (table.loc[kept, "changed_params"] == 0).all()
    assert (table.loc[~kept, "guard_auc_update"] > table.loc[~kept, "guard_auc_previous"]).all()
    assert (table.loc[kept, "guard_auc_update"] <= table.loc[kept, "guard_auc_previous"]).all()

    def reverse(ctx, params):  # a new model whose every score is M_(t-1)'s negated
        with torch.no_grad():  # mf: logit = head(p * q) + b_u + b_i
            for name, ps in ctx.model.groups():
                for p in ps if name in ("biases", "head") else ():
                    p.neg_()
        return ctx.model

    def same(ctx, params):  # a copy that scores exactly as M_(t-1): a tie is never accepted
        return copy.deepcopy(ctx.model)

    for update in (reverse, same):
        spec = dataclasses.replace(setup.spec, module=types.SimpleNamespace(update=update))
        result = run_protocol(dataclasses.replace(setup, spec=spec), m0)
        table = result.windows
        if update is reverse:  # AUC 1 - a: accepted exactly where the previous was below 0.5
            assert np.allclose(table["guard_auc_update"], 1 - table["guard_auc_previous"])
            assert (
                (table["guard_auc_previous"] < 0.5) == (table["guard_kept_previous"] == 0)
            ).all()
        else:
            assert (table["guard_kept_previous"] == 1).all()
        kept = table["guard_kept_previous"] == 1
        assert (table.loc[kept, "changed_params"] == 0).all()
    m0.grow(*setup.known(1))
    assert holdout_auc(m0, setup.windows, 1, "cpu") == table["guard_auc_previous"][0]


def test_the_lsat_preset_sets_its_training_rules_and_default_protocols_do_not():
    lsat = protocol_from({"protocol": {"preset": "lsat"}})
    assert (lsat.selection, lsat.update_guard) == ("holdout", "holdout_auc")
    plain = protocol_from({"protocol": {}})
    assert (plain.selection, plain.update_guard) == ("tail", "none")
    with pytest.raises(ConfigError, match="holdout_fraction > 0"):
        protocol_from({"protocol": {"holdout_fraction": 0.0, "update_guard": "holdout_auc"}})


def test_update_guard_restores_the_methods_state_and_cannot_judge_one_label(small_project):
    import dataclasses
    import types

    from incbench.protocol import run_protocol

    setup, m0 = _guarded(small_project, "fine_tune")
    seen = []

    def counting(ctx, params):  # changes nothing (a tie: never accepted), counts in its state
        seen.append(ctx.state.get("updates", 0))
        ctx.state["updates"] = ctx.state.get("updates", 0) + 1
        return ctx.model

    spec = dataclasses.replace(setup.spec, module=types.SimpleNamespace(update=counting))
    result = run_protocol(dataclasses.replace(setup, spec=spec), m0)
    assert (result.windows["guard_kept_previous"] == 1).all()
    assert seen == [0, 0, 0]  # each discarded update's state was discarded with it

    # every holdout row liked: AUC undefined, the guard cannot judge and keeps the update
    periods = [p.assign(positive=True) for p in setup.windows.periods]
    one_label = dataclasses.replace(setup.windows, periods=periods)
    seen.clear()
    result = run_protocol(dataclasses.replace(setup, spec=spec, windows=one_label), m0)
    table = result.windows
    assert (table["guard_undefined"] == 1).all() and (table["guard_kept_previous"] == 0).all()
    assert seen == [0, 1, 2]


def test_user_auc_by_hand_and_in_the_significance_tests(tmp_path):
    from incbench import analysis, report
    from incbench.metrics import gauc, roc_auc, user_auc

    labels = np.array([1, 0, 1, 1, 0, 1, 1], dtype=bool)
    scores = np.array([0.9, 0.1, 0.05, 0.8, 0.3, 0.5, 0.6])
    users = np.array([5, 5, 5, 7, 7, 9, 9])  # user 9: one label only, no AUC
    out = user_auc(labels, scores, users)
    assert out["user_idx"].tolist() == [5, 7]
    assert out["user_auc"].tolist() == [0.5, 1.0]  # user 5: 0.9 > 0.1, but 0.05 < 0.1
    assert out["rows"].tolist() == [3, 2]
    assert gauc(labels, scores, users) == pytest.approx((0.5 * 3 + 1.0 * 2) / 5)
    assert roc_auc(labels[:3], scores[:3]) == 0.5
    # the tested population: users with an AUC; a preset whose headline is AUC adds the test
    rng = np.random.default_rng(0)
    records = []
    for method in ("full_retrain", "x"):
        for seed in (0, 1):
            rows = [(w, u, False, rng.random(), rng.random(), np.nan if u % 3 == 0 else rng.random())
                    for w in (2, 3) for u in range(30)]  # fmt: skip
            frame = pd.DataFrame(rows, columns=["window", "user_idx", "cold_user", "ndcg@10",
                                                "recall@10", "user_auc"])  # fmt: skip
            records.append({"method": method, "seed": seed, "status": "ok", "per_user": frame})
    lsat = protocol_from({"protocol": {"preset": "lsat"}})
    plain = protocol_from({"protocol": {}})
    assert report.tested(plain) == ("ndcg@10", "recall@10")
    sig = analysis.significance(records, report.tested(lsat))
    head = sig[sig["family"] == "headline"].set_index("metric")
    assert set(head.index) == {"ndcg@10", "recall@10", "user_auc"}
    assert head.loc["user_auc", "n_users"] == 20 and head.loc["ndcg@10", "n_users"] == 30
    assert [c[0] for c in report.quality_columns(lsat)][:3] == [
        "auc", "warm_user:user_auc", "warm_user:ndcg@10"]  # fmt: skip
    assert report.quality_columns(plain) == report.QUALITY


def test_text_is_validated_with_the_profiles_it_will_be_served_with(small_project):
    from tests.conftest import small_setup

    setup, m0 = small_setup(small_project, "frozen", backbone="text")
    m0.grow(*setup.known(1))  # as the loop does before window 1
    window = setup.windows.periods[1]
    window = window[window["part"] == "train"]
    before = m0.profile.clone(), m0.profile_ts.clone()
    with m0.served_after(window):
        inside = m0.profile.clone()
    assert not np.array_equal(inside.numpy(), before[0].numpy())  # window 1's rows were added
    assert np.array_equal(m0.profile.numpy(), before[0].numpy())  # and are gone again
    assert np.array_equal(m0.profile_ts.numpy(), before[1].numpy())
    m0.observe(window)
    assert np.array_equal(m0.profile.numpy(), inside.numpy())  # what serving will see


def test_text_runs_under_the_lsat_training_rules(small_project, monkeypatch):
    import dataclasses

    from incbench import train
    from incbench.protocol import run_protocol
    from tests.conftest import small_setup

    monkeypatch.setattr(train, "MIN_VALIDATION_ROWS", 10)
    setup, m0 = small_setup(small_project, "fine_tune", backbone="text")
    rules = dataclasses.replace(setup.protocol, selection="holdout", update_guard="holdout_auc")
    result = run_protocol(dataclasses.replace(setup, protocol=rules), m0)
    table = result.windows
    assert result.summary["status"] == "ok"
    assert table["guard_auc_previous"].notna().all() and table["guard_auc_update"].notna().all()
    assert set(table["fit_stopped"]) <= {"early_stop", "max_epochs", "max_steps"}
