"""Split benchmark: 25 million synthetic interactions through `split` + parquet writing.

Target on the 2-core reference machine: at most 60 s and at most 4 GiB peak RSS (the peak of
the whole process while splitting, the input table included). INCBENCH_BENCH_ROWS scales it
down (CI runs the benchmarks with --benchmark-disable at a small size).
"""

from __future__ import annotations

import os

from incbench.config import Protocol
from incbench.meter import Meter
from incbench.split import write_split
from incbench.synthetic import SyntheticParams, generate_tables

ROWS = int(os.environ.get("INCBENCH_BENCH_ROWS", 25_000_000))


def test_split_25m(benchmark, tmp_path):
    n_users, n_items = max(ROWS // 150, 10), max(ROWS // 420, 10)  # ml-25m's shape
    tables = generate_tables(
        SyntheticParams(n_users=n_users, n_items=n_items, n_interactions=ROWS, n_phases=10)
    )
    meters = []

    def run():
        with Meter() as m:
            write_split(tables, Protocol(), tmp_path / "windows", {"name": "synthetic"})
        meters.append(m.result)

    benchmark.pedantic(run, rounds=1, iterations=1)
    r = meters[-1]
    benchmark.extra_info.update(rows=ROWS, wall_s=r.wall_s, peak_rss_mb=r.peak_mem_mb)
    print(f"\nsplit {ROWS:,} rows: {r.wall_s:.1f} s wall, {r.cpu_s:.1f} s CPU, "
          f"peak RSS {r.peak_mem_mb / 1024:.2f} GiB")  # fmt: skip
