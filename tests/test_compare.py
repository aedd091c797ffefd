"""`incbench compare`: every run accounted for; identical, within float tolerance, within seed
noise, CHANGED, only in one folder, not compared; never a silent pass."""

import json
import shutil

import pytest

from incbench import IncbenchError
from incbench.cli import main
from incbench.compare import FLOAT_REL_TOL, compare


def _summary(folder, method, seed, ndcg=0.2, *, backbone="mf", status="ok", extra=None):
    """One run's summary.json; `extra` adds or overrides next_window metrics (None drops one)."""
    run = folder / "runs" / f"d-{backbone}-{method}-{seed}"
    run.mkdir(parents=True, exist_ok=True)
    nw = {"ndcg@10": ndcg, "auc": 0.7, "logloss": 1.0274924382192163, **(extra or {})}
    nw = {k: v for k, v in nw.items() if v is not None} if status == "ok" else {}
    (run / "summary.json").write_text(json.dumps({
        "dataset": "d", "backbone": backbone, "method": method, "seed": seed, "status": status,
        "reason": "" if status == "ok" else "why", "next_window": nw,
    }))  # fmt: skip


def _grid(folder):
    """Like the real grid: mf with 3 seeds (lora not applicable); text with seed 0 only."""
    for seed, v in enumerate((0.20, 0.22, 0.21)):
        _summary(folder, "fine_tune", seed, v)
        _summary(folder, "frozen", seed, 0.2)
        _summary(folder, "lora", seed, status="not_applicable")
    for method, v in (("fine_tune", 0.08), ("frozen", 0.07)):
        _summary(folder, method, 0, v, backbone="text")
        for seed in (1, 2):
            _summary(folder, method, seed, backbone="text", status="skipped")


def _run(capsys, a, b):
    code = main(["compare", str(a), str(b)])
    return code, capsys.readouterr().out


@pytest.fixture
def pair(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _grid(a)
    shutil.copytree(a, b)
    return a, b


def test_identical_folders_of_two_backbones_pass_and_say_what_was_compared(pair, capsys):
    code, out = _run(capsys, *pair)
    assert code == 0
    # 9 mf runs (6 on numbers, 3 not applicable) and 6 text runs (2 on numbers, 4 skipped)
    assert "compared 15 runs present in both folders" in out
    assert "d/mf 9 (3 by status, 6 on numbers); d/text 6 (4 by status, 2 on numbers)" in out
    assert "12 comparisons of 3 next_window metrics: 12 identical" in out
    last = out.rstrip().splitlines()[-1]
    assert last == "reproduced: every run was compared and matched within float tolerance"
    assert not compare(*pair).bad


def test_single_seed_text_run_that_changed_fails_and_is_named(pair, capsys):
    a, b = pair
    _summary(b, "fine_tune", 0, 0.0805, backbone="text")  # inside the mf seed spread, but 1 seed
    code, out = _run(capsys, a, b)
    assert code == 1
    changed = [r for r in compare(a, b).rows if r.kind == "CHANGED"]
    assert [(r.run, r.seeds, r.metric) for r in changed] == [("d/text/fine_tune", "0", "ndcg@10")]
    assert "d/text/fine_tune" in out and "one seed, no seed spread" in out
    assert "NOT reproduced: 1 CHANGED" in out and "\nreproduced" not in out


def test_run_in_one_folder_only_fails_and_is_named(pair, capsys):
    a, b = pair
    shutil.rmtree(b / "runs" / "d-text-frozen-0")
    shutil.rmtree(a / "runs" / "d-mf-frozen-2")
    code, out = _run(capsys, a, b)
    assert code == 1
    rows = {(r.run, r.seeds): r.kind for r in compare(a, b).rows if r.kind.startswith("only")}
    assert rows == {("d/text/frozen", "0"): "only in A", ("d/mf/frozen", "2"): "only in B"}
    assert "only in A" in out and "only in B" in out and "d/text/frozen" in out
    assert "NOT reproduced: 1 only in A, 1 only in B" in out


def test_difference_below_float_tolerance_is_identical_within_tolerance(pair, capsys):
    a, b = pair
    # the cross-CPU case: AUC and logloss differ in the 7th significant digit
    _summary(
        b, "fine_tune", 0, 0.08, backbone="text", extra={"auc": 0.7000003, "logloss": 1.0274931}
    )
    _summary(b, "fine_tune", 1, 0.22 * (1 + FLOAT_REL_TOL / 10))
    code, out = _run(capsys, a, b)
    assert code == 0, out
    kinds = {(r.run, r.metric): r.kind for r in compare(a, b).rows}
    assert kinds["d/text/fine_tune", "auc"] == "within float tolerance"
    assert kinds["d/text/fine_tune", "logloss"] == "within float tolerance"
    assert kinds["d/mf/fine_tune", "ndcg@10"] == "within float tolerance"
    assert kinds["d/text/fine_tune", "ndcg@10"] == "identical"
    assert "3 within float tolerance" in out and "\nreproduced" in out

    _summary(b, "fine_tune", 0, 0.08 * (1 + 10 * FLOAT_REL_TOL), backbone="text")  # beyond it
    code, out = _run(capsys, a, b)
    assert code == 1 and "CHANGED" in out


def test_multi_seed_within_noise_passes_and_a_shift_beyond_it_fails(pair, capsys):
    a, b = pair
    for seed, v in enumerate((0.205, 0.215, 0.21)):  # small move, inside the seed spread
        _summary(b, "fine_tune", seed, v)
    code, out = _run(capsys, a, b)
    assert code == 0 and "within seed noise" in out and "reproduced within seed noise" in out

    for seed in range(3):  # a shift far beyond the spread
        _summary(b, "fine_tune", seed, 0.40)
    code, out = _run(capsys, a, b)
    assert code == 1
    assert any(r.run == "d/mf/fine_tune" and r.metric == "ndcg@10" and r.kind == "CHANGED"
               for r in compare(a, b).rows)  # fmt: skip


def test_every_metric_is_compared_and_one_sided_metrics_fail(pair, capsys):
    a, b = pair
    # a metric no fixed list would know, changed in a single-seed run: still caught
    _summary(a, "frozen", 0, 0.07, backbone="text", extra={"warm_user:ndcg@10": 0.10})
    _summary(b, "frozen", 0, 0.07, backbone="text", extra={"warm_user:ndcg@10": 0.11})
    rows = compare(a, b).rows
    assert [(r.run, r.metric) for r in rows if r.kind == "CHANGED"] == [
        ("d/text/frozen", "warm_user:ndcg@10")
    ]
    # a metric added on one side only: listed as not compared, and the exit is 1
    _summary(b, "fine_tune", 0, 0.08, backbone="text", extra={"windows_2_n:ndcg@10": 0.3})
    _summary(
        b, "frozen", 0, 0.07, backbone="text", extra={"warm_user:ndcg@10": 0.10, "logloss": None}
    )
    code, out = _run(capsys, a, b)
    assert code == 1
    why = {(r.run, r.metric): r.verdict for r in compare(a, b).rows if r.kind == "not compared"}
    assert why == {
        ("d/text/fine_tune", "windows_2_n:ndcg@10"): "not compared (only in B)",
        ("d/text/frozen", "logloss"): "not compared (only in A)",
    }
    assert "NOT reproduced: 2 not compared" in out


def test_statuses_compare_by_status_and_unusable_runs_are_listed(pair, capsys):
    a, b = pair
    _summary(b, "frozen", 1, 0.07, backbone="text")  # skipped in A, ran in B
    rows = compare(a, b).rows
    assert [(r.run, r.seeds, r.a, r.b) for r in rows if r.kind == "CHANGED"] == [
        ("d/text/frozen", "1", "skipped", "ok")
    ]
    shutil.rmtree(b)
    shutil.copytree(a, b)
    for folder in (a, b):
        _summary(folder, "frozen", 2, backbone="mf", status="failed")
    (b / "runs" / "d-mf-replay-0").mkdir()  # a run folder without a summary
    code, out = _run(capsys, a, b)
    assert code == 1
    why = [r.verdict for r in compare(a, b).rows if r.kind == "not compared"]
    assert len(why) == 2
    assert "status failed on both sides" in why[1] and "no summary.json in B" in why[0]


def test_no_runs_is_an_error_not_a_pass(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "runs").mkdir(parents=True)
    (b / "runs").mkdir(parents=True)
    assert main(["compare", str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert "nothing to compare" in captured.err and "reproduced" not in captured.out
    with pytest.raises(IncbenchError, match="nothing to compare"):
        compare(a, b)

    _grid(a)  # one side empty: every run of A is missing from B
    code, out = _run(capsys, a, b)
    assert code == 1 and "15 only in A" in out and "compared 0 runs" in out


def test_not_a_results_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "is not a results folder" in capsys.readouterr().err
