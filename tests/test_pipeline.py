"""The DVC pipeline on a tiny synthetic grid: repro, no-op rerun, and adding a method.

Adding a method must make only its own run stages and the report stale (DESIGN.md section 1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SMALL_PARAMS, make_project

pytestmark = pytest.mark.slow


def dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("INCBENCH_ROOT", None)
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def stale_stages(root: Path) -> set[str]:
    import json

    return set(json.loads(dvc(root, "status", "--json") or "{}"))


def test_repro_noop_and_add_a_method(tmp_path):
    params = {**SMALL_PARAMS, "methods": {"frozen": {}, "head_only": {}}}
    root = make_project(tmp_path, params)
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(
        REPO / "incbench", root / "incbench", ignore=shutil.ignore_patterns("__pycache__")
    )
    dvc(root, "init", "--no-scm", "-q")

    out = dvc(root, "repro")
    assert "run@synthetic-mf-head_only-0" in out
    table = (root / "results/tables/quality-synthetic-mf.md").read_text()
    assert "| head_only (v1)" in table and "| frozen (v1)" in table
    assert "calibrate@mf" in out  # the drift calibration runs with the grid, tables by report
    assert "Checks (computed" in (root / "results/tables/calibration-synthetic-mf.md").read_text()
    assert stale_stages(root) == set()
    assert "Running stage" not in dvc(root, "repro")  # a second repro does nothing

    # step 1: write the file; step 2: add its params; then only the new work is stale
    subprocess.run([sys.executable, "-m", "incbench.cli", "new-method", "my_method"], cwd=root,
                   check=True, env={**os.environ, "INCBENCH_ROOT": str(root)})  # fmt: skip
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["methods"]["my_method"] = {"epochs": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    new_work = {"tune@synthetic-mf-my_method", "run@synthetic-mf-my_method-0", "report"}
    assert stale_stages(root) == new_work

    # step 3: dvc repro runs just that
    out = dvc(root, "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == new_work
    assert "| my_method (v1)" in (root / "results/tables/quality-synthetic-mf.md").read_text()

    # step 4: the shipped loss-changing and adapter methods join the grid the same way
    p["methods"].update({"ewc": {}, "lsat": {}})
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    new_work = {f"{stage}@synthetic-mf-{m}{tail}" for m in ("ewc", "lsat")
                for stage, tail in (("tune", ""), ("run", "-0"))} | {"report"}  # fmt: skip
    assert stale_stages(root) == new_work
    out = dvc(root, "repro")
    assert {
        line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")
    } == (new_work)
    table = (root / "results/tables/quality-synthetic-mf.md").read_text()
    assert "| ewc (v1)" in table
    assert "needs transformer layers" in table  # lsat on mf: not applicable, and says why
