"""Tuning: past data only, reproducible studies, resumable journals, fixed params never sampled,
a seed-averaged objective, and defaults kept unless a tuned setting beats the seed spread."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from incbench import paths, tuning
from incbench.config import ConfigError, load_params, protocol_from
from incbench.split import load_windows
from incbench.stages import run


def _project(small_project, tmp_path, name="p", methods=None, **cfg):
    root = tmp_path / name
    shutil.copytree(small_project, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tuning"] = {"trials": 3, "base_fraction": 0.5, "n_windows": 2, "seeds": [0, 1], **cfg}
    params["methods"].update(methods or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _best(out):
    return json.loads((out / "best.json").read_text())


@pytest.fixture
def fake(monkeypatch):
    """A fast, deterministic objective: `values(mparams, is_default) -> {seed: inner value}`.

    Replaces the inner protocol (and the inner M0) so a study takes milliseconds; every call's
    (params, seed) is recorded. Window 1 gets a value that would dominate if it were counted.
    """
    import incbench.protocol as protocol

    state = {"calls": [], "values": None, "defaults": None, "interrupt_at": None}

    def run_protocol(setup, m0):
        state["calls"].append((setup.mparams, setup.seed))
        if len(state["calls"]) == state["interrupt_at"]:
            raise KeyboardInterrupt
        is_default = setup.mparams == state["defaults"]
        values = state["values"](setup.mparams, is_default)
        value = values.get(setup.seed, values[setup.seed % 2])  # confirmation seeds 2, 3 -> 0, 1
        table = pd.DataFrame({"window": [1, 2], "status": ["ok", "ok"],
                              "warm_user:ndcg@10": [0.99, value]})  # fmt: skip
        return SimpleNamespace(summary={"status": "ok", "reason": ""}, windows=table)

    monkeypatch.setattr(protocol, "run_protocol", run_protocol)
    monkeypatch.setattr(protocol, "pretrain_model", lambda *a, **k: (None, None))
    return state


def test_tuning_data_never_touches_windows_1_to_n(small_project, tmp_path):
    root = _project(small_project, tmp_path)
    windows = load_windows(root / "data/windows/synthetic")
    inner, inner_protocol = tuning.inner_windows(windows, protocol_from(load_params(root)),
                                                 tuning.tuning_from(load_params(root)))  # fmt: skip
    rows = pd.concat(inner.periods)
    base = windows.periods[0]
    key = ["user", "item", "timestamp"]
    allowed = base.loc[base["part"] == "train", key]
    assert len(rows.merge(allowed, on=key)) == len(rows), (
        "a tuning row is not a base-period train row"
    )
    later = pd.concat(windows.periods[1:])
    assert rows["timestamp"].max() < later["timestamp"].min()
    assert rows.merge(later[key], on=key).empty
    held_out = base.loc[base["part"] == "holdout", key]
    assert rows.merge(held_out, on=key).empty, "the base period's holdout leaked into tuning"
    assert inner.n_windows == 2 and inner_protocol.n_windows == 2


def test_same_seed_same_study_and_per_seed_values(small_project, tmp_path):
    a = tuning.tune("synthetic", "mf", "fine_tune", _project(small_project, tmp_path, "a"))
    b = tuning.tune("synthetic", "mf", "fine_tune", _project(small_project, tmp_path, "b"))
    best_a, best_b = _best(a), _best(b)
    assert best_a == best_b and best_a["trials"] == 3
    assert best_a["adopted"] in ("tuned", "defaults") and best_a["seeds"] == [0, 1]
    assert best_a["tuned"] == (best_a["adopted"] == "tuned")
    assert math.isfinite(best_a["margin"]) and best_a["spread"] >= 0
    trials = pd.read_csv(a / "trials.csv")
    assert trials.loc[0, "lr"] == 0.003 and trials.loc[0, "epochs"] == 3  # defaults go first
    assert list(trials["defaults"]) == [True, False, False]
    assert (
        trials["value"] - trials[["value_seed0", "value_seed1"]].mean(axis=1)
    ).abs().max() < 1e-9  # the csv keeps 10 digits
    assert best_a["defaults_per_seed"] == pytest.approx(
        list(trials.loc[0, ["value_seed0", "value_seed1"]]), rel=1e-9
    )
    pd.testing.assert_frame_equal(trials, pd.read_csv(b / "trials.csv"))


def test_shared_inner_m0s_give_the_same_study(small_project, tmp_path):
    """Stage pretrain_inner's stored inner M0s (loaded by every study) give the study that
    training them in the study gives; a stored model whose key does not match is not used."""
    inline = tuning.tune("synthetic", "mf", "fine_tune", _project(small_project, tmp_path, "a"))
    root = _project(small_project, tmp_path, "b")
    shared = tuning.pretrain_inner("synthetic", "mf", root)
    assert sorted(f.name for f in shared.iterdir()) == [
        "seed-0",
        "seed-0.json",
        "seed-1",
        "seed-1.json",
    ]
    stored = tuning.tune("synthetic", "mf", "fine_tune", root)
    pd.testing.assert_frame_equal(pd.read_csv(inline / "trials.csv"),
                                  pd.read_csv(stored / "trials.csv"))  # fmt: skip
    meta = shared / "seed-0.json"
    meta.write_text(meta.read_text().replace('"key": "', '"key": "stale'))
    assert tuning._stored_inner_m0(shared / "seed-0", "anything", "cpu") is None


def test_pretrain_inner_trains_nothing_when_tuning_is_off(small_project, tmp_path):
    root = _project(small_project, tmp_path, "c")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tuning"]["trials"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = tuning.pretrain_inner("synthetic", "mf", root)
    assert [f.name for f in out.iterdir()] == ["SKIPPED.json"]


def test_interrupted_study_resumes(small_project, tmp_path, monkeypatch):
    import incbench.protocol as protocol

    root = _project(small_project, tmp_path, trials=4)
    real, calls = protocol.run_protocol, {"n": 0}

    def flaky(setup, m0):
        calls["n"] += 1
        if calls["n"] == 5:  # two seeds per trial: trial 2, seed 0
            raise KeyboardInterrupt  # the machine went away in the middle of trial 2
        return real(setup, m0)

    monkeypatch.setattr(protocol, "run_protocol", flaky)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("synthetic", "mf", "fine_tune", root)
    out = paths.tuning_dir(root, "synthetic", "mf", "fine_tune")
    assert not (out / "best.json").exists()
    assert len(list(out.glob("study-*.journal"))) == 1
    monkeypatch.setattr(protocol, "run_protocol", real)
    tuning.tune("synthetic", "mf", "fine_tune", root)
    trials = pd.read_csv(out / "trials.csv")
    complete = trials[trials["state"] == "COMPLETE"]
    assert len(complete) == 4 and calls["n"] == 5  # 2 kept from before + 2 more, none redone
    assert list(trials.loc[trials["state"] == "FAIL", "number"]) == [2]  # the interrupted one
    assert _best(out)["trials"] == 4


def test_trials_zero_and_nothing_to_tune(small_project, tmp_path):
    root = _project(small_project, tmp_path, trials=0)
    record = _best(tuning.tune("synthetic", "mf", "fine_tune", root))
    assert not record["tuned"] and record["reason"].startswith("no trials in the budget")
    root = _project(small_project, tmp_path, "frozen")
    record = _best(tuning.tune("synthetic", "mf", "frozen", root))
    assert not record["tuned"] and "no search_space" in record["reason"]


def test_config_checks():
    assert [tuning.TuningConfig(trials=n).n_startup_trials for n in (1, 2, 3, 9, 10, 30)] == [
        1, 1, 1, 3, 3, 10,
    ]  # fmt: skip
    assert tuning.TuningConfig().seeds == (0, 1)
    for bad in ({"seeds": [0]}, {"seeds": [1, 1]}, {"n_windows": 1}):
        with pytest.raises(ConfigError):
            tuning.tuning_from({"tuning": bad})


def test_objective_skips_the_first_inner_window():
    table = pd.DataFrame({"window": [1, 2, 3], "status": ["ok", "ok", "ok"],
                          "warm_user:ndcg@10": [0.9, 0.2, 0.4]})  # fmt: skip
    assert tuning.inner_value(table) == pytest.approx(0.3)
    assert tuning.inner_value(table.iloc[:1]) is None  # nothing after the first window


def test_adoption_rule():
    # a clear gain on both seeds: adopted
    rule = tuning.adoption([0.300, 0.302], [0.320, 0.323])
    assert rule["adopt"] and rule["margin"] == pytest.approx(0.0205)
    assert rule["spread"] == pytest.approx(2 * statistics.stdev([0.020, 0.021]) / math.sqrt(2))
    # +0.005 on average, but the paired gain flips sign between seeds: within 2 x SE
    rule = tuning.adoption([0.300, 0.301], [0.312, 0.299])
    assert not rule["adopt"] and rule["margin"] == pytest.approx(0.005)
    assert rule["spread"] == pytest.approx(2 * statistics.stdev([0.012, -0.002]) / math.sqrt(2))
    # the settings differ a lot between seeds (each seed has its own inner M0), the gain does
    # not: pairing cancels the M0 and the gain counts
    assert tuning.adoption([0.30, 0.24], [0.31, 0.25])["adopt"]
    # a challenger whose own gain happens to agree across seeds is floored by the median sd
    # over every tuned trial
    others = [[0.305, 0.305], [0.32, 0.28], [0.28, 0.32]]
    rule = tuning.adoption([0.30, 0.30], [0.305, 0.305], others)
    assert not rule["adopt"] and rule["sd_gain"] == pytest.approx(0, abs=1e-12)
    assert rule["sd_gain_median"] == pytest.approx(math.sqrt(8e-4))  # median of 0, 8e-4, 8e-4
    assert rule["spread"] == pytest.approx(2 * rule["sd_gain_median"] / math.sqrt(2))
    # worse than the defaults: never adopted
    assert not tuning.adoption([0.30, 0.30], [0.29, 0.29])["adopt"]
    with pytest.raises(ValueError):
        tuning.adoption([0.3], [0.4])


def test_setting_within_seed_noise_is_not_adopted(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=6)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    # every tuned setting: +0.008 on seed 0, -0.002 on seed 1 (+0.001 more with a larger lr):
    # a mean gain of 0.003-0.004, an sd of the gain of 0.0071, so a spread of 0.01
    fake["values"] = lambda p, is_default: (
        {0: 0.300, 1: 0.310} if is_default
        else {0: 0.308 + 0.001 * (p.lr > 0.003), 1: 0.308 + 0.001 * (p.lr > 0.003)}
    )  # fmt: skip
    out = tuning.tune("synthetic", "mf", "fine_tune", root)
    record = _best(out)
    assert record["trials"] == 6 and record["adopted"] == "defaults" and not record["tuned"]
    assert (
        record["challenger_value"] > record["defaults_value"]
    )  # the study did find a "better" one
    assert 0 < record["margin"] <= record["spread"] == pytest.approx(0.01)
    assert record["params"] == {"lr": 0.003, "epochs": 3}  # what the runs use: the defaults
    assert record["adopted_value"] == record["defaults_value"] == pytest.approx(0.305)
    assert record["reason"].startswith("within seed noise")
    assert paths.tuned_params(root, "synthetic", "mf", "fine_tune") is None
    assert len(fake["calls"]) == 12 and {s for _, s in fake["calls"]} == {0, 1}


def test_clear_win_is_adopted_and_runs_use_it(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=4)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: (
        {0: 0.300, 1: 0.302} if is_default else {0: 0.330 + p.lr, 1: 0.331 + p.lr}
    )
    out = tuning.tune("synthetic", "mf", "fine_tune", root)
    record = _best(out)
    assert record["adopted"] == "tuned" and record["tuned"]
    trials = pd.read_csv(out / "trials.csv")
    winner = trials.loc[trials["value"].idxmax()]
    assert record["challenger_trial"] == record["best_trial"] == winner["number"] != 0
    assert record["params"] == {"lr": pytest.approx(winner["lr"]), "epochs": winner["epochs"]}
    assert record["params"] == record["challenger_params"]
    assert record["margin"] > record["spread"]
    tuned = paths.tuned_params(root, "synthetic", "mf", "fine_tune")
    assert tuned["params"] == record["params"] and tuned["trials"] == 4
    assert tuned["best_value"] == record["best_value"] == pytest.approx(winner["value"])


def test_a_win_that_fails_on_a_fresh_seed_is_not_adopted(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=4)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: (
        {0: 0.300, 1: 0.302, 2: 0.300, 3: 0.300} if is_default
        else {0: 0.330, 1: 0.331, 2: 0.310, 3: 0.290}  # seed 3 (fresh): worse than the defaults
    )  # fmt: skip
    record = _best(tuning.tune("synthetic", "mf", "fine_tune", root))
    assert record["margin"] > record["spread"]  # the bar alone would have adopted it
    assert record["adopted"] == "defaults" and record["reason"].startswith("not confirmed")
    assert record["confirm_gains"] == [pytest.approx(0.01), pytest.approx(-0.01)]
    assert paths.tuned_params(root, "synthetic", "mf", "fine_tune") is None


def test_runs_use_the_adopted_params_or_the_defaults(small_project, tmp_path, monkeypatch):
    root = _project(small_project, tmp_path, trials=2, methods={"fine_tune": {"epochs": 1}})
    out = paths.tuning_dir(root, "synthetic", "mf", "fine_tune")
    out.mkdir(parents=True)
    adopted = {"tuned": True, "adopted": "tuned", "params": {"lr": 0.01, "epochs": 2},
               "trials": 2, "best_value": 0.5}  # fmt: skip
    (out / "best.json").write_text(json.dumps(adopted))
    run_dir = run("synthetic", "mf", "fine_tune", 0, root)
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["method"]["params"] == {"lr": 0.01, "epochs": 1}  # fixed values win
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tuning"] == {"trials": 2, "best_value": 0.5}
    kept = {**adopted, "tuned": False, "adopted": "defaults", "params": {"lr": 0.003, "epochs": 1}}
    (out / "best.json").write_text(json.dumps(kept))
    run_dir = run("synthetic", "mf", "fine_tune", 0, root)
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["method"]["params"] == {"lr": 0.003, "epochs": 1}
    assert json.loads((run_dir / "summary.json").read_text())["tuning"] is None


def test_fixed_keys_are_never_sampled(small_project, tmp_path, fake):
    fixed = {"buffer_size": 5000, "replay_ratio": 1.0, "lr": 0.002}
    root = _project(small_project, tmp_path, trials=5, methods={"replay": fixed})
    fake["defaults"] = tuning_defaults(root, "replay")
    fake["values"] = lambda p, is_default: {0: 0.3 + 0.01 * p.epochs, 1: 0.31 + 0.01 * p.epochs}
    out = tuning.tune("synthetic", "mf", "replay", root)
    trials = pd.read_csv(out / "trials.csv")
    assert not set(fixed) & set(trials.columns)  # never sampled, never logged as sampled
    assert "epochs" in trials.columns and len(trials) == 5
    assert all(getattr(p, k) == v for p, _ in fake["calls"] for k, v in fixed.items())
    record = _best(out)
    assert all(record["params"][k] == v for k, v in fixed.items())
    assert set(record.get("challenger_params", {})) == {"epochs"}


# the small project's recipe (2 epochs) lies below the space's 5..60: optuna warns, and uses it
@pytest.mark.filterwarnings("ignore:Fixed parameter epochs")
def test_full_retrain_is_tunable_with_the_recipe_as_trial_0(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=4)
    bparams = load_params(root)["backbones"]["mf"]
    recipe = {"epochs": bparams["pretrain_epochs"], "lr": 0.01}  # the mf recipe's lr default
    fake["defaults"] = tuning_defaults(root, "full_retrain")  # Params(None, None)
    seen = []
    fake["values"] = lambda p, is_default: seen.append(p) or {0: 0.3, 1: 0.3}
    out = tuning.tune("synthetic", "mf", "full_retrain", root)
    trials = pd.read_csv(out / "trials.csv")
    assert trials.loc[0, ["epochs", "lr"]].to_dict() == recipe and trials.loc[0, "defaults"]
    assert dataclasses.asdict(seen[0]) == recipe  # trial 0 ran the recipe itself
    assert all(1e-3 <= p.lr <= 1e-1 and 5 <= p.epochs <= 60 for p in seen[2:])
    record = _best(out)
    assert record["trials"] == 4 and record["adopted"] == "defaults"  # ties: defaults kept
    assert record["params"] == {"epochs": None, "lr": None}  # "the backbone recipe", as before


def test_sampler_start_up_sized_to_budget(small_project, tmp_path, fake, monkeypatch):
    import optuna

    made = []
    real = optuna.samplers.TPESampler

    def sampler(**kwargs):
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(optuna.samplers, "TPESampler", sampler)
    root = _project(small_project, tmp_path, trials=9)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: {0: 0.3, 1: 0.31}
    record = _best(tuning.tune("synthetic", "mf", "fine_tune", root))
    assert made[0]["n_startup_trials"] == 3 == record["n_startup_trials"]
    assert made[0]["seed"] == record["sampler_seed"]


def tuning_defaults(root, method_name):
    from incbench import method

    fixed = load_params(root)["methods"].get(method_name) or {}
    return method.get(method_name, root).params(fixed)


def test_skipping_the_unevaluated_last_update_changes_no_value(small_project, tmp_path):
    from incbench import method
    from incbench.protocol import Setup, backbone_params, pretrain_model, run_protocol

    root = _project(small_project, tmp_path)
    params = load_params(root)
    cfg = tuning.tuning_from(params)
    inner, inner_protocol = tuning.inner_windows(
        load_windows(root / "data/windows/synthetic"), protocol_from(params), cfg
    )
    bmodule, bparams = backbone_params(params, "mf")
    m0, _ = pretrain_model(inner, bmodule, bparams, inner_protocol, 0)
    spec = method.get("full_retrain", root)
    lean = dataclasses.replace(spec, module=tuning.SkipLastUpdate(spec.module, inner.n_windows))
    tables = []
    for s in (spec, lean):
        setup = Setup(inner, s, s.params({}), inner_protocol, "mf", bmodule, bparams, 0, lean=True)
        tables.append(run_protocol(setup, m0).windows)
    full, skipped = tables
    assert tuning.inner_value(full) == tuning.inner_value(skipped)
    pd.testing.assert_series_equal(full["ndcg@10"], skipped["ndcg@10"])
    assert skipped.iloc[-1]["train_rows"] == full.iloc[-1]["train_rows"]  # same data offered
    assert skipped.iloc[-1]["update_wall_s"] < full.iloc[-1]["update_wall_s"]  # not trained


def test_interrupted_defaults_trial_is_queued_again_as_the_defaults(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=3)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: {0: 0.3, 1: 0.31}
    fake["interrupt_at"] = 2  # inside trial 0, seed 1
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("synthetic", "mf", "fine_tune", root)
    record = _best(tuning.tune("synthetic", "mf", "fine_tune", root))
    trials = pd.read_csv(paths.tuning_dir(root, "synthetic", "mf", "fine_tune") / "trials.csv")
    assert list(trials["state"]) == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert list(trials["defaults"]) == [True, True, False, False]
    assert trials.loc[1, ["lr", "epochs"]].to_dict() == {"lr": 0.003, "epochs": 3}
    assert record["defaults_trial"] == 1 and record["adopted"] == "defaults"


def test_a_budget_of_one_trial_runs_only_the_defaults(small_project, tmp_path, fake):
    root = _project(small_project, tmp_path, trials=1)
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: {0: 0.3, 1: 0.31}
    record = _best(tuning.tune("synthetic", "mf", "fine_tune", root))
    assert record["trials"] == 1 and record["n_startup_trials"] == 1
    assert not record["tuned"] and record["reason"] == "only the defaults completed"
    assert [p for p, _ in fake["calls"]] == [fake["defaults"]] * 2


def _shared_trials(url):
    import optuna

    (name,) = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name, storage=url).trials


def _other_workers_trial(url):
    """A trial another worker is running: RUNNING, one heartbeat recorded now."""
    import optuna

    storage = tuning.shared_storage(url)
    (name,) = optuna.get_all_study_names(url)
    trial = optuna.load_study(study_name=name, storage=storage).ask()
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.suggest_int("epochs", 1, 5)
    storage.record_heartbeat(trial._trial_id)
    return trial.params


def _shared_study(small_project, tmp_path, fake):
    """A shared study holding the completed defaults trial and another worker's running trial."""
    root = _project(small_project, tmp_path, trials=1)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    fake["defaults"] = tuning_defaults(root, "fine_tune")
    fake["values"] = lambda p, is_default: {0: 0.3, 1: 0.31}
    tuning.tune("synthetic", "mf", "fine_tune", root, storage_url=url)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tuning"]["trials"] = 3  # not part of the study's key: the same study goes on
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root, url, _other_workers_trial(url)


def test_shared_storage_leaves_another_workers_running_trial_alone(small_project, tmp_path, fake):
    """Item 5 of issue 12: on a shared storage a RUNNING trial with a live heartbeat belongs to
    another worker; starting a worker must not fail it (the journal path fails every RUNNING
    trial, which is right only for a study one process owns)."""
    root, url, _ = _shared_study(small_project, tmp_path, fake)
    out = tuning.tune("synthetic", "mf", "fine_tune", root, storage_url=url)
    states = [t.state.name for t in _shared_trials(url)]
    assert states == ["COMPLETE", "RUNNING", "COMPLETE", "COMPLETE"]
    record = _best(out)
    assert record["trials"] == 3 and record["reproducible"] is False
    assert record["label"] == tuning.NON_REPRODUCIBLE and record["storage"] == "shared"
    assert not list(out.glob("study-*.journal"))  # the study lives in the database
    assert "sqlite" not in json.dumps(record)  # the URL (it may hold a password) is not written


def test_shared_storage_retries_a_stale_trial(small_project, tmp_path, fake, monkeypatch):
    """A RUNNING trial whose heartbeat stopped (its worker died) is failed and its params are
    queued again, once the grace period has passed."""
    import time

    monkeypatch.setattr(tuning, "GRACE_S", 1)
    root, url, stale_params = _shared_study(small_project, tmp_path, fake)
    time.sleep(2.2)  # sqlite's clock has whole seconds: silent for more than GRACE_S
    tuning.tune("synthetic", "mf", "fine_tune", root, storage_url=url)
    trials = _shared_trials(url)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].params == stale_params  # the dead worker's setting, retried
    assert trials[2].system_attrs["failed_trial"] == 1


def test_tuning_table_labels_shared_storage_studies(small_project, tmp_path):
    from incbench import report

    root = _project(small_project, tmp_path)
    params = load_params(root)
    best = {"params": {"lr": 0.003}, "trials": 3, "best_value": 0.3, "tuned": False,
            "reason": "only the defaults completed"}  # fmt: skip
    records = [{"method": "fine_tune", "tuning_record": best},
               {"method": "lwf", "tuning_record": {**best, "reproducible": False,
                                                   "label": tuning.NON_REPRODUCIBLE}}]  # fmt: skip
    paths_ = report.tuning_table(tmp_path, "s", root, params, "synthetic", "mf", records, ["p"])
    status = pd.read_csv(paths_[2]).set_index("method")["status"]
    assert "non-reproducible" not in status["fine_tune"]
    assert status["lwf"].endswith("; " + tuning.NON_REPRODUCIBLE)
