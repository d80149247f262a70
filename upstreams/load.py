"""`load_upstream(spec)`: the frozen upstream a command line, a task run or a teacher names.

A spec is one of
    NAME            a registered upstream (`evalkit ls upstreams`), e.g. `fbank`
    DIR             an evalkit checkpoint folder: config.json + model.safetensors
    hf:DIR          a local Hugging Face transformers checkpoint
    s3prl:NAME      an s3prl upstream (optional dependency)

upstreams.hf and upstreams.s3prl import transformers / s3prl only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path

from upstreams.base import Upstream
from upstreams.checkpoint import load_checkpoint
from upstreams.hf import load_hf_upstream
from upstreams.registry import UPSTREAMS
from upstreams.s3prl import load_s3prl_upstream


def load_upstream(spec: str, device: str = "cpu", hf_padding: str = "exact") -> Upstream:
    """Build the upstream a spec names, in eval mode with gradients off (it is frozen); `hf_padding`: how an
    `hf:` GroupNorm model meets a padded batch (upstreams.hf.PADDING_MODES)."""
    if spec.startswith("hf:"):
        model = load_hf_upstream(spec[3:], padding=hf_padding)
    elif spec.startswith("s3prl:"):
        model = load_s3prl_upstream(spec[6:])
    elif Path(spec).is_dir() or "/" in spec or spec.startswith("."):
        model = load_checkpoint(Path(spec))
    else:
        model = UPSTREAMS.get(spec)()
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
