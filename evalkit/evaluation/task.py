"""Tasks are data: `tasks/<name>/task.yaml`, validated into a `TaskConfig`.

As in lm-evaluation-harness, a variant file may `include:` its parent (a path
relative to itself) and override a few keys; `version` is bumped on any change
that can move scores. Folders given with `--include-path` add tasks from
outside the package. Task *kinds* (classification, ctc, ...) are the code in
`evalkit/evaluation/kinds/`, registered in `KINDS`; a task names one and configures it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evalkit.core.errors import ConfigError
from evalkit.core.io import read_yaml
from evalkit.core.registry import Registry, suggest
from evalkit.core.resources import tasks_dir

if TYPE_CHECKING:
    from evalkit.metrics import Metric

TASKS_DIR = tasks_dir()
# The task kinds a YAML's `kind:` picks; lazy, so that reading a task loads no kind's code.
KINDS = Registry("task kind")
KINDS.register("classification", "evalkit.evaluation.kinds.classification:Classification")
KINDS.register("ctc", "evalkit.evaluation.kinds.ctc:CTC")
KINDS.register("verification", "evalkit.evaluation.kinds.verification:Verification")
KINDS.register("diarization", "evalkit.evaluation.kinds.diarization:Diarization")
KINDS.register("qbe", "evalkit.evaluation.kinds.qbe:QbE")


@dataclass
class HeadConfig:
    name: str  # how results refer to it, e.g. "linear" or "ecapa"
    type: str  # a registered head (evalkit.evaluation.heads.HEADS)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricConfig:
    name: str
    primary: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # e.g. collar for der

    def build(self) -> Metric:
        # deferred: the metrics import scipy; `evalkit ls tasks` lists task files without them
        from evalkit.metrics import metric_from_spec

        return metric_from_spec({"name": self.name, "primary": self.primary, **self.options})


@dataclass
class TaskConfig:
    name: str
    version: int
    kind: str
    corpus: str  # folder under --data holding the manifests
    description: str = ""
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "dev", "test": "test"})
    labels: dict[str, Any] = field(default_factory=dict)  # kind-specific: which record keys hold labels
    heads: list[HeadConfig] = field(default_factory=list)
    metrics: list[MetricConfig] = field(default_factory=list)
    featurizer: dict[str, Any] = field(default_factory=dict)  # layer_norm, layer
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adamw", "weight_decay": 0.0})
    lr_grid: list[float] = field(default_factory=lambda: [1e-3])
    steps: int | dict[str, int] = 1000  # or per suite profile: {smoke: 40, default: 1500}
    eval_every: int | None = None  # default: steps // 5
    batch_seconds: float = 60.0
    seed: int = 0
    source: str = ""  # the YAML file it came from

    def budget(self, profile: str | None) -> tuple[int, int]:
        """(steps, eval_every) for data of suite profile `profile`."""
        steps = self.steps
        if isinstance(steps, dict):
            steps = steps.get(profile or "default", steps.get("default", max(steps.values())))
        every = self.eval_every or max(1, steps // 5)
        return int(steps), int(min(every, steps))

    @property
    def primary_metric(self) -> MetricConfig:
        return next(m for m in self.metrics if m.primary)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(TaskConfig)} - {"source"}
_REQUIRED = ("name", "version", "kind", "corpus", "heads", "metrics")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(map(str, seen + (path,)))}).")
    data = read_yaml(path, "task") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task file is a YAML mapping of keys, got {type(data).__name__}.")
    if "include" in data:
        parent = _read_yaml((path.parent / str(data.pop("include"))).resolve(), seen + (path,))
        data = {**parent, **data}
    return data


def load_task_file(path: str | Path) -> TaskConfig:
    """Read, merge includes, and validate one task YAML; errors name the file and key."""
    path = Path(path).resolve()
    data = _read_yaml(path)
    _check_keys(data, path)
    heads, metrics = _heads_and_metrics(data, path)
    _check_values(data, heads, metrics, path)
    cfg = TaskConfig(**{**data, "heads": heads, "metrics": metrics}, source=str(path))
    _check_registered(cfg, path)
    return cfg


def _check_keys(data: dict, path: Path) -> None:
    """No unknown key, every required one, and a known kind."""
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        k = unknown[0]
        raise ConfigError(
            f"{path}: unknown key {k!r}.{suggest(k, _FIELDS)} Allowed keys: {', '.join(sorted(_FIELDS))}."
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{path}: missing required key(s) {', '.join(missing)}.")
    if data["kind"] not in KINDS:
        kinds = KINDS.names()
        raise ConfigError(
            f"{path}: kind {data['kind']!r} is not one of {', '.join(kinds)}.{suggest(data['kind'], kinds)}"
        )


def _heads_and_metrics(data: dict, path: Path) -> tuple[list[HeadConfig], list[MetricConfig]]:
    try:
        heads = [HeadConfig(**h) for h in data["heads"]]
        metrics = [
            MetricConfig(
                m["name"],
                bool(m.get("primary", False)),
                {k: v for k, v in m.items() if k not in ("name", "primary")},
            )
            if isinstance(m, dict) and "name" in m
            else MetricConfig(**m)
            for m in data["metrics"]
        ]
    except TypeError as e:
        raise ConfigError(
            f"{path}: bad head or metric entry ({e}); each head has name, type, args; "
            "each metric has name and optional primary."
        ) from None
    return heads, metrics


def _check_values(data: dict, heads: list[HeadConfig], metrics: list[MetricConfig], path: Path) -> None:
    if sum(m.primary for m in metrics) != 1:
        raise ConfigError(f"{path}: exactly one metric must have `primary: true`.")
    if not heads and data["kind"] != "qbe":
        raise ConfigError(f"{path}: key 'heads' is empty; a trained task needs at least one head.")
    if not isinstance(data["version"], int):
        raise ConfigError(f"{path}: key 'version' must be an integer, got {data['version']!r}.")
    _check_budget(data, path)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _check_budget(data: dict, path: Path) -> None:
    """Settings that would train nothing (or nonsense) are errors, not silent no-ops."""
    steps = data.get("steps", 1)
    if not (
        _positive_int(steps)
        or (isinstance(steps, dict) and steps and all(map(_positive_int, steps.values())))
    ):
        raise ConfigError(
            f"{path}: key 'steps' must be a positive integer or a mapping of suite profile to positive "
            f"integers, got {steps!r}."
        )
    grid = data.get("lr_grid", [1e-3])
    if not isinstance(grid, list) or not grid or not all(map(_positive_number, grid)):
        raise ConfigError(
            f"{path}: key 'lr_grid' must be a non-empty list of positive numbers, got {grid!r}."
        )
    if data.get("eval_every") is not None and not _positive_int(data["eval_every"]):
        raise ConfigError(f"{path}: key 'eval_every' must be a positive integer, got {data['eval_every']!r}.")
    if not _positive_number(data.get("batch_seconds", 60.0)):
        raise ConfigError(
            f"{path}: key 'batch_seconds' must be a positive number, got {data['batch_seconds']!r}."
        )
    _check_optimizer(data.get("optimizer", {"name": "adamw"}), path)


OPTIMIZERS = ("adamw",)  # what the trainer builds (evalkit/evaluation/trainer.py)


def _check_optimizer(optimizer, path: Path) -> None:
    if not isinstance(optimizer, dict):
        raise ConfigError(f"{path}: key 'optimizer' is a mapping (name, weight_decay), got {optimizer!r}.")
    unknown = [k for k in optimizer if k not in ("name", "weight_decay")]
    if unknown:
        raise ConfigError(
            f"{path}: optimizer key {unknown[0]!r} is unknown.{suggest(unknown[0], ('name', 'weight_decay'))}"
        )
    name = optimizer.get("name", "adamw")
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"{path}: optimizer {name!r} is not one the trainer implements ({', '.join(OPTIMIZERS)})."
            f"{suggest(str(name), OPTIMIZERS)}"
        )
    decay = optimizer.get("weight_decay", 0.0)
    if isinstance(decay, bool) or not isinstance(decay, int | float) or not math.isfinite(decay) or decay < 0:
        raise ConfigError(f"{path}: optimizer weight_decay must be a number >= 0, got {decay!r}.")


def _check_registered(cfg: TaskConfig, path: Path) -> None:
    # deferred: heads import torch and metrics scipy (0.4 s -> 4 s for `evalkit ls tasks`, which
    # reads this module but validates no task)
    from evalkit.evaluation.heads import HEADS
    from evalkit.metrics import METRICS

    for h in cfg.heads:
        if h.type not in HEADS:
            raise ConfigError(
                f"{path}: head type {h.type!r} is unknown.{suggest(h.type, HEADS.names())} "
                f"Known: {', '.join(HEADS.names())}."
            )
        _check_head_args(h, HEADS.get(h.type), path)
    for m in cfg.metrics:
        if m.name not in METRICS:
            raise ConfigError(f"{path}: metric {m.name!r} is unknown.{suggest(m.name, METRICS.names())}")
        m.build()  # checks its options


def _check_head_args(head: HeadConfig, build, path: Path) -> None:
    """A head's `args` are keyword arguments of its constructor: a typo is an error with a suggestion."""
    if not isinstance(head.args, dict):
        raise ConfigError(
            f"{path}: head {head.name!r}: args is a mapping of keyword arguments, got {head.args!r}."
        )
    params = inspect.signature(build).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in list(params.items())[1:] if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in head.args:
        if key not in known:
            raise ConfigError(
                f"{path}: head {head.name!r} ({head.type}) has no argument {key!r}.{suggest(key, known)} "
                f"Its arguments: {', '.join(known)}."
            )


def task_files(include_paths: list[str] | None = None) -> dict[str, Path]:
    """name -> task.yaml for the package's tasks and those under --include-path folders.

    A folder's `task.yaml` defines the task named after it; other `*.yaml` in it
    are variants named `<folder>_<stem>` unless they set `name` themselves.
    """
    found: dict[str, Path] = {}
    for root in [TASKS_DIR, *(Path(p) for p in include_paths or [])]:
        if not root.is_dir():
            raise ConfigError(f"{root}: --include-path must be a folder of task folders.")
        for y in sorted(root.glob("*/*.yaml")):
            name = _declared_name(y)
            found[name] = y
    return found


def _declared_name(path: Path) -> str:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        data = {}  # named after its folder; loading it reports what is wrong
    if isinstance(data, dict) and isinstance(data.get("name"), str) and path.name != "task.yaml":
        return data["name"]
    return path.parent.name if path.name == "task.yaml" else f"{path.parent.name}_{path.stem}"


def list_tasks(include_paths: list[str] | None = None) -> list[str]:
    return sorted(task_files(include_paths))


def load_task(name: str, include_paths: list[str] | None = None) -> TaskConfig:
    files = task_files(include_paths)
    if name not in files:
        raise ConfigError(f"Unknown task {name!r}.{suggest(name, files)} `evalkit ls tasks` lists them.")
    return load_task_file(files[name])
