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
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
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
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalkitError(
            f"{path}: not valid JSON ({e}). Fix it, or put back the config.json saved with these weights."
        ) from None
    if not isinstance(config, dict):
        raise EvalkitError(f"{path}: expected a JSON object with keys upstream, config and pretraining.")
    if not isinstance(config.get("pretraining") or {}, dict):
        raise EvalkitError(
            f"{path}: key 'pretraining' must be an object (how the weights were made: method, steps, "
            f"finished, ...) or absent, got {config['pretraining']!r:.80}. Put back the config.json saved "
            "with these weights."
        )
    return config


def is_finished(folder: Path) -> bool:
    """Whether `folder` holds a pre-training run that reached its last step."""
    if not (folder / CONFIG_FILE).is_file():
        return False
    return bool((read_config(folder).get("pretraining") or {}).get("finished"))


def load_checkpoint(folder: Path) -> Upstream:
    """The upstream a checkpoint folder holds, with its weights (none needed for an upstream without any)."""
    cfg = read_config(folder)
    name = cfg.get("upstream")
    model = _build(folder / CONFIG_FILE, name, cfg.get("config", {}))
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        state = read_weights(weights)
        check_weights_fit(
            model.state_dict(), state, weights, f"upstream {name!r} as {folder / CONFIG_FILE} describes it"
        )
        missing, unexpected = model.load_state_dict(state, strict=False)
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


def _build(cfg_path: Path, name, settings) -> Upstream:
    """The registered upstream `name` built from config.json's `config`; errors name config.json."""
    if not isinstance(name, str):
        raise EvalkitError(f"{cfg_path}: key 'upstream' (the registered upstream name) is missing.")
    if not isinstance(settings, dict):
        raise EvalkitError(
            f"{cfg_path}: key 'config' must be an object of upstream {name!r}'s settings, got {settings!r}."
        )
    cls = UPSTREAMS.get(name)
    try:
        return cls(**settings)
    except (TypeError, ValueError, KeyError) as e:
        raise EvalkitError(
            f"{cfg_path}: upstream {name!r} cannot be built from key 'config' ({type(e).__name__}: {e}). "
            "Fix the settings, or put back the config.json saved with these weights."
        ) from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or corrupt file is an error that names it."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise EvalkitError(_unreadable(path, e)) from None


def weight_dtypes(path: Path) -> dict[str, str]:
    """The dtype (safetensors' name: F32, I64, ...) of each tensor of a safetensors file, read from
    its header only; a truncated or corrupt file is an error that names it."""
    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_slice(k).get_dtype() for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise EvalkitError(_unreadable(path, e)) from None


def _unreadable(path: Path, error: Exception) -> str:
    return (
        f"{path}: not a readable safetensors file ({error}); it is truncated or corrupt. Copy it again "
        "from where it was made, or save the model again."
    )


def check_weights_fit(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    """Refuse weights that would load as other numbers: another shape (another architecture or
    config), or integers where the model has floats (a cast would silently change them). Floats of
    another precision (float16, bfloat16) are cast, as a model saved in half precision is."""
    bad = []
    for key, tensor in state.items():
        ref = expected.get(key)
        if ref is None:
            continue
        if tuple(tensor.shape) != tuple(ref.shape):
            bad.append(f"{key} has shape {list(tensor.shape)} in the file, {list(ref.shape)} in the model")
        elif tensor.is_floating_point() != ref.is_floating_point():
            bad.append(f"{key} is {tensor.dtype} in the file, {ref.dtype} in the model")
    if bad:
        raise EvalkitError(
            f"{path}: {len(bad)} tensor(s) do not fit {what}: {'; '.join(bad[:3])}{f'; and {len(bad) - 3} more' if len(bad) > 3 else ''}. "
            "These weights belong to another model or config.json was changed: keep each model.safetensors "
            "with the config.json saved with it."
        )


def torch_load_file(error: BaseException) -> str | None:
    """The file that `torch.load` was reading when `error` was raised (found in its traceback), or None."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "load" and frame.f_code.co_filename.endswith(("torch/serialization.py",)):
            target = frame.f_locals.get("f")
            if isinstance(target, (str, Path)):
                return str(target)
        tb = tb.tb_next
    return None


def refused_pickle(error: Exception, fallback: str, advice: str) -> EvalkitError:
    """The error for a pickle that `torch.load(weights_only=True)` refused (code to run, objects
    other than tensors and plain values, or no pickle at all): names the file, says why, and what
    to do; never suggests weights_only=False."""
    path = torch_load_file(error) or fallback
    text = str(error)
    reason = text.partition("WeightsUnpickler error:")[2].strip() if "WeightsUnpickler error:" in text else ""
    reason = re.split(r"\s+Please use |\n\s*\n", reason)[0].strip() if reason else ""
    return EvalkitError(
        f"{path}: torch.load(weights_only=True) refused this file{f' ({reason})' if reason else ''}. "
        "evalkit loads only weights (tensors and plain values), never a pickle that could run code. "
        f"If the file is corrupt, replace it; if it comes from a source you trust, {advice}"
    )
