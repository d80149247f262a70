"""A pre-training recipe (`configs/pretrain/<method>-<size>.yaml`): its schema, checked on reading.

Errors name the file and the key, with a "did you mean"; each section's values are
checked against its fields' types and rules (`evalkit.core.config`; YAML reads `5e-4` as text). `build_objective` turns a
recipe into its method's `Objective`, which checks its own `objective:` section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from evalkit.core.config import SerialisableConfig, rule
from evalkit.core.errors import ConfigError
from evalkit.core.io import read_yaml
from evalkit.core.registry import suggest
from evalkit.core.resources import pretrain_recipe
from evalkit.pretraining.data import DataConfig
from upstreams.methods import METHODS
from upstreams.modules import FrontendConfig
from upstreams.modules.context import EncoderConfig
from upstreams.objective import Objective

POSITIVE, NOT_NEGATIVE = rule(above=0), rule(min=0)


@dataclass
class OptimConfig(SerialisableConfig):
    lr: float = field(default=5.0e-4, metadata=POSITIVE)
    warmup_steps: int = field(default=1000, metadata=NOT_NEGATIVE)
    max_steps: int = field(default=10000, metadata=POSITIVE)
    # decay after warm-up, down to min_lr_ratio × lr
    schedule: str = field(default="cosine", metadata=rule(choices=("cosine", "linear")))
    min_lr_ratio: float = field(default=0.0, metadata=rule(min=0, max=1))  # 1: a constant lr after warm-up
    weight_decay: float = field(default=0.01, metadata=NOT_NEGATIVE)  # matrices only, not biases/norms
    clip_grad: float = field(default=1.0, metadata=NOT_NEGATIVE)  # max gradient norm; 0: no clipping
    accumulate: int = field(default=1, metadata=POSITIVE)  # micro-batches per optimizer step
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98], metadata=rule(min=0, below=1))
    eps: float = field(default=1.0e-6, metadata=NOT_NEGATIVE)

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers (Adam's beta1, beta2); got {self.betas!r}.")


@dataclass
class TrainConfig(SerialisableConfig):
    # bf16 autocast: true, false, or "auto": where the device computes bf16 natively (a CUDA GPU that supports
    # it; a CPU with AVX-512 BF16 or AMX), else fp32. A CPU without them emulates bf16: on the 2-core AVX2
    # machine a 1024² bf16 matmul ran at 1.0 GFLOP/s against 162 in fp32, and a tiny recipe's training step
    # 9-10x slower under autocast (bench/precision.py, 2026-12-07). fp16 is unusably slow on CPU.
    bf16: bool | str = field(default="auto", metadata=rule(choices=(True, False, "auto")))
    log_every: int = field(default=20, metadata=POSITIVE)
    checkpoint_every: int = field(default=500, metadata=POSITIVE)
    seed: int = field(default=0, metadata=NOT_NEGATIVE)


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
TOP_KEYS = ("method", "encoder", "objective", *SECTIONS)


@dataclass
class PretrainConfig:
    """A validated recipe: `configs/pretrain/<method>-<size>.yaml`."""

    method: str
    encoder: dict  # SSLEncoder kwargs: {"frontend": {...}, "encoder": {...}}
    objective: dict  # the method's keyword arguments
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    source: str = "<dict>"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "encoder": self.encoder,
            "objective": self.objective,
            **{name: getattr(self, name).to_dict() for name in SECTIONS},
        }


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Reads and validates a recipe; errors name the file and the key, with a "did you mean"."""
    path = pretrain_recipe(path)  # a file, or the name of a shipped recipe (`hubert-tiny`)
    raw = read_yaml(path, "recipe")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}.")
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, source: str = "<dict>") -> PretrainConfig:
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r}.{suggest(str(key), TOP_KEYS)} "
                f"Known keys: {', '.join(TOP_KEYS)}."
            )
    method = raw.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(
            f"{source}: method {method!r} is not one of {', '.join(METHODS.names())}."
            f"{suggest(str(method), METHODS.names())}"
        )
    encoder = raw.get("encoder") or {}
    if not isinstance(encoder, dict):
        raise ConfigError(f"{source}: encoder must be a mapping with keys frontend and encoder.")
    for key in encoder:
        if key not in ("frontend", "encoder"):
            raise ConfigError(
                f"{source}: unknown key encoder.{key}.{suggest(str(key), ('frontend', 'encoder'))} "
                "Known keys: frontend, encoder."
            )
    with _in_file(source):
        encoder = {
            "frontend": FrontendConfig.from_dict(encoder.get("frontend") or {}, "encoder.frontend").to_dict(),
            "encoder": EncoderConfig.from_dict(encoder.get("encoder") or {}, "encoder.encoder").to_dict(),
        }
        sections = {
            name: _as_floats(cls.from_dict(raw.get(name) or {}, name)) for name, cls in SECTIONS.items()
        }
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict):
        raise ConfigError(f"{source}: objective must be a mapping of {method}'s settings.")
    return PretrainConfig(method, encoder, objective, source=source, **sections)


@contextlib.contextmanager
def _in_file(source: str) -> Iterator[None]:
    """Prefixes ConfigErrors raised inside with the recipe's file name."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _as_floats(section: SerialisableConfig) -> SerialisableConfig:
    """Float fields hold floats (a recipe may write `lr: 1`), as recipes saved in checkpoints always had."""
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        if f.type == "float":
            setattr(section, f.name, float(getattr(section, f.name)))
    return section


def check_objective(cfg: PretrainConfig) -> None:
    """The recipe's `objective:` section against its method's settings schema, without building the
    model or loading the runs it builds on (a teacher, earlier targets): what `evalkit validate` checks."""
    schema = METHODS.get(cfg.method).settings_class
    if schema is not None:
        with _in_file(cfg.source):
            schema.from_dict(cfg.objective, where="objective")


def build_objective(cfg: PretrainConfig) -> Objective:
    """The method's objective; a method checks its own `objective:` settings, and errors name the recipe."""
    with _in_file(cfg.source):
        return METHODS.get(cfg.method)(cfg.encoder, **cfg.objective)
