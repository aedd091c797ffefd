"""Profiles (profiles/<name>/): a project folder per paper-scale grid, sharing the root's code.

A profile's dvc.yaml is generated from the root's (scripts/make_profile.py), so it cannot
drift; its protocol, backbones and methods equal the root's, so its tables compare with the
default benchmark's; its stages never run in the root pipeline.
"""

from __future__ import annotations

import pytest
import yaml

from incbench.config import PRESETS
from scripts.make_profile import ROOT, profile_pipeline, render

PROFILES = sorted(p.name for p in (ROOT / "profiles").iterdir() if (p / "params.yaml").exists())


def test_there_is_a_profile():
    assert "ml-1m" in PROFILES and "ml-1m-lsat" in PROFILES


@pytest.mark.parametrize("name", PROFILES)
def test_profile_pipeline_is_the_generated_one(name):
    assert (ROOT / "profiles" / name / "dvc.yaml").read_text() == render(name), (
        f"profiles/{name}/dvc.yaml is out of date: run `python scripts/make_profile.py {name}`"
    )


@pytest.mark.parametrize("name", PROFILES)
def test_profile_shares_the_protocol_backbones_and_methods(name):
    root = yaml.safe_load((ROOT / "params.yaml").read_text())
    prof = yaml.safe_load((ROOT / "profiles" / name / "params.yaml").read_text())
    for key in ("backbones", "methods", "references", "tuning"):
        assert prof[key] == root[key], f"profiles/{name}/params.yaml changes `{key}`"
    # the protocol too, except where the profile names a preset: then the preset's keys
    preset = prof["protocol"].get("preset")
    fixed = set(PRESETS[preset]) | {"preset"} if preset else set()
    mine = {k: v for k, v in prof["protocol"].items() if k not in fixed}
    assert mine == {k: v for k, v in root["protocol"].items() if k not in fixed}, (
        f"profiles/{name}/params.yaml changes `protocol` beyond its preset"
    )
    for link in ("methods", "datasets"):
        path = ROOT / "profiles" / name / link
        assert path.is_symlink() and path.resolve() == (ROOT / link).resolve()


def test_code_deps_point_at_the_root_and_data_deps_stay_local():
    pipeline = {"stages": {
        "run": {"cmd": "incbench run", "deps": ["incbench/train.py", "methods/x.py",
                                                "data/windows/d", "results/calibration"]},
        "calibrate": {"cmd": "incbench calibrate", "deps": ["incbench/calibration.py"]},
    }}  # fmt: skip
    out = profile_pipeline(pipeline)
    assert list(out["stages"]) == ["run"]  # calibration is the root pipeline's only
    assert out["stages"]["run"]["deps"] == ["../../incbench/train.py", "../../methods/x.py",
                                            "data/windows/d"]  # fmt: skip


def test_root_pipeline_never_reaches_into_a_profile():
    text = (ROOT / "dvc.yaml").read_text()
    assert "profiles/" not in text
