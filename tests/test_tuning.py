"""Tuning: past data only, reproducible studies, resumable journals, fixed params respected."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from incbench import tuning
from incbench.config import load_params, protocol_from
from incbench.protocol import run
from incbench.split import load_windows


def _project(small_project, tmp_path, name="p", **cfg):
    root = tmp_path / name
    shutil.copytree(small_project, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tuning"] = {"trials": 3, "base_fraction": 0.5, "n_windows": 2, "seed": 0, **cfg}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


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


def test_same_seed_same_best_params(small_project, tmp_path):
    a = tuning.tune("synthetic", "mf", "fine_tune", _project(small_project, tmp_path, "a"))
    b = tuning.tune("synthetic", "mf", "fine_tune", _project(small_project, tmp_path, "b"))
    best_a, best_b = (json.loads((x / "best.json").read_text()) for x in (a, b))
    assert best_a["tuned"] and best_a["trials"] == 3
    assert best_a["params"] == best_b["params"] and best_a["best_value"] == best_b["best_value"]
    trials = pd.read_csv(a / "trials.csv")
    assert trials.loc[0, "lr"] == 0.003 and trials.loc[0, "epochs"] == 3  # defaults go first
    pd.testing.assert_frame_equal(trials, pd.read_csv(b / "trials.csv"))


def test_interrupted_study_resumes(small_project, tmp_path, monkeypatch):
    import incbench.protocol as protocol

    root = _project(small_project, tmp_path, trials=4)
    real, calls = protocol.run_protocol, {"n": 0}

    def flaky(setup, m0):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the machine went away in the middle of trial 2
        return real(setup, m0)

    monkeypatch.setattr(protocol, "run_protocol", flaky)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("synthetic", "mf", "fine_tune", root)
    out = tuning.folder(root, "synthetic", "mf", "fine_tune")
    assert not (out / "best.json").exists()
    assert len(list(out.glob("study-*.journal"))) == 1
    monkeypatch.setattr(protocol, "run_protocol", real)
    tuning.tune("synthetic", "mf", "fine_tune", root)
    trials = pd.read_csv(out / "trials.csv")
    complete = trials[trials["state"] == "COMPLETE"]
    assert len(complete) == 4 and calls["n"] == 3  # 2 kept from before + 2 more, none redone
    assert list(trials.loc[trials["state"] == "FAIL", "number"]) == [2]  # the interrupted one
    assert json.loads((out / "best.json").read_text())["trials"] == 4


def test_trials_zero_fixed_params_and_runs_use_best(small_project, tmp_path):
    root = _project(small_project, tmp_path, trials=0)
    out = tuning.tune("synthetic", "mf", "fine_tune", root)
    record = json.loads((out / "best.json").read_text())
    assert not record["tuned"] and record["reason"].startswith("no trials in the budget")

    root = _project(small_project, tmp_path, "fixed", trials=2)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["methods"]["fine_tune"] = {"epochs": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tuning.tune("synthetic", "mf", "fine_tune", root)
    record = json.loads((out / "best.json").read_text())
    assert record["params"]["epochs"] == 1  # fixed in params.yaml: never tuned
    run_dir = run("synthetic", "mf", "fine_tune", 0, root)
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["method"]["params"] == record["params"]  # the run used the tuned params
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tuning"] == {"trials": 2, "best_value": record["best_value"]}


def test_nothing_to_tune(small_project, tmp_path):
    root = _project(small_project, tmp_path)
    record = json.loads((tuning.tune("synthetic", "mf", "frozen", root) / "best.json").read_text())
    assert not record["tuned"] and "no search_space" in record["reason"]
