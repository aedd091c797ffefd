"""The cost meter wrapped around every update (methods never time themselves).

Wall seconds (with CUDA fences on GPU), process CPU seconds, and the exact peak memory of
the metered block: on Linux the kernel's resident-set high-water mark (VmHWM) is reset through
/proc/self/clear_refs before the block and read after it, so no sampler can miss a peak; on
CUDA `torch.cuda.max_memory_allocated` is reset and read the same way.

Contention: the machine-wide busy and steal CPU seconds (psutil.cpu_times) are read around the
block; busy time that is not this process's is other processes' work. Its share of the block's
capacity (wall x logical CPUs), the steal share and the load average are recorded, and a
measurement with either share above CONTENDED is flagged in the tables. System-wide counters
have a 10 ms tick, so a block shorter than TICK_S (0.1 s) records no shares (NaN): one tick of
another process would read as 100% of a 5 ms block on 2 CPUs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    import pandas as pd

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory since the last reset (VmHWM), else the process's lifetime peak."""
    kb = _vm_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


@dataclasses.dataclass
class Measurement:
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    peak_mem_mb: float = float("nan")  # absolute peak during the block
    peak_mem_increase_mb: float = float("nan")  # that peak minus the level at the start
    peak_mem_kind: str = "rss"
    # what else the machine did during the block (a busy machine inflates wall seconds)
    other_cpu_share: float = float("nan")  # other processes' CPU time / (wall x logical CPUs)
    steal_share: float = float("nan")  # hypervisor steal time / (wall x logical CPUs)
    loadavg_1m: float = float("nan")  # 1-minute load average at the end of the block


CONTENDED = 0.25  # other_cpu_share (or steal) above this marks a measurement as contended
TICK_S = 0.1  # shorter blocks get no contention shares: /proc/stat counts in 10 ms ticks


def _busy() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    steal = getattr(t, "steal", 0.0)
    return total - idle - steal, steal


def _embedding_fwd(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(out_shape)  # a gather: one operation per output element


def _embedding_bwd(grad_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(grad_shape)  # a scatter-add: one addition per gradient element


def _index_select(self_shape, dim, index_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(out_shape)  # a lookup by index_select: a gather, as an embedding's


def _index_add(self_shape, dim, index_shape, source_shape, *args, out_shape=None, **kwargs):
    return math.prod(source_shape)  # index_select's backward: a scatter-add


def count_flops(fn) -> int:
    """FLOPs of running `fn()`, counted by torch's FlopCounterMode.

    Matrix products, convolutions and attention use torch's formulas (a multiply-add counts 2).
    Embedding lookups (nn.Embedding or index_select), which torch leaves out, count one
    operation per gathered element and their backward one per scattered gradient element, so
    ID models are not reported as free.
    Element-wise ops (activations, the optimiser update) are not counted, as in torch.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {
        aten.embedding: _embedding_fwd,
        aten.embedding_dense_backward: _embedding_bwd,
        aten.index_select: _index_select,
        aten.index_add: _index_add,
    }
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return int(counter.get_total_flops())


class Meter:
    """`with Meter(device) as m: ...` then read `m.result` (a Measurement)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.result = Measurement()

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def __enter__(self) -> Meter:
        if self.device.startswith("cuda"):
            import torch

            self._sync()
            torch.cuda.reset_peak_memory_stats()
            self._mem0 = torch.cuda.memory_allocated()
        else:
            reset_peak_rss()
            self._mem0 = rss_bytes()
        self._busy0 = _busy()
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        if self.device.startswith("cuda"):
            import torch

            peak, kind = torch.cuda.max_memory_allocated(), "cuda_allocated"
        else:
            peak, kind = peak_rss_bytes(), "rss"
        busy, steal = _busy()
        capacity = max(wall, 1e-9) * (psutil.cpu_count() or 1)
        others = max(busy - self._busy0[0] - cpu, 0.0) / capacity
        steal_share = max(steal - self._busy0[1], 0.0) / capacity
        if wall < TICK_S:  # below the counters' resolution: not measurable
            others = steal_share = float("nan")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        self.result = Measurement(wall, cpu, peak / 2**20, (peak - self._mem0) / 2**20, kind,
                                  min(others, 1.0), min(steal_share, 1.0), load)  # fmt: skip


def snapshot(model) -> dict:
    """A copy of the model's state before an update (for `delta`)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def update_delta(before: dict, model) -> tuple[int, int]:
    """(parameters changed, bytes of a row-sparse delta a server would receive)."""
    changed = nbytes = 0
    after = model.state_dict()
    plain = {k.replace(".base_layer", ""): v for k, v in before.items()}  # peft wraps layers
    for name, new in after.items():
        old = plain.get(name.replace(".base_layer", ""))
        if old is None or old.shape != new.shape:
            changed += new.numel()
            nbytes += new.numel() * new.element_size()
            continue
        diff = (
            (old != new.detach()).reshape(new.shape[0], -1)
            if new.dim()
            else (old != new).reshape(1, 1)
        )
        changed += int(diff.sum())
        rows = int(diff.any(dim=1).sum())
        row_bytes = (new.numel() // max(new.shape[0], 1) if new.dim() else 1) * new.element_size()
        nbytes += rows * row_bytes + (rows * 8 if new.dim() > 1 else 0)  # + row indices
    return changed, nbytes


def contention(per_window: pd.DataFrame) -> dict:
    """Contended windows and the largest share of others' (or steal) CPU, from a run's
    per-window rows (protocol's cost.json and collect's tables use this one rule), over the
    updates long enough to measure it (>= TICK_S: one 10 ms tick of any other process is 100%
    of a 5 ms update on 2 CPUs). The meter records no share for those (NaN); records from
    before it did are filtered here the same way."""
    if "other_cpu_share" not in per_window or "update_wall_s" not in per_window:
        return {}
    measurable = per_window[per_window["update_wall_s"] >= TICK_S]
    shares = measurable[["other_cpu_share", "steal_share"]].max(axis=1).dropna()
    return {"contended_windows": int((shares > CONTENDED).sum()),
            "other_cpu_share_max": float(shares.max()) if len(shares) else None}  # fmt: skip
