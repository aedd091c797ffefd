"""`incbench grid`: run the grid's cells on an existing engine, keep DVC the record (issue 12).

DVC does not spread a matrix over machines, but its documented route for outputs produced
elsewhere is to run the stage commands without `dvc repro` and `dvc commit` them. The grid does
exactly that, in waves (README "Beyond one machine"):

    dvc repro split@… reference@… calibrate@…   # wave 0, locally: fetch, split (small, I/O)
    incbench grid plan --stage pretrain          # pretrain@… and pretrain_inner@… cells
    incbench grid run --executor slurm --parallel 50 --gpus 1
    incbench grid collect                        # one `dvc commit` of the accepted cells
    … the same for --stage tune, then --stage run …
    dvc repro report                             # only report is stale now

- `plan`: the stale cells of one wave (`dvc status --json`), each with the command, deps and
  outs DVC resolves for it (foreach/matrix expanded by DVC itself), the SHA-256 of every input
  and the dispatch commit (HEAD; a dirty tree is refused: workers run committed code). A cell
  whose inputs come from a stage that is itself stale (an earlier wave not collected yet) is
  left out as blocked.
- `run`: each cell's plain `incbench …` command, on submitit's `debug` / `local` / `slurm`
  executors (Slurm: one job array capped at --parallel) or as Ray tasks (`num_gpus`), in the
  shared checkout (a network file system; cloning per worker is not built). Workers never run
  `dvc repro` and never touch dvc.lock. A failed cell is retried up to --retries times; every
  cell ends `done` or `failed` in the status file, with each attempt's exit code and log tail.
  Each attempt leaves a receipt (`cells/<stage>.json` beside the plan): the commit and
  cleanliness of the checkout it ran in, the hashes of its inputs before and after the
  command and of its outputs. Host facts (host name, wall time) go to receipts and the
  status file only, never into results.
- `collect`: accepts a cell only if its receipt shows the dispatch commit, a clean tree,
  inputs equal to the plan's and to the workspace's now, outputs unchanged since the worker
  wrote them, no stale upstream stage (so its inputs are what dvc.lock records) and, for a
  run, a provenance.json (incbench/provenance.py) with the dispatch commit and a clean tree;
  then one `dvc commit` of exactly those stages. Anything else is refused with its reasons.

Results never depend on the executor: a cell is the same command at the same commit on the same
inputs, its seeds come from the cell key (`--seed`, and tuning's sampler seed from dataset,
backbone and method), and summary.json holds quality only (host facts live in cost.json and
provenance.json, which `incbench compare` does not read).

This module is imported by cli.py only (lazily): it is no stage's dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from incbench import IncbenchError

WAVES = {"pretrain": ("pretrain", "pretrain_inner"), "tune": ("tune",), "run": ("run",)}
EXECUTORS = ("debug", "local", "slurm", "ray")
DEFAULT_PLAN = Path(".dvc") / "tmp" / "grid" / "plan.json"  # git-ignored by DVC's .dvc/.gitignore
LOG_TAIL = 4000  # characters of a failed command's output kept in the status file
MAX_ARRAY = 1000  # tasks per Slurm job array (Slurm's default MaxArraySize is 1001)


class GridError(IncbenchError):
    pass


# ---- DVC: stale stages and resolved stage definitions ------------------------------------------


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                          text=True, env=_env())  # fmt: skip
    if proc.returncode != 0:
        raise GridError(f"dvc {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def stale_stages(root: Path) -> set[str]:
    """Stages of root/dvc.yaml that `dvc status` reports changed (other dvc.yaml files skipped)."""
    status = json.loads(_dvc(root, "status", "--json") or "{}")
    return {name for name in status if ":" not in name}


def resolve_stages(root: Path) -> dict[str, dict[str, Any]]:
    """Every stage of root/dvc.yaml as DVC resolves it: {name: {cmd, deps, outs}} (paths
    relative to root; params files appear among the deps as the file they are read from)."""
    from dvc.repo import Repo

    dvcfile = (root / "dvc.yaml").resolve()
    out = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            if getattr(stage, "name", None) is None or Path(stage.path).resolve() != dvcfile:
                continue
            cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
            paths = lambda items: list(dict.fromkeys(i.def_path for i in items))  # noqa: E731
            out[stage.name] = {"cmd": cmd, "deps": paths(stage.deps), "outs": paths(stage.outs)}
    return out


def _upstream(stages: dict[str, dict]) -> dict[str, list[str]]:
    """name -> the stages whose outs hold one of its deps (a dep inside an out included)."""
    producer = {o: name for name, s in stages.items() for o in s["outs"]}
    result = {}
    for name, s in stages.items():
        found = []
        for dep in s["deps"]:
            path = Path(dep)
            for candidate in (path, *path.parents):
                if str(candidate) in producer and producer[str(candidate)] != name:
                    found.append(producer[str(candidate)])
                    break
        result[name] = sorted(set(found))
    return result


# ---- hashing inputs and outputs ----------------------------------------------------------------


def path_hash(path: Path) -> str | None:
    """SHA-256 of a file, or of a folder's sorted (relative path, file hash) list (`__pycache__`
    left out); None if absent."""

    def file_hash(p: Path) -> str:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    files = (q for q in path.rglob("*") if q.is_file() and "__pycache__" not in q.parts)
    for p in sorted(files):  # bytecode Python may write while the command runs is skipped
        h.update(p.relative_to(path).as_posix().encode() + b"\0" + file_hash(p).encode() + b"\n")
    return "dir:" + h.hexdigest()


def hash_paths(root: Path, paths: list[str]) -> dict[str, str | None]:
    return {p: path_hash(root / p) for p in paths}


def _changed(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ---- plan --------------------------------------------------------------------------------------


def plan_path(root: Path, plan: str | Path | None) -> Path:
    path = Path(plan) if plan else DEFAULT_PLAN
    return path if path.is_absolute() else root / path


def _head(root: Path) -> dict[str, Any]:
    from incbench.provenance import git_commit

    return git_commit(root)


def _ancestors(name: str, upstream: dict[str, list[str]]) -> set[str]:
    """Every stage `name` depends on, directly or through others."""
    seen: set[str] = set()
    todo = list(upstream.get(name, []))
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            todo.extend(upstream.get(u, []))
    return seen


def plan(root: Path, stage: str, path: Path) -> dict[str, Any]:
    """`incbench grid plan`: the stale cells of one wave, written to `path`."""
    from incbench import io

    if stage not in WAVES:
        raise GridError(f"--stage must be one of {', '.join(WAVES)}")
    head = _head(root)
    if not head["commit"]:
        raise GridError(f"{root} is not a git checkout with a commit: workers run a commit")
    if head["dirty"]:
        raise GridError("uncommitted changes (outside results/, data/, models/, dvc.lock): "
                        "commit them first, the workers run the committed code")  # fmt: skip
    stages = resolve_stages(root)
    stale = stale_stages(root)
    upstream = _upstream(stages)
    cells, blocked = [], {}
    in_wave = lambda name: name.split("@", 1)[0] in WAVES[stage]  # noqa: E731
    for name in sorted(n for n in stale if in_wave(n) and n not in stages):
        blocked[name] = "stale, but not among DVC's resolved stages: did dvc.yaml change?"
    for name in sorted(n for n in stages if in_wave(n)):
        # every stale stage upstream, not only direct ones: a run fed by a stale pretrain is
        # not itself reported by `dvc status` until the pretrain has run
        waiting = sorted(_ancestors(name, upstream) & stale)
        if waiting:
            blocked[name] = (f"upstream stage(s) stale: {', '.join(waiting)} (plan and run "
                             "their wave first)")  # fmt: skip
            continue
        if name not in stale:
            continue
        s = stages[name]
        cells.append({"name": name, "cmd": s["cmd"], "deps": s["deps"], "outs": s["outs"],
                      "upstream": upstream[name], "inputs": hash_paths(root, s["deps"])})  # fmt: skip
    record = {"version": 1, "stage": stage, "commit": head["commit"], "root": str(root),
              "planned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cells": cells, "blocked": blocked}  # fmt: skip
    io.write_json(path, record)
    return record


def load_plan(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise GridError(f"no plan at {path}: run `incbench grid plan --stage …` first")
    return json.loads(path.read_text())


def _plan_at_head(root: Path, path: Path, fix: str) -> dict[str, Any]:
    """The plan, if the checkout is clean at its dispatch commit (else a GridError with `fix`)."""
    record = load_plan(path)
    head = _head(root)
    if head["commit"] != record["commit"] or head["dirty"]:
        raise GridError(f"the checkout is at {head['commit']}{' (dirty)' * head['dirty']}, the "
                        f"plan's dispatch commit is {record['commit']}: {fix}")  # fmt: skip
    return record


def _receipt(path: Path, cell: str) -> dict[str, Any] | None:
    """A cell's receipt beside the plan, or None if it never ran."""
    rpath = receipt_path(path, cell)
    return json.loads(rpath.read_text()) if rpath.exists() else None


def receipt_path(path: Path, cell: str) -> Path:
    return path.parent / "cells" / f"{cell}.json"


# ---- the worker --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """The worker's environment: this interpreter's bin folder first on PATH (the `incbench`
    and `dvc` next to it), as the Makefile does for `dvc repro`."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("INCBENCH_ROOT", None)  # the command runs in the plan's root, as under dvc repro
    return env


def run_cell(root: str, commit: str, cell: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Run one cell's command in the checkout at `root` and return its receipt.

    The command runs only if the checkout is at the dispatch commit with a clean tree; the
    receipt records the checkout, the inputs' hashes before and after, the outputs' hashes,
    the exit code and the log tail. Never raises for the command's own failure."""
    start = time.time()
    path = Path(root)
    head = _head(path)
    receipt: dict[str, Any] = {"cell": cell["name"], "cmd": cell["cmd"], "attempt": attempt,
                               "commit": head["commit"], "dirty": head["dirty"],
                               "host": socket.gethostname(), "rc": None, "reason": None}  # fmt: skip
    if head["commit"] != commit:
        receipt["reason"] = f"checkout at commit {head['commit']}, not the dispatch commit {commit}"
    elif head["dirty"]:
        receipt["reason"] = "the checkout has uncommitted changes"
    if receipt["reason"]:
        receipt["wall_s"] = round(time.time() - start, 3)
        return receipt
    receipt["inputs"] = hash_paths(path, cell["deps"])
    proc = subprocess.run(cell["cmd"], shell=True, cwd=path, capture_output=True, text=True,
                          env=_env())  # fmt: skip
    receipt["rc"] = proc.returncode
    receipt["log_tail"] = (proc.stdout + proc.stderr)[-LOG_TAIL:]
    receipt["inputs_after"] = hash_paths(path, cell["deps"])
    receipt["outputs"] = hash_paths(path, cell["outs"])
    missing = [o for o, h in receipt["outputs"].items() if h is None]
    if proc.returncode != 0:
        receipt["reason"] = f"exit code {proc.returncode}"
    elif missing:
        receipt["reason"] = f"the command wrote no {', '.join(missing)}"
    elif changed := _changed(receipt["inputs"], receipt["inputs_after"]):
        receipt["reason"] = f"inputs changed while it ran: {', '.join(changed)}"
    receipt["wall_s"] = round(time.time() - start, 3)
    return receipt


def run_index(root: Path, path: Path, index: int) -> dict[str, Any]:
    """`incbench grid cell --index I`: cell I of the plan, for a plain job array (sbatch --array,
    a Kubernetes indexed job); writes its receipt beside the plan like `grid run` does."""
    from incbench import io

    record = load_plan(path)
    if not 0 <= index < len(record["cells"]):
        raise GridError(f"--index {index}: the plan has {len(record['cells'])} cells (0-based)")
    receipt = run_cell(str(root), record["commit"], record["cells"][index])
    io.write_json(receipt_path(path, receipt["cell"]), receipt)
    return receipt


# ---- dispatch ----------------------------------------------------------------------------------


def _failed_job(cell: dict, attempt: int, exc: BaseException) -> dict[str, Any]:
    return {"cell": cell["name"], "cmd": cell["cmd"], "attempt": attempt, "rc": None,
            "reason": f"job failed: {type(exc).__name__}: {exc}"[-LOG_TAIL:]}  # fmt: skip


def _window(cells, attempt, parallel, submit, done, result, timeout_s: float = 0,
            cancel=None) -> list[dict]:  # fmt: skip
    """Keep at most `parallel` jobs in flight; return the receipts in the order of `cells`.
    With `timeout_s` and `cancel`, a job running longer is cancelled and its cell failed."""
    pending, running, out, started = list(cells), {}, {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            cell = pending.pop(0)
            running[cell["name"]] = (cell, submit(cell))
            started[cell["name"]] = time.time()
        if timeout_s and cancel is not None:
            for name in [n for n in running if time.time() - started[n] > timeout_s]:
                cell, job = running.pop(name)
                cancel(job)
                out[name] = _failed_job(cell, attempt, TimeoutError(
                    f"no result after {timeout_s / 60:g} min (--timeout-min); cancelled"))  # fmt: skip
        finished = [n for n, (_, job) in running.items() if done(job)]
        for name in finished:
            cell, job = running.pop(name)
            try:
                out[name] = result(job)
            except Exception as exc:  # the job itself died (killed, timeout, lost node)
                out[name] = _failed_job(cell, attempt, exc)
        if not finished:
            time.sleep(0.2)
    return [out[c["name"]] for c in cells]


def _submitit(kind, root, commit, cells, attempt, opts, folder) -> list[dict]:
    try:
        import submitit
    except ImportError as exc:
        raise GridError(
            "the submitit executors need submitit: pip install 'incbench[slurm]'"
        ) from exc
    executor = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    params: dict[str, Any] = {"name": "incbench-grid", "timeout_min": opts["timeout_min"],
                              "cpus_per_task": opts["cpus"]}  # fmt: skip
    if opts["gpus"]:
        params["gpus_per_node"] = opts["gpus"]
    if kind == "slurm":
        params["slurm_array_parallelism"] = opts["parallel"]
        if opts.get("partition"):
            params["slurm_partition"] = opts["partition"]
    executor.update_parameters(**params)
    if kind == "slurm":  # job arrays of at most MAX_ARRAY, at most --parallel cells running
        jobs = []
        for lo in range(0, len(cells), MAX_ARRAY):
            part = cells[lo : lo + MAX_ARRAY]
            n = len(part)
            try:
                jobs += executor.map_array(run_cell, [root] * n, [commit] * n, part,
                                           [attempt] * n)  # fmt: skip
            except Exception as exc:  # no sbatch, a rejected partition or array size, …
                raise GridError(
                    f"slurm refused the job array ({type(exc).__name__}: {exc}); check that "
                    "sbatch is on PATH, the --partition exists and MaxArraySize allows "
                    f"{n} tasks; cells submitted before this one keep running"
                ) from exc
        out = []
        for cell, job in zip(cells, jobs):
            try:
                out.append(job.result())
            except Exception as exc:
                out.append(_failed_job(cell, attempt, exc))
        return out

    def submit(cell):
        return executor.submit(run_cell, root, commit, cell, attempt)

    def done(job):
        try:
            return job.done()
        except Exception:  # the debug executor runs the job inside done(); result() re-raises
            return True

    return _window(cells, attempt, opts["parallel"], submit, done, lambda job: job.result())


def _ray(root, commit, cells, attempt, opts) -> list[dict]:
    try:
        import ray
    except ImportError as exc:
        raise GridError("the ray executor needs ray: pip install 'incbench[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=opts.get("address"), log_to_driver=False)
    have = ray.cluster_resources().get("GPU", 0)
    if opts["gpus"] and opts["gpus"] > have:
        raise GridError(f"--gpus {opts['gpus']} per cell, but the Ray cluster has {have:g} "
                        "GPU(s): no cell could ever start; lower --gpus or add GPU nodes")  # fmt: skip
    task = ray.remote(run_cell).options(num_cpus=opts["cpus"], num_gpus=opts["gpus"] or 0,
                                        max_retries=0)  # fmt: skip

    def done(ref):
        ready, _ = ray.wait([ref], timeout=0)
        return bool(ready)

    def submit(cell):
        return task.remote(root, commit, cell, attempt)

    def cancel(ref):
        ray.cancel(ref, force=True)

    return _window(cells, attempt, opts["parallel"], submit, done, ray.get,
                   opts["timeout_min"] * 60, cancel)  # fmt: skip


def run_plan(root: Path, path: Path, executor: str, parallel: int = 1, gpus: int = 0,
             cpus: int = 1, retries: int = 2, address: str | None = None,
             timeout_min: int = 240, partition: str | None = None, rerun: bool = False,
             ) -> dict[str, Any]:  # fmt: skip
    """`incbench grid run`: every planned cell on `executor`, failed ones retried; the status
    file (beside the plan) lists each cell as done or failed with every attempt. Cells already
    committed, or with a receipt `collect` would accept, are skipped unless `rerun`."""
    from incbench import io

    if executor not in EXECUTORS:
        raise GridError(f"--executor must be one of {', '.join(EXECUTORS)}")
    if parallel < 1 or retries < 0:
        raise GridError("--parallel >= 1 and --retries >= 0")
    record = _plan_at_head(root, path, "check it out (clean) or plan again")
    opts = {"parallel": parallel, "gpus": gpus, "cpus": cpus, "address": address,
            "timeout_min": timeout_min, "partition": partition}  # fmt: skip
    status_path = path.with_suffix(".status.json")
    start = time.time()
    cells = {c["name"]: c for c in record["cells"]}
    status: dict[str, Any] = {"plan": str(path), "commit": record["commit"], "executor": executor,
                              "parallel": parallel, "gpus": gpus, "retries": retries,
                              "cells": {n: {"state": "pending", "attempts": []} for n in cells}}  # fmt: skip
    todo = list(cells)
    if not rerun:  # a cell committed since, or with a receipt that still holds, is not rerun
        stale = stale_stages(root)
        for name in list(todo):
            receipt = _receipt(path, name)
            if name not in stale:
                status["cells"][name]["state"] = "already committed"
            elif receipt is not None and not check_cell(root, record, cells[name], receipt, stale):
                status["cells"][name]["state"] = "done (an earlier run; --rerun to run again)"
            else:
                continue
            todo.remove(name)
    io.write_json(status_path, status)  # every cell listed before any is dispatched
    for attempt in range(1, retries + 2):
        if not todo:
            break
        batch = [cells[n] for n in todo]
        if executor == "ray":
            receipts = _ray(str(root), record["commit"], batch, attempt, opts)
        else:
            folder = path.parent / "submitit"
            receipts = _submitit(executor, str(root), record["commit"], batch, attempt, opts,
                                 folder)  # fmt: skip
        todo = []
        for cell, receipt in zip(batch, receipts):
            io.write_json(receipt_path(path, cell["name"]), receipt)
            entry = status["cells"][cell["name"]]
            ok = receipt.get("rc") == 0 and not receipt.get("reason")
            keys = ("attempt", "rc", "reason", "host", "wall_s") + (() if ok else ("log_tail",))
            entry["attempts"].append({k: receipt[k] for k in keys if k in receipt})
            entry["state"] = "done" if ok else "failed"
            if not ok:
                todo.append(cell["name"])
        io.write_json(status_path, {**status, "wall_s": round(time.time() - start, 3)})
    status["wall_s"] = round(time.time() - start, 3)
    io.write_json(status_path, status)
    return status


# ---- collect -----------------------------------------------------------------------------------


def _provenance_reasons(root: Path, cell: dict, commit: str) -> list[str]:
    """A run's own provenance.json (written by incbench/provenance.py) must agree."""
    reasons = []
    for out in cell["outs"]:
        if Path(out).name != "provenance.json" or not (root / out).exists():
            continue
        git = (json.loads((root / out).read_text()).get("git")) or {}
        if "commit" not in git:
            continue  # a run outside the budget writes {"skipped": why}: nothing to check
        if git["commit"] != commit:
            reasons.append(f"{out}: produced at commit {git['commit']}, not the dispatch "
                           f"commit {commit}")  # fmt: skip
        if git.get("dirty"):
            reasons.append(f"{out}: produced from a checkout with uncommitted changes")
    return reasons


def check_cell(root: Path, record: dict, cell: dict, receipt: dict | None,
               stale: set[str]) -> list[str]:  # fmt: skip
    """Why the cell may not be committed (empty: it may)."""
    commit = record["commit"]
    if receipt is None:
        return ["no receipt: not run by `incbench grid run` / `incbench grid cell`"]
    if receipt.get("rc") != 0 or receipt.get("reason"):
        return [f"its last attempt failed: {receipt.get('reason') or receipt.get('rc')}"]
    reasons = []
    if receipt.get("commit") != commit:
        reasons.append(f"produced at commit {receipt.get('commit')}, not the dispatch commit "
                       f"{commit}")  # fmt: skip
    if receipt.get("dirty"):
        reasons.append("produced in a checkout with uncommitted changes")
    if changed := _changed(cell["inputs"], receipt.get("inputs") or {}):
        reasons.append(f"ran on inputs other than the plan's: {', '.join(changed)}")
    if changed := _changed(receipt.get("inputs") or {}, hash_paths(root, cell["deps"])):
        reasons.append(f"inputs changed since it ran: {', '.join(changed)}")
    if changed := _changed(receipt.get("outputs") or {}, hash_paths(root, cell["outs"])):
        reasons.append(f"outputs changed since it ran (written again by something else): "
                       f"{', '.join(changed)}")  # fmt: skip
    if waiting := [u for u in cell.get("upstream", []) if u in stale]:
        reasons.append(f"upstream stage(s) no longer match dvc.lock: {', '.join(waiting)}")
    return reasons + _provenance_reasons(root, cell, commit)


def collect(root: Path, path: Path) -> dict[str, Any]:
    """`incbench grid collect`: check every planned cell, then one `dvc commit` of the accepted."""
    from incbench import io

    record = _plan_at_head(root, path, "dvc.lock must be written at the commit that produced "
                           "the cells")  # fmt: skip
    stale = stale_stages(root)
    accepted, refused, current = [], {}, []
    for cell in record["cells"]:
        if cell["name"] not in stale:
            current.append(cell["name"])  # already committed (an earlier collect)
            continue
        receipt = _receipt(path, cell["name"])
        reasons = check_cell(root, record, cell, receipt, stale)
        if reasons:
            refused[cell["name"]] = reasons
        else:
            accepted.append(cell["name"])
    if accepted:
        _dvc(root, "commit", "--force", *accepted)
    after = stale_stages(root)
    result = {"plan": str(path), "commit": record["commit"], "accepted": accepted,
              "refused": refused, "already_committed": current,
              "still_stale": sorted(after & set(accepted)), "stale_after": sorted(after)}  # fmt: skip
    io.write_json(path.with_suffix(".collect.json"), result)
    return result
