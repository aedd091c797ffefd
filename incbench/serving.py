"""Serving latency: top-K over the full catalogue for one user, and batched throughput.

The model first builds its item index (what a server caches between model pushes; not timed),
then each request scores one user against the whole catalogue and takes the top K. After
`warmup` untimed requests, `n_requests` are timed one by one (CUDA-synchronised) for
p50/p95/p99; throughput times batches of `batch_users` users.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from incbench.meter import count_flops
from incbench.train import seed_for


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def measure(model, users: np.ndarray, n_items: int, *, k: int = 10, n_requests: int = 200,
            warmup: int = 20, batch_users: int = 256, device: str = "cpu",
            seed: int = 0) -> dict[str, float]:  # fmt: skip
    model.eval()
    rng = np.random.default_rng(seed)
    index = model.item_index(n_items)
    k = min(k, n_items)
    picks = torch.from_numpy(rng.choice(users, size=warmup + n_requests)).to(device)

    def request(u: torch.Tensor) -> torch.Tensor:
        return torch.topk(model.score_index(u, index), k, dim=1).indices

    times = []
    for n, u in enumerate(picks):
        _sync(device)
        t0 = time.perf_counter()
        request(u.view(1))
        _sync(device)
        if n >= warmup:
            times.append(time.perf_counter() - t0)
    batch = torch.from_numpy(rng.choice(users, size=batch_users)).to(device)
    request(batch)  # warm-up
    reps, t0 = 5, time.perf_counter()
    for _ in range(reps):
        request(batch)
    _sync(device)
    elapsed = time.perf_counter() - t0
    ms = np.asarray(times) * 1000
    return {
        "serve_p50_ms": float(np.percentile(ms, 50)),
        "serve_p95_ms": float(np.percentile(ms, 95)),
        "serve_p99_ms": float(np.percentile(ms, 99)),
        "serve_users_per_s": float(reps * batch_users / elapsed),
        "serve_flops_per_request": float(count_flops(lambda: request(picks[:1]))),
    }


def measure_serving(model, window: pd.DataFrame, n_items: int, device: str, seed: int, t: int):
    """Latency of the model that serves window t, for requests from window t's users."""
    users = np.unique(window["user_idx"].to_numpy())
    return measure(model, users, n_items, device=device, seed=seed_for(seed, t, "serve"))


def index_rebuild_ms(model, n_items: int, device: str) -> float:
    """Milliseconds to recompute the serving index (the catalogue side) of `model`."""
    import time

    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.item_index(n_items)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0)
