"""Backbones: the models every method updates. One module per backbone in this package.

A backbone module defines:
  Params            frozen dataclass of architecture and training-recipe knobs (params.yaml
                    `backbones.<name>` overrides the defaults)
  build(params, n_users, n_items, side, seed) -> nn.Module   (a freshly initialised model)

and the model it returns implements (see ARCHITECTURE.md, "Backbone interface"):
  groups()                     ordered [(name, [Parameter, ...])], input side first, "head" last
  grow(n_users, n_items)       append rows for new users/items; old rows untouched
  score(users, items)          one logit per (user, item) pair
  score_all(users, n_items)    logits [len(users), n_items] over the catalogue prefix
  item_index(n_items)          the catalogue side computed once (what serving would cache)
  score_index(users, index)    logits against such an index (score_all = both in one call)
  config()                     JSON-able dict that `build` can rebuild the same shape from
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from incbench.registry import RegistryError


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> ModuleType:
    if name not in names():
        raise RegistryError(f"unknown backbone {name!r}; registered: {names()}")
    return importlib.import_module(f"incbench.backbones.{name}")
