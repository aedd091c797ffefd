"""`incbench grid` (issue 12): the waves run through submitit's debug and local executors and
through Ray on a small synthetic grid, give results identical to a local `dvc repro`, and
`collect` commits only cells whose receipts and provenance check out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from incbench import cli, grid
from tests.conftest import REPO, SMALL_PARAMS, make_project

pytestmark = pytest.mark.slow

# one dataset, one backbone, one seed, two methods (head_only tuned: 2 trials); no reference
# rows and no calibration (stages outside the grid, run by wave 0 / `dvc repro report`)
GRID_PARAMS = {
    **SMALL_PARAMS,
    "methods": {"frozen": {}, "head_only": {}},
    "references": [],
    "calibration": {**SMALL_PARAMS["calibration"], "backbones": []},
    "tuning": {"trials": 2, "base_fraction": 0.5, "n_windows": 2, "seeds": [0, 1]},
}
RUNS = ["run@synthetic-mf-frozen-0", "run@synthetic-mf-head_only-0"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("INCBENCH_ROOT", None)
    return env


def sh(root: Path, *args: str) -> str:
    proc = subprocess.run(args, cwd=root, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def dvc(root: Path, *args: str) -> str:
    return sh(root, sys.executable, "-m", "dvc", *args)


def incbench(root: Path, *args: str) -> int:
    """`incbench …` in this process (the grid's dispatcher), rooted at `root`."""
    old = os.environ.get("INCBENCH_ROOT")
    os.environ["INCBENCH_ROOT"] = str(root)
    try:
        return cli.main(list(args))
    finally:
        if old is None:
            os.environ.pop("INCBENCH_ROOT")
        else:
            os.environ["INCBENCH_ROOT"] = old


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def wave(root: Path, stage: str, executor: str, **opts) -> dict:
    """plan, run and collect one wave; returns collect's record."""
    assert incbench(root, "grid", "plan", "--stage", stage) == 0
    args = [f"--{k}={v}" for k, v in opts.items()]
    assert incbench(root, "grid", "run", "--executor", executor, *args) == 0
    assert incbench(root, "grid", "collect") == 0
    return json.loads((root / ".dvc/tmp/grid/plan.collect.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A git + DVC project after wave 0 (fetch and split, run locally)."""
    root = make_project(tmp_path_factory.mktemp("grid") / "base", GRID_PARAMS)
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(REPO / "incbench", root / "incbench",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "grid@test")
    sh(root, "git", "config", "user.name", "grid test")
    dvc(root, "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "the grid")
    dvc(root, "repro", "split@synthetic")
    return root


@pytest.fixture(scope="module")
def local(base, tmp_path_factory) -> Path:
    """The same cells by a plain local `dvc repro` (the reference the grid must reproduce)."""
    root = copy(base, tmp_path_factory.mktemp("grid") / "local")
    dvc(root, "repro", "--glob", "run@*")
    return root


@pytest.fixture(scope="module")
def tuned(base, tmp_path_factory) -> Path:
    """Waves pretrain (submitit's debug executor) and tune (its local executor) collected."""
    pytest.importorskip("submitit")  # the dev extra installs it; `incbench[slurm]` too
    root = copy(base, tmp_path_factory.mktemp("grid") / "tuned")
    # nothing of the run wave can start yet: its M0 and best.json are stale upstream
    assert incbench(root, "grid", "plan", "--stage", "run") == 0
    record = json.loads((root / ".dvc/tmp/grid/plan.json").read_text())
    assert record["cells"] == [] and sorted(record["blocked"]) == RUNS
    done = wave(root, "pretrain", "debug")
    assert sorted(done["accepted"]) == ["pretrain@synthetic-mf-0", "pretrain_inner@synthetic-mf"]
    done = wave(root, "tune", "local", parallel=2)
    assert sorted(done["accepted"]) == ["tune@synthetic-mf-frozen", "tune@synthetic-mf-head_only"]
    assert not done["refused"] and set(done["stale_after"]) == {*RUNS, "report"}
    return root


def assert_same_results(local: Path, root: Path, capsys) -> None:
    capsys.readouterr()
    assert incbench(root, "compare", str(local / "results"), str(root / "results")) == 0
    assert "every compared number and status is identical" in capsys.readouterr().out
    for run in ("synthetic-mf-frozen-0", "synthetic-mf-head_only-0"):
        a, b = (p / "results/runs" / run / "summary.json" for p in (local, root))
        assert a.read_bytes() == b.read_bytes()  # quality only: nothing of the host in it
    for study in ("synthetic-mf-frozen", "synthetic-mf-head_only"):
        a, b = (p / "results/tuning" / study / "best.json" for p in (local, root))
        assert a.read_bytes() == b.read_bytes()


def test_submitit_grid_matches_local_repro_and_collect_refuses(local, tuned, tmp_path, capsys):
    root = copy(tuned, tmp_path / "submitit")
    assert incbench(root, "grid", "plan", "--stage", "run") == 0
    plan = json.loads((root / ".dvc/tmp/grid/plan.json").read_text())
    commit = sh(root, "git", "rev-parse", "HEAD").strip()
    assert plan["commit"] == commit and [c["name"] for c in plan["cells"]] == RUNS
    frozen, head_only = plan["cells"]
    assert frozen["cmd"] == ("incbench run --dataset synthetic --backbone mf --method frozen "
                             "--seed 0")  # fmt: skip
    assert "models/synthetic-mf-0" in frozen["deps"]
    assert "results/runs/synthetic-mf-frozen-0/summary.json" in frozen["outs"]
    assert incbench(root, "grid", "run", "--executor", "local", "--parallel", "2") == 0
    status = json.loads((root / ".dvc/tmp/grid/plan.status.json").read_text())
    assert {c["state"] for c in status["cells"].values()} == {"done"}
    # run again: every receipt still holds, so nothing runs (no output is rewritten)
    receipts = {n: grid.receipt_path(root / ".dvc/tmp/grid/plan.json", n).read_bytes()
                for n in RUNS}  # fmt: skip
    assert incbench(root, "grid", "run", "--executor", "local") == 0
    status = json.loads((root / ".dvc/tmp/grid/plan.status.json").read_text())
    assert all(c["state"].startswith("done (an earlier run") for c in status["cells"].values())
    assert all(c["attempts"] == [] for c in status["cells"].values())
    assert receipts == {n: grid.receipt_path(root / ".dvc/tmp/grid/plan.json", n).read_bytes()
                        for n in RUNS}  # fmt: skip

    # frozen is run again by hand at another commit; head_only's input changes after its run
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", "another commit")
    other = sh(root, "git", "rev-parse", "HEAD").strip()
    sh(root, "incbench", "run", "--dataset", "synthetic", "--backbone", "mf", "--method",
       "frozen", "--seed", "0")  # fmt: skip
    sh(root, "git", "reset", "-q", "--hard", commit)
    best = root / "results/tuning/synthetic-mf-head_only/best.json"
    original = best.read_bytes()
    best.write_bytes(original + b"\n")
    assert incbench(root, "grid", "collect") == 1
    result = json.loads((root / ".dvc/tmp/grid/plan.collect.json").read_text())
    assert result["accepted"] == [] and sorted(result["refused"]) == RUNS
    why = " | ".join(result["refused"][frozen["name"]])
    assert f"produced at commit {other}, not the dispatch commit {commit}" in why
    assert "outputs changed since it ran" in why
    why = " | ".join(result["refused"][head_only["name"]])
    assert "inputs changed since it ran: results/tuning/synthetic-mf-head_only/best.json" in why
    assert "upstream stage(s) no longer match dvc.lock: tune@synthetic-mf-head_only" in why
    assert set(RUNS) <= set(result["stale_after"])  # nothing was committed

    # a worker at the wrong commit does not run the command at all
    receipt = grid.run_cell(str(root), other, frozen)
    assert receipt["rc"] is None and "not the dispatch commit" in receipt["reason"]

    # put the input back, run frozen again as a job array's task would: now both check out
    best.write_bytes(original)
    assert incbench(root, "grid", "cell", "--plan", ".dvc/tmp/grid/plan.json", "--index", "0") == 0
    assert incbench(root, "grid", "collect") == 0
    result = json.loads((root / ".dvc/tmp/grid/plan.collect.json").read_text())
    assert sorted(result["accepted"]) == RUNS and result["stale_after"] == ["report"]
    assert set(json.loads(dvc(root, "status", "--json"))) == {"report"}
    assert_same_results(local, root, capsys)


def test_failed_cells_are_retried_and_reported(tmp_path):
    """A failing command is retried --retries times, then reported failed, never dropped."""
    pytest.importorskip("submitit")
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text("seeds: [0]\n")
    sh(root, "git", "init", "-q")
    sh(root, "git", "add", "params.yaml")
    sh(root, "git", "-c", "user.email=grid@test", "-c", "user.name=grid", "commit", "-qm", "p")
    path = tmp_path / "failing.json"
    commit = sh(root, "git", "rev-parse", "HEAD").strip()
    cell = {"name": "run@broken", "cmd": "echo trying; exit 3", "deps": ["params.yaml"],
            "outs": [], "upstream": [], "inputs": grid.hash_paths(root, ["params.yaml"])}  # fmt: skip
    path.write_text(json.dumps({"commit": commit, "stage": "run", "cells": [cell]}))
    status = grid.run_plan(root, path, "debug", retries=1, rerun=True)  # no dvc project here
    entry = status["cells"]["run@broken"]
    assert entry["state"] == "failed" and [a["rc"] for a in entry["attempts"]] == [3, 3]
    assert "trying" in entry["attempts"][-1]["log_tail"]
    assert json.loads(path.with_suffix(".status.json").read_text())["cells"] == status["cells"]
    record = json.loads(path.read_text())
    receipt = json.loads(grid.receipt_path(path, "run@broken").read_text())
    assert grid.check_cell(root, record, cell, receipt, set()) == [
        "its last attempt failed: exit code 3"
    ]


def test_a_cell_behind_a_stale_stage_at_any_depth_is_blocked():
    upstream = {"run@a": ["tune@a", "pretrain@a"], "tune@a": ["pretrain_inner@a"],
                "pretrain_inner@a": ["split@d"], "pretrain@a": ["split@d"], "split@d": []}  # fmt: skip
    assert grid._ancestors("run@a", upstream) == {"tune@a", "pretrain@a", "pretrain_inner@a",
                                                  "split@d"}  # fmt: skip
    assert grid._ancestors("split@d", upstream) == set()


def test_ray_grid_matches_local_repro(local, tuned, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    root = copy(tuned, tmp_path / "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = wave(root, "run", "ray", parallel=2)
    finally:
        ray.shutdown()
    assert sorted(done["accepted"]) == RUNS and done["stale_after"] == ["report"]
    assert_same_results(local, root, capsys)


def test_no_stage_imports_the_grid():
    """grid.py is no stage's DVC dependency: only cli.py imports it (lazily)."""
    from tests.test_dvc_deps import ENTRY, harness_modules

    for entry in set(ENTRY.values()):
        assert "incbench.grid" not in harness_modules(entry), entry
