"""`incbench run` end to end on the small project: outputs, determinism, n/a, failures."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from incbench.config import ConfigError
from incbench.stages import run

NOT_APPLICABLE = '''"""Needs something mf does not have."""
from dataclasses import dataclass
VERSION = "3"
@dataclass(frozen=True)
class Params:
    pass
def applicable(ctx):
    return None if ctx.backbone == "text" else "needs transformer layers (backbone mf has none)"
def update(ctx, params):
    raise AssertionError("must not be called")
'''

DIVERGES = '''"""Poisons the head, so the loss is NaN."""
from dataclasses import dataclass
import torch
VERSION = "1"
@dataclass(frozen=True)
class Params:
    pass
def update(ctx, params):
    if ctx.t == 2:
        with torch.no_grad():
            ctx.model.head.weight.fill_(float("nan"))
    ctx.fit(ctx.model, ctx.window, lr=0.01, epochs=1)
    return ctx.model
'''


@pytest.fixture
def project(small_project, tmp_path):
    """A private copy of the small project, so tests may add methods and results."""
    root = tmp_path / "p"
    shutil.copytree(small_project, root)
    return root


def test_outputs_and_bit_identical_summary(project):
    out = run("synthetic", "mf", "fine_tune", 0, project)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cost.json", "per_user.parquet", "provenance.json", "retention.csv",
                     "summary.json", "windows.csv"]  # fmt: skip
    first = (out / "summary.json").read_bytes()
    run("synthetic", "mf", "fine_tune", 0, project)
    assert (out / "summary.json").read_bytes() == first
    windows = pd.read_csv(out / "windows.csv")
    assert {
        "ndcg@10",
        "auc",
        "update_wall_s",
        "update_cpu_s",
        "peak_mem_mb",
        "changed_params",
    } <= set(windows)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["method"]["version"] == "1" and prov["split_sha256"]["window-0.parquet"]
    per_user = pd.read_parquet(out / "per_user.parquet")
    assert {"window", "user_idx", "ndcg@10", "cold_user"} <= set(per_user)


def test_other_seed_other_numbers(project):
    from incbench.stages import pretrain

    pretrain("synthetic", "mf", 1, project)
    a = json.loads((run("synthetic", "mf", "fine_tune", 0, project) / "summary.json").read_text())
    b = json.loads((run("synthetic", "mf", "fine_tune", 1, project) / "summary.json").read_text())
    assert a["next_window"] != b["next_window"]


def test_not_applicable_is_reported(project):
    (project / "methods" / "needs_text.py").write_text(NOT_APPLICABLE)
    out = run("synthetic", "mf", "needs_text", 0, project)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "not_applicable"
    assert "transformer" in summary["reason"] and summary["method_version"] == "3"
    assert set(pd.read_csv(out / "windows.csv")["status"]) == {"not_applicable"}


def test_diverging_method_records_a_failure(project):
    (project / "methods" / "boom.py").write_text(DIVERGES)
    out = run("synthetic", "mf", "boom", 0, project)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "window 2" in summary["reason"]
    assert "nan" in summary["reason"].lower()
    assert list(pd.read_csv(out / "windows.csv")["status"]) == ["ok", "failed"]


def test_bad_method_params_fail_before_work(project):
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"]["fine_tune"] = {"learning_rate": 0.1}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['learning_rate'\] in methods.fine_tune"
    ):
        run("synthetic", "mf", "fine_tune", 0, project)
    assert not (project / "results").exists()


def test_unknown_method_and_backbone(project):
    from incbench.registry import RegistryError

    with pytest.raises(RegistryError, match="Did you mean 'fine_tune'"):
        run("synthetic", "mf", "fine_tun", 0, project)
    with pytest.raises(RegistryError, match="unknown backbone 'mlp'"):
        run("synthetic", "mlp", "fine_tune", 0, project)


def test_unknown_device(project):
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["device"] = "tpu"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        run("synthetic", "mf", "frozen", 0, project)


def test_method_file_missing_pieces(project):
    from incbench.method import get

    (project / "methods" / "half.py").write_text('"""Half a method."""\nVERSION = 1\n')
    with pytest.raises(
        ConfigError, match=r"must define: VERSION = \"1\" \(a string\); a dataclass"
    ):
        get("half", project)


def test_provenance_ignores_pipeline_outputs(tmp_path):
    import subprocess

    from incbench.provenance import git_commit

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "c"], check=True)  # fmt: skip
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "new.json").write_text("{}")
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path)["dirty"] is True
