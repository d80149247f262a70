"""Upstream encoders: the registry and `load_upstream(spec)`.

A spec is one of
    NAME            a registered upstream (`evalkit ls upstreams`), e.g. `fbank`
    DIR             an evalkit checkpoint folder: config.json + model.safetensors
    hf:DIR          a local Hugging Face transformers checkpoint
    s3prl:NAME      an s3prl upstream (optional dependency)
"""

from __future__ import annotations

from pathlib import Path

from evalkit.core.registry import Registry
from upstreams.base import Upstream, padding_mask
from upstreams.checkpoint import load_checkpoint
from upstreams.registry import UPSTREAMS

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


__all__ = ["METHODS", "UPSTREAMS", "Upstream", "load_upstream", "load_checkpoint", "padding_mask"]
