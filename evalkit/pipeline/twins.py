"""Random-init twins: the same architecture with random weights, the control every SSL method needs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from evalkit.pipeline.plan import CONFIGS, PUBLISHED, UPSTREAM_PLAN
from upstreams.checkpoint import WEIGHTS_FILE, read_config, write_checkpoint
from upstreams.registry import UPSTREAMS

# Encoder settings with no effect on a model in eval mode: two recipes differing only here build the same upstream.
TRAINING_ONLY = ("dropout", "attention_dropout", "activation_dropout", "input_dropout", "layerdrop")


def _eval_architecture(encoder: dict) -> dict:
    return {
        part: ({k: v for k, v in spec.items() if k not in TRAINING_ONLY} if isinstance(spec, dict) else spec)
        for part, spec in encoder.items()
    }


def shared_twins(size: str) -> dict[str, list[str]]:
    """Random-init twins: {twin owner: every published upstream whose recipe builds the same encoder}.

    An upstream's architecture is its recipe's `encoder:` section less the settings that
    only act in training (dropout rates, layerdrop), so methods that share one (HuBERT,
    wav2vec 2.0 and BEST-RQ on the same Transformer, whatever their dropout) share one
    twin: the same weights evaluated once instead of three times.
    """
    owners: dict[str, list[str]] = {}
    by_arch: dict[str, str] = {}
    for name in PUBLISHED:
        src = CONFIGS / f"{UPSTREAM_PLAN[name][0]}-{size}.yaml"
        encoder = yaml.safe_load(src.read_text()).get("encoder") if src.is_file() else None
        key = json.dumps(_eval_architecture(encoder), sort_keys=True) if encoder else name
        owner = by_arch.setdefault(key, name)
        owners.setdefault(owner, []).append(name)
    return owners


def make_random_twin(trained: Path, out: Path, seed: int = 0, twin_of: list[str] | None = None) -> Path:
    """The same architecture as `trained` with random weights: the control every SSL method needs.

    `twin_of`: the upstreams it stands for (default: `trained` alone).
    """
    if (out / WEIGHTS_FILE).is_file():
        return out
    cfg = read_config(trained)
    torch.manual_seed(seed)
    model = UPSTREAMS.get(cfg["upstream"])(**cfg.get("config", {}))
    twin = {
        "upstream": cfg["upstream"],
        "config": cfg.get("config", {}),
        "pretraining": {"method": "random-init", "twin_of": ", ".join(twin_of or [trained.name])},
    }
    write_checkpoint(out, model.state_dict(), twin)
    return out
