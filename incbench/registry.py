"""Plugins found by file name: `methods/<name>.py` and `datasets/<name>.py`.

Each file is loaded by path (never imported as a package: a package named `datasets` would
shadow Hugging Face's). Adding a plugin is adding a file; nothing central is edited.
Modules are cached per path and modification time, and loading one never touches another.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from incbench import IncbenchError
from incbench.config import project_root


class RegistryError(IncbenchError):
    pass


_CACHE: dict[tuple[str, float], ModuleType] = {}


def plugin_dir(kind: str, root: Path | None = None) -> Path:
    return (root or project_root()) / kind


def names(kind: str, root: Path | None = None) -> list[str]:
    """Registered plugin names of `kind` ('methods' or 'datasets'), sorted."""
    folder = plugin_dir(kind, root)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))


def load(kind: str, name: str, root: Path | None = None) -> ModuleType:
    folder = plugin_dir(kind, root)
    path = folder / f"{name}.py"
    if not path.is_file():
        known = names(kind, root)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown {kind[:-1]} {name!r}: no file {path}.{hint} Registered: {known}. "
            f"To add one, create {kind}/{name}.py"
            + (" (incbench new-method NAME writes a template)" if kind == "methods" else "")
        )
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _CACHE:
        return _CACHE[key]
    mod_name = f"incbench_plugins.{kind}.{name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses need the module registered while executing
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise RegistryError(f"{path} failed to load: {type(exc).__name__}: {exc}") from exc
    _CACHE[key] = module
    return module
