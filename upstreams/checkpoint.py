"""The evalkit checkpoint folder, written and read here only: `config.json` + `model.safetensors`.

    config.json        {"upstream": NAME, "config": {...}, "pretraining": {...}}
    model.safetensors  the upstream's state dict (never pickle)

NAME is a registered upstream (`upstreams.registry.UPSTREAMS`) and `config` its
keyword arguments; `pretraining` says how the weights were made (`evalkit
pretrain` writes the method, the recipe, steps and audio seen; a random-init
twin writes `method: random-init` and whom it stands for).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_open, atomic_write_text
from upstreams.base import Upstream
from upstreams.registry import UPSTREAMS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_checkpoint(folder: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    """The weights, then config.json, each atomically: a reader never sees half a file, and a
    folder whose config.json says `finished` has the weights that go with it."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_open(folder / WEIGHTS_FILE, "wb") as f:
        f.write(safetensors_bytes(weights))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=1))


def read_config(folder: Path) -> dict:
    """config.json of a checkpoint folder; errors name the file and say what it should hold."""
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise EvalkitError(f"{folder}: no such checkpoint folder (expected config.json + model.safetensors).")
    if not path.is_file():
        raise EvalkitError(
            f"{path}: missing. An evalkit checkpoint folder holds config.json and model.safetensors; "
            "for a transformers folder use --upstream hf:DIR."
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EvalkitError(f"{path}: not valid JSON ({e.msg}).") from None
    if not isinstance(config, dict):
        raise EvalkitError(f"{path}: expected a JSON object with keys upstream, config and pretraining.")
    return config


def is_finished(folder: Path) -> bool:
    """Whether `folder` holds a pre-training run that reached its last step."""
    if not (folder / CONFIG_FILE).is_file():
        return False
    return bool(read_config(folder).get("pretraining", {}).get("finished"))


def load_checkpoint(folder: Path) -> Upstream:
    """The upstream a checkpoint folder holds, with its weights (none needed for an upstream without any)."""
    cfg = read_config(folder)
    cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    name = cfg.get("upstream")
    if not isinstance(name, str):
        raise EvalkitError(f"{cfg_path}: key 'upstream' (the registered upstream name) is missing.")
    model = UPSTREAMS.get(name)(**cfg.get("config", {}))
    if weights.is_file():
        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        if missing or unexpected:
            raise EvalkitError(
                f"{weights}: weights do not fit upstream {name!r} (missing {missing[:3]}, unexpected {unexpected[:3]})."
            )
    elif any(True for _ in model.parameters()):
        raise EvalkitError(f"{weights}: missing; upstream {name!r} has weights to load.")
    model.checkpoint = str(folder)
    pre = cfg.get("pretraining") or {}
    # What the leaderboard shows of how it was made (not the whole recipe).
    model.pretraining = {
        k: pre[k] for k in ("method", "steps", "wall_time_s", "audio_seconds", "twin_of") if k in pre
    }
    return model
