"""`incbench compare`: identical, within noise, changed, missing."""

import json
import shutil

from incbench.cli import main
from incbench.compare import compare


def _summary(folder, method, seed, ndcg):
    run = folder / "runs" / f"d-mf-{method}-{seed}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "summary.json").write_text(json.dumps({
        "dataset": "d", "backbone": "mf", "method": method, "seed": seed,
        "next_window": {"ndcg@10": ndcg, "auc": 0.7},
    }))  # fmt: skip


def test_identical_within_noise_changed_and_missing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, v in enumerate((0.20, 0.22, 0.21)):
        _summary(a, "fine_tune", seed, v)
        _summary(a, "frozen", seed, 0.2)
    shutil.copytree(a, b)
    rows, bad = compare(a, b)
    assert not bad and all("identical" in r[-1] for r in rows)
    assert main(["compare", str(a), str(b)]) == 0

    for seed, v in enumerate((0.205, 0.215, 0.21)):  # small move, inside the seed spread
        _summary(b, "fine_tune", seed, v)
    rows, bad = compare(a, b)
    assert not bad and any("within noise" in r[-1] for r in rows)

    for seed in range(3):  # a shift far beyond the spread
        _summary(b, "fine_tune", seed, 0.40)
    rows, bad = compare(a, b)
    assert bad and any(
        r[0] == "d/mf/fine_tune" and r[1] == "ndcg@10" and "CHANGED" in r[-1] for r in rows
    )
    assert main(["compare", str(a), str(b)]) == 1

    shutil.rmtree(b / "runs" / "d-mf-frozen-0")
    shutil.rmtree(b / "runs" / "d-mf-frozen-1")
    shutil.rmtree(b / "runs" / "d-mf-frozen-2")
    rows, bad = compare(a, b)
    assert bad and ["d/mf/frozen", "–", "–", "–", "–", "only in A"] in rows


def test_not_a_results_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "is not a results folder" in capsys.readouterr().err
