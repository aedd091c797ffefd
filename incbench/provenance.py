"""Where a result came from: code, params, packages, device, data hashes."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("incbench", "torch", "numpy", "pandas", "scikit-learn", "transformers", "peft", "dvc")


def git_commit(root: Path) -> dict[str, Any]:
    def git(*args):
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    # what the pipeline itself writes while it runs does not make the code dirty
    outputs = [":!results", ":!dvc.lock", ":!data", ":!models"]
    dirty = git("status", "--porcelain", "--", ".", *outputs)
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(dirty)}


def packages() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{name} ({os.cpu_count()} logical CPUs)"


def collect(root: Path, device: str, **extra: Any) -> dict[str, Any]:
    import torch

    return {
        "git": git_commit(root),
        "packages": packages(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }
