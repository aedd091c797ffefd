"""dvc.yaml's dependency lists cannot drift from the code: each stage's harness modules are
derived from its entry point's imports (an AST walk, function-local imports included) and
must all be deps of the stage (a file or a folder above it)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# stage -> the module implementing its command (`incbench <command>` only dispatches to it)
ENTRY = {
    "fetch": "incbench.fetch",
    "split": "incbench.split",
    "reference": "incbench.references",
    "pretrain": "incbench.stages",
    "tune": "incbench.tuning",
    "pretrain_inner": "incbench.tuning",
    "run": "incbench.stages",
    "calibrate": "incbench.calibration",
    "report": "incbench.report",
}


def _path(module: str) -> Path | None:
    base = REPO / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    path = _path(module)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("incbench")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("incbench"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if _path(f"{node.module}.{a.name}")}  # fmt: skip
    return {m for m in found if _path(m)}


def harness_modules(entry: str) -> set[str]:
    """Every incbench module `entry` can import, transitively (the package root excluded)."""
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += sorted(_imports(module) - seen)
    return {m for m in seen if m != "incbench"}


def missing_deps(stages: dict) -> dict[str, list[str]]:
    out = {}
    for name, entry in ENTRY.items():
        stage = stages[name].get("do", stages[name])
        deps = [str(d) for d in stage.get("deps", [])]
        files = {str(_path(m).relative_to(REPO)) for m in harness_modules(entry)}
        lacking = sorted(f for f in files
                         if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))  # fmt: skip
        if lacking:
            out[name] = lacking
    return out


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_stage_depends_on_every_harness_module_it_imports():
    assert missing_deps(_stages()) == {}


def test_a_removed_dependency_is_caught():
    stages = copy.deepcopy(_stages())
    stages["run"]["deps"].remove("incbench/train.py")
    stages["split"]["do"]["deps"].remove("incbench/data.py")
    assert missing_deps(stages) == {"run": ["incbench/train.py"], "split": ["incbench/data.py"]}


def test_split_and_fetch_depend_on_the_dataset_file():
    stages = _stages()
    for name in ("fetch", "split"):
        assert "datasets/${key}.py" in stages[name]["do"]["deps"]


def test_a_tuning_budget_change_leaves_pretrain_and_run_up_to_date():
    """pretrain and run track only the budget keys they use; tuning_trials reaches tune only."""
    stages = _stages()

    def tracks(stage, key):
        params = [str(p) for p in stage.get("params", [])]
        return any(key == p or key.startswith(p + ".") for p in params)

    key = "budget.${item.backbone}.tuning_trials"
    assert not tracks(stages["pretrain"], key) and not tracks(stages["run"], key)
    assert tracks(stages["tune"], key)
    for name in ("pretrain", "run", "tune"):
        assert tracks(stages[name], "budget.${item.backbone}.max_steps")
        assert tracks(stages[name], "budget.${item.backbone}.seeds")


def test_no_import_circles():
    """The module graph (function-local imports included) has no cycle."""
    import pkgutil

    import incbench
    import incbench.backbones

    modules = [f"incbench.{m.name}" for m in pkgutil.iter_modules(incbench.__path__)]
    modules += [
        f"incbench.backbones.{m.name}" for m in pkgutil.iter_modules(incbench.backbones.__path__)
    ]
    graph = {m: _imports(m) - {m, "incbench"} for m in modules}

    def reaches(start, target, seen):
        for nxt in graph.get(start, ()):
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, target, seen):
                    return True
        return False

    assert [m for m in modules if reaches(m, m, set())] == []


def test_backbone_stages_depend_on_their_own_backbone_only():
    """A backbone is loaded by name (importlib, invisible to the AST walk above): each stage
    about one backbone depends on that backbone's file and the package's shared files, not on
    the folder, so changing text.py leaves every mf result up to date."""
    stages = _stages()
    own = {"pretrain": "${item.backbone}", "pretrain_inner": "${item.backbone}",
           "tune": "${item.backbone}", "run": "${item.backbone}", "calibrate": "${item}"}  # fmt: skip
    for name, key in own.items():
        deps = [str(d) for d in stages[name].get("do", stages[name])["deps"]]
        backbone_deps = {d for d in deps if d.startswith("incbench/backbones")}
        assert backbone_deps == {"incbench/backbones/__init__.py", "incbench/backbones/base.py",
                                 f"incbench/backbones/{key}.py"}, name  # fmt: skip
