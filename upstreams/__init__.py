"""Upstream encoders: the registry and `load_upstream(spec)`.

A spec is one of
    NAME            a registered upstream (`evalkit ls upstreams`), e.g. `fbank`
    DIR             an evalkit checkpoint folder: config.json + model.safetensors
    hf:DIR          a local Hugging Face transformers checkpoint
    s3prl:NAME      an s3prl upstream (optional dependency)
"""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.registry import Registry
from upstreams.base import Upstream, padding_mask

UPSTREAMS = Registry("upstream")
"""name -> a factory `f(**config) -> Upstream` (lazy "module:attr" entries allowed)."""

UPSTREAMS.register("fbank", "upstreams.baselines:FbankUpstream")
UPSTREAMS.register("fbank_context", "upstreams.baselines:FbankContextUpstream")
UPSTREAMS.register("random_transformer", "upstreams.encoder:random_transformer")
UPSTREAMS.register("encoder", "upstreams.encoder:SSLEncoder")

METHODS = Registry("method")
"""Pre-training method -> its `upstreams.objective.Objective` class (`evalkit pretrain`'s `method:`)."""

METHODS.register("hubert", "upstreams.hubert:HuBERT")
METHODS.register("wav2vec2", "upstreams.wav2vec2:Wav2Vec2")
METHODS.register("bestrq", "upstreams.bestrq:BestRQ")
METHODS.register("distilhubert", "upstreams.distilhubert:DistilHuBERT")


def load_upstream(spec: str, device: str = "cpu") -> Upstream:
    """Build the upstream a spec names, in eval mode with gradients off (it is frozen)."""
    if spec.startswith("hf:"):
        from upstreams.hf import load_hf_upstream

        model = load_hf_upstream(spec[3:])
    elif spec.startswith("s3prl:"):
        from upstreams.s3prl import load_s3prl_upstream

        model = load_s3prl_upstream(spec[6:])
    elif Path(spec).is_dir() or "/" in spec or spec.startswith("."):
        model = load_checkpoint(Path(spec))
    else:
        model = UPSTREAMS.get(spec)()
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_checkpoint(folder: Path) -> Upstream:
    """An evalkit checkpoint: `config.json` names a registered upstream and its config."""
    cfg_path = folder / "config.json"
    weights = folder / "model.safetensors"
    if not folder.is_dir():
        raise EvalkitError(f"{folder}: no such checkpoint folder (expected config.json + model.safetensors).")
    if not cfg_path.is_file():
        raise EvalkitError(
            f"{cfg_path}: missing. An evalkit checkpoint folder holds config.json and model.safetensors; "
            "for a transformers folder use --upstream hf:DIR."
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise EvalkitError(f"{cfg_path}: not valid JSON ({e.msg}).") from None
    name = cfg.get("upstream")
    if not isinstance(name, str):
        raise EvalkitError(f"{cfg_path}: key 'upstream' (the registered upstream name) is missing.")
    model = UPSTREAMS.get(name)(**cfg.get("config", {}))
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(weights)
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


__all__ = ["METHODS", "UPSTREAMS", "Upstream", "load_upstream", "load_checkpoint", "padding_mask"]
