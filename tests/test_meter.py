"""The cost meter on CPU."""

import numpy as np

from incbench.meter import Meter


def test_peak_memory_sees_a_known_allocation():
    with Meter() as small:
        np.ones(1000).sum()
    with Meter() as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        block.sum()
        del block
    assert big.result.peak_mem_mb - small.result.peak_mem_mb > 250


def test_times_are_measured():
    with Meter() as m:
        sum(i * i for i in range(200_000))
    assert m.result.wall_s > 0 and m.result.cpu_s > 0
