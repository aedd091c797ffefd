"""Hot paths of the loop on ml-100k / mf.

- full-catalogue evaluation of one window (target: under 1 s on the 2-core reference machine);
- the harness's overhead on one `fine_tune` update against a bare PyTorch loop doing the same
  work (same data, negatives, batches, optimiser) — target: under 10%.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from incbench import evaluate, method, train
from incbench.backbones import mf
from incbench.config import Protocol
from incbench.meter import Meter
from incbench.protocol import Setup, base_train, make_context


def _model(windows):
    model = mf.build(mf.Params(), *windows.known(0), seed=0)
    train.fit(model, base_train(windows), n_items=windows.known(0)[1], n_negatives=4, lr=0.01,
              epochs=1, batch_size=4096, seed=0)  # fmt: skip
    model.grow(*windows.known(1))
    return model.eval()


def test_full_catalogue_evaluation(benchmark, ml100k):
    _, windows = ml100k
    model = _model(windows)
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    metrics, _ = benchmark(evaluate.next_window, model, windows.periods, 1, known)
    assert metrics["users_ranked"] > 0 and 0 < metrics["ndcg@10"] < 1
    if benchmark.stats is None:  # --benchmark-disable: checked for correctness only
        return
    print(f"\nevaluate one ml-100k window ({int(metrics['users_ranked'])} users x "
          f"{known[1][1]} items): median {benchmark.stats.stats.median * 1000:.0f} ms")  # fmt: skip


def bare_fine_tune(model, window, n_items, lr, epochs, batch_size, seed):
    """What fine_tune does, written as a plain PyTorch loop with nothing around it."""
    rng = np.random.default_rng(seed)
    users = window["user_idx"].to_numpy(np.int64)
    items = window["item_idx"].to_numpy(np.int64)
    labels = window["positive"].to_numpy(np.float32)
    n = len(users)
    u_all = torch.from_numpy(np.concatenate([users, np.repeat(users, 4)]))
    y_all = torch.from_numpy(np.concatenate([labels, np.zeros(n * 4, np.float32)]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        i_all = torch.from_numpy(np.concatenate([items, rng.integers(0, n_items, size=n * 4)]))
        order = torch.from_numpy(rng.permutation(len(u_all)))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            logits, penalty = model.score_and_penalty(u_all[idx], i_all[idx])
            loss = loss_fn(logits, y_all[idx]) + penalty  # the backbone's L2, as fit adds it
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def test_harness_overhead_vs_bare_loop(benchmark, ml100k):
    root, windows = ml100k
    m0 = _model(windows)
    spec = method.get("fine_tune", root)
    params = spec.params({"epochs": 3})
    # no early stopping (val_fraction 0): the harness trains exactly the bare loop's 3 epochs,
    # so the difference is the harness's own work (batches, negatives, hooks, the meter)
    setup = Setup(windows, spec, params, Protocol(), "mf", mf, mf.Params(val_fraction=0.0), seed=0)
    window = make_context(setup, m0, 1, [base_train(windows)], {}).window
    reps = 7

    def harness():
        model = copy.deepcopy(m0)
        ctx = make_context(setup, model, 1, [base_train(windows)], {})
        with Meter():
            spec.update(ctx, params)

    def bare():
        bare_fine_tune(copy.deepcopy(m0), window, setup.known(1)[1], params.lr, params.epochs,
                       4096, seed=0)  # fmt: skip

    times = {"harness": [], "bare": []}
    for _ in range(reps):  # interleaved, so drift in machine load hits both alike
        for name, fn in (("harness", harness), ("bare", bare)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    benchmark.pedantic(harness, rounds=1, iterations=1)
    h, b = np.median(times["harness"]), np.median(times["bare"])
    overhead = (h - b) / b
    benchmark.extra_info.update(harness_s=h, bare_s=b, overhead=overhead)
    print(f"\nfine_tune update on ml-100k window 1: harness {h * 1000:.0f} ms, bare PyTorch "
          f"{b * 1000:.0f} ms, overhead {overhead:+.1%} (median of {reps})")  # fmt: skip
