"""Cost-meter overhead, one update per method, and top-K serving on ml-100k / mf.

The meter must add under 2% to an update's wall time: the same `fine_tune` update is timed
from outside with and without the meter around it (interleaved runs, medians).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from incbench import method, registry, serving
from incbench.backbones import mf
from incbench.config import Protocol
from incbench.meter import Meter
from incbench.protocol import Setup, base_train, make_context
from tests.conftest import REPO

from .bench_loop import _model


def _setup(root, windows, name, overrides=None):
    spec = method.get(name, root)
    return Setup(windows, spec, spec.params(overrides), Protocol(), "mf", mf, mf.Params(), seed=0)


def test_meter_overhead(benchmark, ml100k):
    root, windows = ml100k
    m0 = _model(windows)
    setup = _setup(root, windows, "fine_tune", {"epochs": 3})

    def update(metered: bool) -> float:
        model = copy.deepcopy(m0)
        ctx = make_context(setup, model, 1, [base_train(windows)], {})
        t0 = time.perf_counter()
        if metered:
            with Meter():
                setup.spec.update(ctx, setup.mparams)
        else:
            setup.spec.update(ctx, setup.mparams)
        return time.perf_counter() - t0

    times = {True: [], False: []}
    for _ in range(9):
        for metered in (False, True):
            times[metered].append(update(metered))
    benchmark.pedantic(update, args=(True,), rounds=1, iterations=1)
    bare, metered = np.median(times[False]), np.median(times[True])
    overhead = (metered - bare) / bare
    benchmark.extra_info.update(bare_s=bare, metered_s=metered, overhead=overhead)
    print(f"\nmeter overhead on a fine_tune update: {bare * 1000:.0f} ms bare, "
          f"{metered * 1000:.0f} ms metered ({overhead:+.2%}, median of 9)")  # fmt: skip


@pytest.mark.parametrize("name", registry.names("methods", REPO))
def test_update_step(benchmark, ml100k, name):
    root, windows = ml100k
    m0 = _model(windows)
    setup = _setup(root, windows, name)

    def update():
        ctx = make_context(setup, copy.deepcopy(m0), 1, [base_train(windows)], {})
        if not setup.spec.not_applicable(ctx):
            setup.spec.update(ctx, setup.mparams)

    benchmark.pedantic(update, rounds=3, iterations=1)


def test_topk_serving(benchmark, ml100k):
    _, windows = ml100k
    model = _model(windows)
    n_items = windows.known(1)[1]
    index = model.item_index(n_items)
    user = torch.tensor([0])

    def request():
        with torch.no_grad():
            return torch.topk(model.score_index(user, index), 10, dim=1).indices

    benchmark(request)
    users = np.unique(windows.periods[1]["user_idx"].to_numpy())
    stats = serving.measure(model, users, n_items)
    assert stats["serve_p50_ms"] <= stats["serve_p99_ms"]
    print(f"\ntop-10 of {n_items} items for one user: p50 {stats['serve_p50_ms']:.3f} ms, "
          f"p99 {stats['serve_p99_ms']:.3f} ms, batched {stats['serve_users_per_s']:,.0f} users/s")  # fmt: skip
