"""Fixed cost of a stage: a fresh process importing what the stage's command imports.

A grid of dozens of short stages pays it once per stage. Prints, per stage kind, the median
of a few fresh `python -c "import <entry module>"` runs (process start included), and which
heavy libraries that import pulls in. Target: <= 2 s on the 2-core reference machine; torch
alone takes most of it for the stages that train (it is their job), and no run imports
scikit-learn, transformers, peft, optuna or matplotlib unless it uses them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

ENTRIES = {  # stage kind -> the module its command runs
    "fetch": "incbench.fetch",
    "split": "incbench.split",
    "pretrain / run": "incbench.stages",
    "tune": "incbench.tuning",
    "reference": "incbench.references",
    "report": "incbench.report",
}
HEAVY = ("torch", "sklearn", "transformers", "peft", "optuna", "matplotlib", "scipy")
PROBE = "import sys, {m}; print(','.join(h for h in {heavy!r} if h in sys.modules))"


def startup(module: str, repeats: int) -> tuple[float, str]:
    times, loaded = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE.format(m=module, heavy=HEAVY)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        times.append(time.perf_counter() - t0)
        loaded = out.stdout.strip()
    return statistics.median(times), loaded


@pytest.mark.parametrize("kind", list(ENTRIES))
def test_stage_startup(benchmark, kind):
    repeats = 1 if benchmark.disabled else 3
    seconds, loaded = startup(ENTRIES[kind], repeats)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(seconds=round(seconds, 2), heavy_imports=loaded)
    print(f"{kind}: {seconds:.2f} s, imports {loaded or 'none of ' + ', '.join(HEAVY)}")
    if kind == "pretrain / run":
        assert "sklearn" not in loaded and "matplotlib" not in loaded and "optuna" not in loaded
