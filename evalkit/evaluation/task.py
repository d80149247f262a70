"""Tasks are data: `tasks/<name>/task.yaml`, validated into a `TaskConfig`.

As in lm-evaluation-harness, a variant file may `include:` its parent (a path
relative to itself) and override a few keys; `version` is bumped on any change
that can move scores. Folders given with `--include-path` add tasks from
outside the package. Task *kinds* (classification, ctc, ...) are the code in
`evalkit/evaluation/kinds/`, registered in `KINDS`; a task names one and configures it.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from evalkit.core.audio import AudioFilter
from evalkit.core.config import SerialisableConfig, check_value, rule
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


OPTIMIZERS = ("adamw", "adam")  # what the trainer builds (evalkit/evaluation/trainer.py)
# How the learning rate moves over the steps (evalkit/evaluation/trainer.py `make_optimizer`).
SCHEDULES = {
    "warmup_cosine": "linear warm-up over the first 5% of the steps, then cosine decay to 0 (evalkit's)",
    "constant": "the learning rate of the grid at every step (s3prl's SUPERB recipes: no scheduler)",
}
# Whose recipe a task's training settings follow. The leaderboard prints the official SUPERB score only
# for results of `s3prl` tasks on the real corpora (evalkit/leaderboard/build.py).
RECIPES = {
    "evalkit": "evalkit's own budget (steps, grid, heads sized for a CPU)",
    "s3prl": "s3prl's SUPERB downstream recipe, each value from its config with the source in the task file",
}
SAMPLERS = {
    "shuffled": "every training utterance once per epoch, in a random order",
    "balanced": "utterances drawn with replacement, each class equally likely (s3prl's KS: "
    "WeightedRandomSampler with weight 1 / class count)",
}
POSITIVE = rule(above=0)


@dataclass
class HeadConfig(SerialisableConfig):
    name: str  # how results refer to it, e.g. "linear" or "ecapa"
    type: str  # a registered head (evalkit.evaluation.heads.HEADS)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the head's constructor


@dataclass
class MetricConfig(SerialisableConfig):
    name: str
    primary: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # e.g. collar for der

    def build(self) -> Metric:
        # deferred: the metrics import scipy; `evalkit ls tasks` lists task files without them
        from evalkit.metrics import metric_from_spec

        return metric_from_spec({"name": self.name, "primary": self.primary, **self.options})


@dataclass
class OptimizerConfig(SerialisableConfig):
    """The schema of a task's `optimizer:` mapping (the task keeps the mapping as written)."""

    name: str = field(default="adamw", metadata=rule(choices=OPTIMIZERS))
    weight_decay: float = field(default=0.0, metadata=rule(min=0))


@dataclass
class FeaturizerConfig(SerialisableConfig):
    """The schema of a task's `featurizer:` mapping (the task keeps the mapping as written)."""

    layer: int | None = None  # one hidden state instead of the learned weighted sum (checked against the
    # upstream's layer count when it is known)
    layer_norm: bool = False  # normalise each layer over D before weighting


@dataclass
class BatchConfig(SerialisableConfig):
    """The schema of a task's `batch:` mapping: training batches counted in utterances, as s3prl counts
    them (without it, batches hold `batch_seconds` of padded audio)."""

    utterances: int = field(metadata=rule(above=0))  # per forward pass
    accumulate: int = field(default=1, metadata=rule(above=0))  # forward passes per optimiser step
    # batches of neighbours in duration order, the batches shuffled (s3prl's PR, ASR, SF buckets);
    # otherwise utterances in a random order
    bucketing: bool = False


@dataclass
class SpecAugConfig(SerialisableConfig):
    """The schema of a task's `specaug:` mapping: SpecAugment on the weighted sum of the upstream's layers,
    in training only (s3prl's `specaug:` block, applied after the featurizer, masks set to zero).

    Widths are drawn from [low, high) frames (time) or feature dimensions (freq), per utterance;
    `time_warp` is the warp window in frames (0: none)."""

    time_warp: int = field(default=5, metadata=rule(min=0))
    freq_mask_width: list[int] = field(default_factory=lambda: [0, 50], metadata=rule(min=0))
    freq_masks: int = field(default=4, metadata=rule(min=0))
    time_mask_width: list[int] = field(default_factory=lambda: [0, 40], metadata=rule(min=0))
    time_masks: int = field(default=2, metadata=rule(min=0))

    def __post_init__(self) -> None:
        for key in ("freq_mask_width", "time_mask_width"):
            width = getattr(self, key)
            if len(width) != 2 or not width[0] < width[1]:
                raise ConfigError(f"specaug.{key} = {width!r}: give [low, high] with low < high.")


@dataclass
class CropConfig(SerialisableConfig):
    """The schema of a task's `crop:` mapping: training utterances read as s3prl's SID, ASV and KS read
    them. Each time an utterance is drawn, its audio (silence removed first where the task says
    `remove_silence`) is cut to a random window of `seconds` when longer, and the upstream runs on
    that window: the train split's features are computed on the fly (dev and test stay whole, and
    cached). Utterances whose manifest duration is under `min_seconds` leave the training set."""

    seconds: float = field(metadata=rule(above=0))
    min_seconds: float = field(default=0.0, metadata=rule(min=0))


@dataclass
class TaskConfig(SerialisableConfig):
    """A task file's schema: types and bounds of every key (settings that would train nothing are
    errors, not silent no-ops); `load_task_file` adds the checks against registries (kind, heads,
    metrics)."""

    required_keys: ClassVar[tuple[str, ...]] = ("heads", "metrics")

    name: str
    version: int
    kind: str
    corpus: str  # folder under --data holding the manifests
    description: str = ""
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "dev", "test": "test"})
    labels: dict[str, Any] = field(default_factory=dict)  # kind-specific: which record keys hold labels
    heads: list[HeadConfig] = field(default_factory=list)
    metrics: list[MetricConfig] = field(default_factory=list)
    featurizer: dict[str, Any] = field(default_factory=dict, metadata=rule(schema=FeaturizerConfig))
    optimizer: dict[str, Any] = field(
        default_factory=lambda: {"name": "adamw", "weight_decay": 0.0}, metadata=rule(schema=OptimizerConfig)
    )
    lr_grid: list[float] = field(default_factory=lambda: [1e-3], metadata=rule(above=0, nonempty=True))
    # or per suite profile: {smoke: 40, default: 1500}
    steps: int | dict[str, int] = field(default=1000, metadata=rule(above=0, nonempty=True))
    eval_every: int | None = field(default=None, metadata=POSITIVE)  # default: steps // 5
    batch_seconds: float = field(default=60.0, metadata=POSITIVE)  # training (without `batch:`) and scoring
    recipe: str = field(default="evalkit", metadata=rule(choices=tuple(RECIPES)))
    # recipe s3prl: where the task still differs from s3prl's recipe, one sentence each (the leaderboard
    # prints them under the table, and the official SUPERB score waits until no task has any)
    deviations: list[str] = field(default_factory=list)
    schedule: str = field(default="warmup_cosine", metadata=rule(choices=tuple(SCHEDULES)))
    gradient_clipping: float = field(default=5.0, metadata=POSITIVE)  # max global norm, per run
    batch: BatchConfig | None = None  # training batches in utterances (None: `batch_seconds` of audio)
    sampler: str = field(default="shuffled", metadata=rule(choices=tuple(SAMPLERS)))
    specaug: SpecAugConfig | None = None  # None: no SpecAugment
    crop: CropConfig | None = None  # random training crops, the upstream run on each (None: whole utterances)
    # what every split's audio goes through before the upstream, as s3prl's dataset effects (KS, QbE, ASV):
    # sox's gain in dB, then its silence removal (`evalkit.core.audio.sox_silence`); training crops are cut
    # from what is left, and dev and test are cached from it under a cache folder of their own
    gain_db: float = 0.0
    remove_silence: bool = False

    @property
    def audio(self) -> AudioFilter | None:
        """The audio filter of `gain_db` and `remove_silence` (None: audio as it is)."""
        audio = AudioFilter(self.gain_db, self.remove_silence)
        return audio if audio.name is not None else None

    # also score test at every evaluation and keep the best value and its step as a labelled extra: what
    # SUPERB reports for ASV (the best of the saved checkpoints on test); never the result itself
    report_selected_on_test: bool = False
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


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """The merged mapping, and for each key the file that set it (a parent's, through `include:`)."""
    if path in seen:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(map(str, seen + (path,)))}).")
    data = read_yaml(path, "task") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task file is a YAML mapping of keys, got {type(data).__name__}.")
    origin = dict.fromkeys(data, path)
    if "include" in data:
        parent, parent_origin = _read_yaml((path.parent / str(data.pop("include"))).resolve(), seen + (path,))
        data, origin = {**parent, **data}, {**parent_origin, **origin}
    return data, origin


def load_task_file(path: str | Path) -> TaskConfig:
    """Read, merge includes, and validate one task YAML; errors name the file and key."""
    path = Path(path).resolve()
    data, origin = _read_yaml(path)
    if "source" in data:
        raise ConfigError(f"{path}: key 'source' is set by evalkit (the file a task came from); remove it.")
    if isinstance(data.get("metrics"), list):  # `- {name: per, primary: true, collar: 0.25}`: options inline
        data["metrics"] = [_metric_entry(m) for m in data["metrics"]]
    with _in_file(path, origin):
        cfg = TaskConfig.from_dict({**data, "source": str(path)}, "task")
    _check_values(cfg, path)
    _check_registered(cfg, path)
    return cfg


def _metric_entry(entry: Any) -> Any:
    if not isinstance(entry, dict) or "options" in entry:
        return entry
    options = {k: v for k, v in entry.items() if k not in ("name", "primary")}
    return {k: v for k, v in entry.items() if k in ("name", "primary")} | {"options": options}


@contextlib.contextmanager
def _in_file(path: Path, origin: dict[str, Path] | None = None) -> Iterator[None]:
    """Prefixes ConfigErrors raised inside with the task file's name, and with the included file that
    set the key (`task.<key>...` in the message) where that is another file."""
    try:
        yield
    except ConfigError as e:
        key = re.match(r"task\.(\w+)", str(e))
        where = (origin or {}).get(key.group(1)) if key else None
        via = f" (set in {where}, included by it)" if where is not None and where != path else ""
        raise ConfigError(f"{path}{via}: {e}") from None


def _check_values(cfg: TaskConfig, path: Path) -> None:
    """What the schema cannot say alone: a known kind, one primary metric, a head where one trains."""
    if cfg.kind not in KINDS:
        kinds = KINDS.names()
        raise ConfigError(
            f"{path}: kind {cfg.kind!r} is not one of {', '.join(kinds)}.{suggest(cfg.kind, kinds)}"
        )
    if sum(m.primary for m in cfg.metrics) != 1:
        raise ConfigError(f"{path}: exactly one metric must have `primary: true`.")
    if not cfg.heads and KINDS.get(cfg.kind).trains:
        raise ConfigError(f"{path}: key 'heads' is empty; a trained task needs at least one head.")
    if cfg.deviations and cfg.recipe != "s3prl":
        raise ConfigError(
            f"{path}: key 'deviations' lists how a task differs from s3prl's recipe, so it needs "
            f"`recipe: s3prl` (this task's recipe is {cfg.recipe!r}); remove one of them."
        )
    if cfg.sampler == "balanced" and cfg.kind != "classification":
        raise ConfigError(
            f"{path}: sampler 'balanced' weights utterances by their class, which only a classification "
            f"task has (this one is {cfg.kind!r}); remove `sampler:` or use 'shuffled'."
        )


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
        with _in_file(path):
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
    hints = typing.get_type_hints(build.__init__ if inspect.isclass(build) else build)
    with _in_file(path):
        for key, value in head.args.items():
            if key in hints:  # the constructor's annotation is the argument's schema
                check_value(value, hints[key], f"head {head.name!r} ({head.type}) args.{key}")


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


SUPERB_ORDER = ("pr", "ks", "ic", "sid", "er", "asr", "qbe", "sf", "asv", "sd")
# `--tasks` group -> which task names it stands for (besides `all`: every folder's task.yaml)
GROUPS = {
    "superb": re.compile(r"[a-z]+_superb(_fold\d)?"),  # the faithful protocol: s3prl's recipes
    "superb_budget": re.compile(r"[a-z]+_superb_budget(_fold\d)?"),  # the budgeted protocol
}


def task_group(name: str, include_paths: list[str] | None = None) -> list[str] | None:
    """The task names a `--tasks` group stands for, in SUPERB's order (ER's folds in order); None when
    `name` is no group."""
    if name == "all":
        return [n for n, p in task_files(include_paths).items() if p.name == "task.yaml"]
    if name not in GROUPS:
        return None

    def order(task: str) -> tuple:
        base = task.split("_superb", 1)[0]
        return (SUPERB_ORDER.index(base) if base in SUPERB_ORDER else len(SUPERB_ORDER), task)

    return sorted((n for n in task_files(include_paths) if GROUPS[name].fullmatch(n)), key=order)


def load_task(name: str, include_paths: list[str] | None = None) -> TaskConfig:
    files = task_files(include_paths)
    if name not in files:
        raise ConfigError(f"Unknown task {name!r}.{suggest(name, files)} `evalkit ls tasks` lists them.")
    return load_task_file(files[name])
