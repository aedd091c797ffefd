"""Report tables: content, statuses, formats, byte-identical reruns."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from incbench.report import report
from incbench.stages import run
from incbench.tables import tex_escape


@pytest.fixture
def project(small_project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(small_project, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["methods"] = {"frozen": {}, "fine_tune": {}, "head_only": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def test_tables_in_three_formats_and_rerun_is_byte_identical(project):
    from incbench.references import run_reference

    run("synthetic", "mf", "frozen", 0, project)
    run("synthetic", "mf", "fine_tune", 0, project)
    run_reference("synthetic", "popularity", project)  # recent_popularity: left missing
    paths = report(project)
    assert {p.name for p in paths} >= set(
        f"{kind}-synthetic-mf.{ext}"
        for kind in ("quality", "cost", "latency")
        for ext in ("md", "tex", "csv")
    )
    first = {p: p.read_bytes() for p in paths}
    report(project)
    assert all(p.read_bytes() == data for p, data in first.items())

    md = (project / "results/tables/quality-synthetic-mf.md").read_text()
    assert md.startswith("synthetic / mf: next-window metrics")
    assert "| frozen (v1)" in md and "| fine_tune (v1)" in md
    assert "missing: no result in results/runs/synthetic-mf-head_only-0" in md
    csv = pd.read_csv(project / "results/tables/quality-synthetic-mf.csv")
    assert list(csv["method"]) == ["popularity", "recent_popularity", "majority class",
                                   "M0 on window 1", "frozen", "fine_tune", "head_only"]  # fmt: skip
    assert "| popularity (reference v1)" in md and "| M0 on window 1 (shared" in md
    assert "missing: no result in results/runs/synthetic-reference-recent_popularity-0" in md
    summary = pd.read_json(
        project / "results/runs/synthetic-mf-fine_tune-0/summary.json", typ="series"
    )
    row = csv.set_index("method").loc["fine_tune"]
    assert row["warm_user:ndcg@10_mean"] == pytest.approx(
        summary["next_window"]["warm_user:ndcg@10"]
    )
    m0 = csv.set_index("method").loc["M0 on window 1"]
    assert m0["warm_user:ndcg@10_mean"] == pytest.approx(summary["window_1"]["warm_user:ndcg@10"])
    tex = (project / "results/tables/quality-synthetic-mf.tex").read_text()
    assert "\\toprule" in tex and "fine\\_tune (v1)" in tex


def test_mean_and_std_over_seeds(project):
    from incbench.tables import fmt as _fmt

    text, mean, std = _fmt([0.1, 0.2, 0.3], 4)
    assert text == "0.2000 ± 0.1000" and mean == pytest.approx(0.2) and std == pytest.approx(0.1)
    assert _fmt([0.5], 2)[0] == "0.50"  # one seed: no spread claimed
    assert _fmt([None], 2)[0] == "–"


def test_tex_escape():
    assert tex_escape("a_b & 50% ± #1") == r"a\_b \& 50\% $\pm$ \#1"


def test_cost_and_latency_tables(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"] = {"frozen": {}, "full_retrain": {}, "head_only": {}, "fine_tune": {}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in params["methods"]:
        run("synthetic", "mf", name, 0, project)
    report(project)
    cost = pd.read_csv(project / "results/tables/cost-synthetic-mf.csv").set_index("method")
    assert cost.loc["full_retrain", "cost_vs_full_retrain_mean"] == pytest.approx(1.0)
    assert cost.loc["fine_tune", "cost_vs_fine_tune_mean"] == pytest.approx(1.0)  # both references
    assert (
        cost.loc["frozen", "changed_params_mean"] == 0 and cost.loc["frozen", "delta_kb_mean"] == 0
    )
    assert (
        cost.loc["head_only", "update_gflops_mean"] < cost.loc["full_retrain", "update_gflops_mean"]
    )
    assert cost.loc["head_only", "trainable_params_mean"] == 9  # Linear(8 -> 1): 8 weights + bias
    # dollars and kWh follow from the measured seconds and the profile (0.10 $/h, 65 W)
    secs = cost.loc["full_retrain", "update_wall_s_mean"]
    assert cost.loc["full_retrain", "usd_per_update_mean"] == pytest.approx(secs / 3600 * 0.10)
    assert cost.loc["full_retrain", "kwh_per_update_mean"] == pytest.approx(secs / 3600 * 0.065)
    md = (project / "results/tables/cost-synthetic-mf.md").read_text()
    assert "estimates from measured seconds at hardware profile 'cpu'" in md
    latency = pd.read_csv(project / "results/tables/latency-synthetic-mf.csv").set_index("method")
    row = latency.loc["M0 serving (backbone)"]  # serving is the backbone's: measured once, on M0
    assert 0 < row["serve_p50_ms_mean"] <= row["serve_p95_ms_mean"] <= row["serve_p99_ms_mean"]
    assert row["serve_users_per_s_mean"] > 0 and row["serve_mflops_per_request_mean"] > 0
    assert latency.loc["head_only", "index_rebuild_ms_mean"] > 0  # per method: index rebuild
    assert "serve_p50_ms_mean" not in latency.columns or np.isnan(
        latency.loc["head_only", "serve_p50_ms_mean"]
    )
    quality = (project / "results/tables/quality-synthetic-mf.md").read_text()
    assert "Cost × full_retrain" in quality


def test_profile_arithmetic_and_errors(project):
    from incbench.config import ConfigError, HardwareProfile, hardware_profile_from

    p = HardwareProfile(kind="cuda", price_per_hour=3.6, watts=500)
    assert p.dollars(1800) == pytest.approx(1.8) and p.kwh(3600) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="unknown hardware_profile 'tpu'"):
        hardware_profile_from({"hardware_profile": "tpu", "hardware_profiles": {"cpu": {}}})
    with pytest.raises(ConfigError, match="must be >= 0"):
        HardwareProfile(kind="cpu", price_per_hour=-1, watts=1)
    # a GPU profile for runs measured on the CPU is refused, naming the fix
    run("synthetic", "mf", "frozen", 0, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["hardware_profile"] = "h100"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError, match="measured on cpu but hardware_profile 'h100'"):
        report(project)


def _grid(project, methods, seeds=(0,)):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"] = {m: {} for m in methods}
    params["seeds"] = list(seeds)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_evidence_outputs_and_byte_identical_rerun(project):
    from incbench.stages import pretrain

    pretrain("synthetic", "mf", 1, project)
    _grid(project, ["full_retrain", "fine_tune", "frozen"], seeds=(0, 1))
    for m in ("full_retrain", "fine_tune", "frozen"):
        for seed in (0, 1):
            run("synthetic", "mf", m, seed, project)
    paths = report(project)
    names = {p.name for p in paths}
    for kind in ("continual", "significance"):
        assert {f"{kind}-synthetic-mf.{ext}" for ext in ("md", "tex", "csv")} <= names
    for plot in ("ndcg_by_window", "quality_vs_cost", "retention"):
        assert {f"synthetic-mf-{plot}.png", f"synthetic-mf-{plot}.svg"} <= names
    assert "README.md" in names
    before = {p: p.read_bytes() for p in paths}
    report(project)
    changed = [p.name for p, data in before.items() if p.read_bytes() != data]
    assert changed == [], f"not byte-identical on rerun: {changed}"

    md = (project / "results/tables/quality-synthetic-mf.md").read_text()
    assert "paired Wilcoxon signed-rank test" in md and "Holm" in md
    assert "[^prov]: git " in md and "dvc.lock inputs" in md and "torch " in md
    assert "methods full_retrain v1, fine_tune v1, frozen v1" in md
    tex = (project / "results/tables/quality-synthetic-mf.tex").read_text()
    assert "\n% git " in tex
    sig = pd.read_csv(project / "results/tables/significance-synthetic-mf.csv")
    assert set(sig["method"]) == {"fine_tune", "frozen"}  # everything but the reference
    assert (sig.loc[sig["window"] == 1, "p"] == 1.0).all()  # window 1: every method is M0
    quality = pd.read_csv(project / "results/tables/quality-synthetic-mf.csv").set_index("method")
    row = quality.loc["fine_tune"]
    assert (row["warm_user:ndcg@10_ci95_low"] <= row["warm_user:ndcg@10_mean"]
            <= row["warm_user:ndcg@10_ci95_high"])  # fmt: skip
    cont = pd.read_csv(project / "results/tables/continual-synthetic-mf.csv").set_index("method")
    # one fixed exclusion set per j: a model that never changes does not forget
    assert cont.loc["frozen", "forgetting_mean"] == 0 and cont.loc["frozen", "bwt_mean"] == 0
    assert cont.loc["full_retrain", "gap_to_full_retrain_mean"] == 0
    readme = (project / "results/README.md").read_text()
    assert "![NDCG@10 by window](plots/synthetic-mf-ndcg_by_window.png)" in readme
    assert "make repro" in readme


def test_degenerate_one_seed_identical_runs_and_a_missing_window(project):
    from tests.test_run import DIVERGES

    (project / "methods" / "boom.py").write_text(DIVERGES)
    (project / "methods" / "clone.py").write_text(
        (project / "methods" / "full_retrain.py").read_text().replace("(the backbone's", "(a copy;")
    )
    _grid(project, ["full_retrain", "clone", "boom"])
    for m in ("full_retrain", "clone", "boom"):
        run("synthetic", "mf", m, 0, project)
    report(project)
    quality = pd.read_csv(project / "results/tables/quality-synthetic-mf.csv").set_index("method")
    assert np.isnan(quality.loc["clone", "warm_user:ndcg@10_std"])  # one seed: no spread, no CI
    assert np.isnan(quality.loc["clone", "warm_user:ndcg@10_ci95_low"])
    sig = pd.read_csv(project / "results/tables/significance-synthetic-mf.csv")
    clone = sig[sig["method"] == "clone"]
    assert (clone["p"] == 1.0).all() and (clone["verdict"] == "n.s.").all()  # identical runs
    boom = sig[sig["method"] == "boom"]
    assert sorted(boom["window"].dropna().unique()) == [
        2
    ]  # failed at window 2: later windows absent
    md = (project / "results/tables/quality-synthetic-mf.md").read_text()
    assert "failed: window 2" in md
    cont = pd.read_csv(project / "results/tables/continual-synthetic-mf.csv").set_index("method")
    assert cont.loc["clone", "gap_to_full_retrain_mean"] == 0


def test_rows_cut_by_the_compute_cap_say_so_and_others_do_not():
    from incbench.tables import table

    def rec(method, capped):
        return {"method": method, "seed": 0, "version": "1", "status": "ok", "ndcg@10": 0.1,
                "capped_windows": 5 if capped else 0, "capped_steps": 2 if capped else 0}  # fmt: skip

    rows, csv = table([rec("fine_tune", True), rec("head_only", False)], [("ndcg@10", "N", 4)])
    status = dict(zip(csv["method"], csv["status"]))
    assert status["fine_tune"] == "ok; capped: ≤2 steps/update, compute budget (5 windows)"
    assert status["head_only"] == "ok"
