"""`incbench new-method NAME`: write a documented method template into methods/."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from incbench import io
from incbench.config import ConfigError


def new_method(name: str, root: Path) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"method name {name!r}: use lower-case letters, digits and _ (e.g. ewc)")
    path = root / "methods" / f"{name}.py"
    if path.exists():
        raise ConfigError(f"{path} already exists; pick another name or edit that file")
    template = resources.files("incbench").joinpath("templates/method.txt").read_text()
    io.write_text(path, template.format(name=name))
    return path
