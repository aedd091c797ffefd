"""Checkpoints: safetensors weights + a JSON config (never pickle), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from incbench import IncbenchError, io


def save_model(model: nn.Module, backbone: str, folder: Path) -> None:
    with io.atomic_dir(folder) as build:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(build / "model.safetensors"))
        io.write_json(build / "config.json", {"backbone": backbone, **model.config()})


def load_model(folder: Path, device: str = "cpu") -> tuple[str, nn.Module]:
    from incbench import backbones
    from incbench.config import from_mapping

    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise IncbenchError(f"no model at {folder}: run the pretrain stage first (dvc repro)")
    cfg = json.loads(cfg_path.read_text())
    module = backbones.get(cfg["backbone"])
    params = from_mapping(module.Params, cfg["params"], f"{folder}/config.json params")
    model = module.build(params, cfg["n_users"], cfg["n_items"], seed=0, config=cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    return cfg["backbone"], model.to(device).eval()
