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
from pathlib import Path

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


def dvc_bookkeeping(lock: Path, repeats: int) -> dict:
    """What `dvc repro` spends per stage besides the command, measured on a copy of this
    repository's dvc.lock: rewriting the lock after the stage (DVC's round-trip YAML, pure
    Python whatever is installed) and one plain load of it or of params.yaml (DVC parses
    params.yaml once per `params:` entry it checks), with the C parser when
    ruamel.yaml.clib is installed."""
    import shutil
    import tempfile

    from dvc.utils.serialize import load_yaml, modify_yaml
    from ruamel.yaml import YAML

    out = {"c_parser": "CParser" in YAML(typ="safe").Parser.__name__,
           "lock_lines": lock.read_text().count("\n")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "dvc.lock"
        shutil.copy(lock, copy)
        rewrite, load = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with modify_yaml(str(copy)) as data:
                data.setdefault("stages", {})
            rewrite.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            load_yaml(str(copy))
            load.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    load_yaml(str(lock.parent / "params.yaml"))
    out.update(lock_rewrite_s=statistics.median(rewrite), lock_load_s=statistics.median(load),
               params_load_s=time.perf_counter() - t0)  # fmt: skip
    return out


def test_dvc_bookkeeping(benchmark):
    lock = Path(__file__).resolve().parents[1] / "dvc.lock"
    if not lock.exists():
        pytest.skip("no dvc.lock: run the pipeline first")
    figures = dvc_bookkeeping(lock, 1 if benchmark.disabled else 3)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update({k: round(v, 3) if isinstance(v, float) else v
                                 for k, v in figures.items()})  # fmt: skip
    print(
        f"dvc per stage: lock rewrite {figures['lock_rewrite_s']:.2f} s "
        f"({figures['lock_lines']} lines), lock load {figures['lock_load_s']:.2f} s, "
        f"params.yaml load {figures['params_load_s'] * 1000:.0f} ms "
        f"(C parser: {figures['c_parser']})"
    )
    # set-up installs ruamel.yaml.clib (pyproject): without it every plain load above is the
    # pure-Python parser, and `dvc status` here takes twice as long
    assert figures["c_parser"], "ruamel.yaml.clib is missing: rerun `make setup`"
