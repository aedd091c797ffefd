"""Peer cross-check of the calibration table: implicit's ALS on the same synthetic windows.

For preference_shift 0 and 0.8 (the calibration streams, drift: gradual with 10 phases, cut by
the protocol), it prints the warm-user NDCG@10 (mean of windows 2..N) of

    mf  frozen (M0 only) / full_retrain      incbench, the backbone's recipe, seed 0
    ALS once on the base / retrained each    implicit 0.7 (32 factors, library defaults),
        window on all train rows before t    fed the liked train rows (rating >= 4)
    popularity, oracle                       incbench/references.py

so the calibration table's retrain-vs-frozen gap can be compared with a stock library's, and
mf's level with ALS's (the target: at shift 0, mf reaches at least 90% of ALS). implicit is a
peer library, never a dependency of the harness: `pip install implicit` to run this; without
it the benchmark is skipped. `make bench` runs it at full size and writes the figures to
results/peer-als-mf.json; under --benchmark-disable (`make test`) it runs on a
small stream.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from incbench import calibration, evaluate, io, method, references
from incbench.backbones import mf
from incbench.config import Protocol, load_params
from incbench.protocol import Setup, pretrain_model, run_protocol

from .conftest import REPO

implicit = pytest.importorskip("implicit")


class _Factors:
    """ALS factors behind the scoring interface evaluate.py uses."""

    def __init__(self, users: np.ndarray, items: np.ndarray):
        self.u, self.i = torch.from_numpy(users), torch.from_numpy(items)

    def item_index(self, n_items):
        return self.i[:n_items]

    def score_index(self, users, index):
        return self.u[users] @ index.T

    def score(self, users, items):
        return (self.u[users] * self.i[items]).sum(-1)


def _als(windows, upto: int, seed: int) -> _Factors:
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    rows = pd.concat([p[(p["part"] == "train") & p["positive"]] for p in windows.periods[:upto]])
    n_users, n_items = windows.known(windows.n_windows)
    matrix = sp.csr_matrix(
        (np.ones(len(rows)), (rows["user_idx"], rows["item_idx"])), shape=(n_users, n_items)
    )
    matrix.data[:] = 1.0
    model = AlternatingLeastSquares(factors=32, random_state=seed)
    model.fit(matrix, show_progress=False)
    return _Factors(np.asarray(model.user_factors), np.asarray(model.item_factors))


def _late(values: list[float]) -> float:
    return float(np.mean(values[1:]))  # windows 2..N


def measure(cal, protocol, shift: float, seed: int = 0) -> dict[str, float]:
    windows, truth = calibration.stream(cal, protocol, shift)
    known = [windows.known(t) for t in range(windows.n_windows + 1)]
    metric = calibration.METRIC

    def ndcg(model, t):
        return evaluate.next_window(model, windows.periods, t, known, "cpu", protocol.seed)[0][
            metric
        ]

    out = {}
    once = _als(windows, 1, seed)
    ts = range(1, windows.n_windows + 1)
    out["als_once"] = _late([ndcg(once, t) for t in ts])
    out["als_retrained"] = _late([ndcg(_als(windows, t, seed), t) for t in ts])
    for ref in calibration.REFERENCES:
        table, _ = references.evaluate_reference(ref, windows, truth, protocol.seed)
        out[ref] = _late(table[metric].tolist())
    params = mf.Params()
    m0, _ = pretrain_model(windows, mf, params, protocol, seed)
    for name in ("frozen", "full_retrain"):
        spec = method.get(name, REPO)
        setup = Setup(windows, spec, spec.params({}), protocol, "mf", mf, params, seed, lean=True)
        out[f"mf_{name}"] = _late(run_protocol(setup, m0).windows[metric].tolist())
    return out


def test_mf_against_implicit_als(benchmark):
    small = benchmark.disabled
    standard = calibration.params_from(load_params(REPO))  # params.yaml's calibration streams
    stream = {"n_users": 120, "n_items": 60, "n_interactions": 8000} if small else {}
    cal = dataclasses.replace(standard, stream={**standard.stream, **stream})
    protocol = Protocol()
    figures = {}
    figures[0.0] = benchmark.pedantic(measure, (cal, protocol, 0.0), rounds=1, iterations=1)
    figures[0.8] = measure(cal, protocol, 0.8)
    for shift in (0.0, 0.8):
        f = figures[shift]
        print(f"\nshift {shift}: warm-user NDCG@10, mean of windows 2..N (seed 0)")
        for key, value in f.items():
            print(f"  {key:<16} {value:.4f}")
        print(f"  mf frozen / ALS once = {f['mf_frozen'] / f['als_once']:.2f}; "
              f"retrain/frozen: mf {f['mf_full_retrain'] / f['mf_frozen']:.2f}, "
              f"ALS {f['als_retrained'] / f['als_once']:.2f}")  # fmt: skip
    if not small:
        record = {"stream": calibration.stream_options(cal), "protocol": dataclasses.asdict(protocol),
                  "implicit": implicit.__version__, "shifts": {str(k): v for k, v in figures.items()}}  # fmt: skip
        io.write_json(REPO / "results" / "peer-als-mf.json", record)
    assert all(np.isfinite(v) for f in figures.values() for v in f.values())
