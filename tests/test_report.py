"""Report tables: content, statuses, formats, byte-identical reruns."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from incbench.protocol import run
from incbench.report import report, tex_escape


@pytest.fixture
def project(small_project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(small_project, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["methods"] = {"frozen": {}, "fine_tune": {}, "head_only": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def test_tables_in_three_formats_and_rerun_is_byte_identical(project):
    run("synthetic", "mf", "frozen", 0, project)
    run("synthetic", "mf", "fine_tune", 0, project)
    paths = report(project)
    assert sorted(p.name for p in paths) == [
        "quality-synthetic-mf.csv", "quality-synthetic-mf.md", "quality-synthetic-mf.tex"
    ]  # fmt: skip
    first = {p: p.read_bytes() for p in paths}
    report(project)
    assert all(p.read_bytes() == data for p, data in first.items())

    md = (project / "results/tables/quality-synthetic-mf.md").read_text()
    assert md.startswith("synthetic / mf: next-window metrics")
    assert "| frozen (v1)" in md and "| fine_tune (v1)" in md
    assert "missing: no result in results/runs/synthetic-mf-head_only-0" in md
    csv = pd.read_csv(project / "results/tables/quality-synthetic-mf.csv")
    assert list(csv["method"]) == ["frozen", "fine_tune", "head_only"]
    summary = pd.read_json(
        project / "results/runs/synthetic-mf-fine_tune-0/summary.json", typ="series"
    )
    assert csv.loc[1, "ndcg@10_mean"] == pytest.approx(summary["next_window"]["ndcg@10"])
    tex = (project / "results/tables/quality-synthetic-mf.tex").read_text()
    assert "\\toprule" in tex and "fine\\_tune (v1)" in tex


def test_mean_and_std_over_seeds(project):
    from incbench.report import _fmt

    text, mean, std = _fmt([0.1, 0.2, 0.3], 4)
    assert text == "0.2000 ± 0.1000" and mean == pytest.approx(0.2) and std == pytest.approx(0.1)
    assert _fmt([0.5], 2)[0] == "0.50"  # one seed: no spread claimed
    assert _fmt([None], 2)[0] == "–"


def test_tex_escape():
    assert tex_escape("a_b & 50% ± #1") == r"a\_b \& 50\% $\pm$ \#1"
