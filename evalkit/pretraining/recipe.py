"""A pre-training recipe (`configs/pretrain/<method>-<size>.yaml`): its schema, checked on reading.

Errors name the file and the key, with a "did you mean"; YAML values are checked
against the fields' types (YAML reads `5e-4` as text). `build_objective` turns a
recipe into its method's `Objective`, which checks its own `objective:` section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from evalkit.core.config import SerialisableConfig, check_choice
from evalkit.core.errors import ConfigError
from evalkit.core.io import read_yaml
from evalkit.core.registry import suggest
from evalkit.core.resources import pretrain_recipe
from evalkit.pretraining.data import DataConfig
from upstreams.methods import METHODS
from upstreams.modules import FrontendConfig
from upstreams.modules.context import EncoderConfig
from upstreams.objective import Objective


@dataclass
class OptimConfig(SerialisableConfig):
    lr: float = 5.0e-4
    warmup_steps: int = 1000
    max_steps: int = 10000
    schedule: str = "cosine"  # decay after warm-up: "cosine" | "linear", down to min_lr_ratio × lr
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01  # matrices only; biases, norms and embeddings are not decayed
    clip_grad: float = 1.0  # max gradient norm; 0 turns clipping off (the norm is still logged)
    accumulate: int = 1  # micro-batches per optimizer step
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-6


@dataclass
class TrainConfig(SerialisableConfig):
    bf16: bool = True  # bf16 autocast (fp16 is unusably slow on CPU)
    log_every: int = 20
    checkpoint_every: int = 500
    seed: int = 0


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
TOP_KEYS = ("method", "encoder", "objective", *SECTIONS)
ZERO_ALLOWED = (
    "min_seconds",
    "workers",
    "warmup_steps",
    "min_lr_ratio",
    "weight_decay",
    "clip_grad",
    "eps",
    "seed",
)


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
            name: _typed(cls.from_dict(raw.get(name) or {}, name), name) for name, cls in SECTIONS.items()
        }
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict):
        raise ConfigError(f"{source}: objective must be a mapping of {method}'s settings.")
    cfg = PretrainConfig(method, encoder, objective, source=source, **sections)
    with _in_file(source):
        check_choice("optim", "schedule", cfg.optim.schedule, ("cosine", "linear"))
    return cfg


@contextlib.contextmanager
def _in_file(source: str) -> Iterator[None]:
    """Prefixes ConfigErrors raised inside with the recipe's file name."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _typed(section: SerialisableConfig, name: str) -> SerialisableConfig:
    """Checks every value against its field's type (YAML reads `5e-4` as text: it needs `5.0e-4`)."""
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        kind = str(f.type)
        ok = {
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(kind, isinstance(value, list) and all(isinstance(v, int | float) for v in value))
        if not ok:
            hint = (
                " (YAML reads 5e-4 as text; write 5.0e-4)"
                if isinstance(value, str) and kind == "float"
                else ""
            )
            raise ConfigError(f"{name}.{f.name} must be {kind}; got {value!r}{hint}.")
        if kind == "float":
            setattr(section, f.name, float(value))
        if kind in ("int", "float") and (value < 0 or (value == 0 and f.name not in ZERO_ALLOWED)):
            raise ConfigError(
                f"{name}.{f.name} must be {'>= 0' if f.name in ZERO_ALLOWED else '> 0'}; got {value!r}."
            )
    return section


def build_objective(cfg: PretrainConfig) -> Objective:
    """The method's objective; a method checks its own `objective:` settings, and errors name the recipe."""
    with _in_file(cfg.source):
        return METHODS.get(cfg.method)(cfg.encoder, **cfg.objective)
