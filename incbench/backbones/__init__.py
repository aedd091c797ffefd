"""Backbones: the models every method updates. One module per backbone in this package.

The contract is `base.py` (read it to add a backbone): a module defines `Params` (a frozen
dataclass extending `base.Recipe`; params.yaml `backbones.<name>` overrides its defaults) and
`build(params, n_users, n_items, side=None, seed=0, config=None) -> base.Backbone`. `base` is
not a backbone; `names()` lists the others.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from incbench.registry import RegistryError


def names() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name != "base"
    )


def get(name: str) -> ModuleType:
    if name not in names():
        raise RegistryError(f"unknown backbone {name!r}; registered: {names()}")
    return importlib.import_module(f"incbench.backbones.{name}")
