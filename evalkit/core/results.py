"""Result files: one JSON per upstream × task, plus a samples file beside it.

A number must always be traceable to how it was made, so the file carries
the resolved task config and version, the LR grid and choice, the learned
layer weights, the upstream's fingerprint, package versions and git hash,
sample counts and wall time. The leaderboard is built only from these files.
"""

from __future__ import annotations

import json
import math
import platform
import re
import subprocess
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evalkit.core.config import Number, SerialisableConfig, rule
from evalkit.core.errors import ConfigError
from evalkit.core.io import atomic_write_text, read_json_object

SCHEMA_VERSION = 1
REQUIRED = (
    "task",
    "upstream",
    "metrics",
    "primary_metric",
    "higher_is_better",
    "task_version",
    "task_config",
)


@dataclass(kw_only=True)
class HeadResult:
    """One head of a trained task: its best-on-dev run, the learning rates it tried, its layer weights."""

    type: str  # the registered head
    metrics: dict[str, dict[str, float]]  # {"dev": {...}, "test": {...}}
    ci95: dict[str, dict[str, list[float] | None]]  # {"test": {metric: [low, high] or None}}
    lr: float
    lr_grid: dict[str, float | None]  # "<lr:g>" -> best dev value of the primary metric
    best_step: int
    dev_curves: dict[str, list[tuple[int, float]]]  # "<lr:g>" -> [(step, dev value), ...]
    layer_weights: list[float]
    head_parameters: int
    steps: int
    postprocess: dict | None = None  # what the kind tuned on dev (SD's threshold); written only when set
    # what SUPERB's selection on test would report (ASV's best checkpoint, SD's best post-processing), a
    # labelled extra beside the dev-selected numbers above, never used for them; written only when set
    selected_on_test: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_unset(
            {f.name: getattr(self, f.name) for f in fields(self)}, ("postprocess", "selected_on_test")
        )


@dataclass(kw_only=True)
class Result:
    """One upstream × task: what the task's kind measured, then how it was made.

    A kind's run fills the measured part (the reference head's numbers on top,
    every head under `heads`); the evaluation adds the provenance. `to_dict` is
    the file's JSON object: keys in the order of the fields, as result files
    have always had them, the optional ones (`metrics_sd`, `layer`,
    `dev_by_layer`, `postprocess`, `seeds`, `seed_rates`) only when set.

    Trained with several head seeds (`evalkit eval --seeds`), the numbers on top
    are the means over the seeds, `metrics_sd` their sample standard deviations,
    and `seeds` holds each seed's own numbers ({"<seed>": {metrics, ci95, lr,
    best_step, layer_weights, heads}}); `seed` is then null, and `seed_rates`
    says whether every seed searched the learning-rate grid ("grid") or only
    the first ("chosen": the others trained at the rate it chose).
    """

    metrics: dict[str, dict[str, float]]  # {"dev": {...}, "test": {...}}
    metrics_sd: dict[str, dict[str, float]] | None = None  # several seeds: {"dev": {...}, "test": {...}}
    ci95: dict[str, dict[str, list[float] | None]]
    primary_metric: str
    higher_is_better: bool
    head: str  # the reference head's name ("dtw" for QbE)
    layer: int | None = None  # QbE: the layer chosen on dev
    dev_by_layer: dict[str, float] | None = None  # QbE: dev value of every layer tried
    lr: float | None
    lr_grid: list[float]  # the grid the run trained (empty: nothing trained)
    layer_weights: list[float]
    postprocess: dict | None = None  # the reference head's tuned post-processing
    heads: dict[str, HeadResult]
    seeds: dict[str, dict[str, Any]] | None = None  # several head seeds: each seed's own numbers
    # several head seeds: which rates the seeds after the first trained ("grid" or "chosen", SEED_RATES)
    seed_rates: str | None = None
    # provenance, set by the evaluation that writes the file
    task: str | None = None
    upstream: str | None = None
    task_version: int | None = None
    protocol: str | None = None
    task_config: dict | None = None
    seed: int | None = None  # the head seed (null with several: see `seeds`)
    suite: dict | None = None
    upstream_info: dict | None = None
    versions: dict[str, str] | None = None
    git_hash: str | None = None
    cache: str | None = None  # "on" or "off" (--no-cache)
    cache_layers: list[int] | None = None  # the hidden states a `--cache-layers` cache kept (None: all)
    device: str | None = None  # where the upstream ran and the heads trained (`--device`)
    bf16: bool | None = None  # whether the heads trained under bf16 autocast (`--bf16`)
    wall_time_s: float | None = None
    feature_time_s: float | None = None
    samples: dict[str, int] | None = None  # records per split

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["heads"] = {name: h.to_dict() for name, h in self.heads.items()}
        return _without_unset(
            data,
            (
                "metrics_sd",
                "layer",
                "dev_by_layer",
                "postprocess",
                "seeds",
                "seed_rates",
                "cache_layers",
            ),
        )


def _without_unset(data: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not (k in optional and v is None)}


def upstream_tag(spec: str) -> str:
    """A file-name-safe name for an upstream spec (`hf:/x/hubert` -> `hf-hubert`)."""
    prefix = ""
    if ":" in spec and not Path(spec).exists():
        prefix, _, spec = spec.partition(":")
        prefix += "-"
    name = Path(spec.rstrip("/")).name or spec
    return re.sub(r"[^A-Za-z0-9._+-]", "_", prefix + name)


def result_path(output: Path, spec: str, task: str, name: str | None = None) -> Path:
    """OUTPUT/<name>/<task>.json; `name` (`evalkit eval --name`) defaults to the spec's `upstream_tag`."""
    return Path(output) / (name or upstream_tag(spec)) / f"{task}.json"


def check_results_name(name: str) -> str:
    """A `--name` that is one plain folder name."""
    if not name or name in (".", "..") or re.search(r"[^A-Za-z0-9._+-]", name):
        raise ConfigError(
            f"--name {name!r}: the upstream's results folder is one plain name (letters, digits, . _ + -)."
        )
    return name


def samples_path(result: Path) -> Path:
    return result.with_name(result.stem + ".samples.jsonl")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("evalkit", "torch", "torchaudio", "numpy", "scikit-learn", "speechbrain", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_hash(dirty: bool = False) -> str | None:
    """The commit of this evalkit checkout (None outside git); `dirty`: "-dirty" appended when
    tracked files have uncommitted changes."""
    commit = _git("rev-parse", "HEAD") or None
    if commit and dirty and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


def write_result(path: Path, result: dict[str, Any], samples: list[dict]) -> None:
    """Samples first, then the result: a result file never points at missing samples."""
    atomic_write_text(samples_path(path), "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_text(
        path, json.dumps({"schema_version": SCHEMA_VERSION, **result}, indent=1, ensure_ascii=False) + "\n"
    )


# The schema of a result file as its readers rely on it (`evalkit eval`'s resume check, `evalkit
# validate`, the leaderboard): the keys they read, with their types. Writers may add keys
# (`open_keys`); JSON null is "absent" for the optional ones.
TEXT = rule(nonempty=True)


@dataclass
class _SuiteRecord(SerialisableConfig):
    open_keys = True
    profile: str | None = field(default=None, metadata=TEXT)
    name: str | None = field(default=None, metadata=TEXT)
    seed: int | None = None
    version: int | None = None


@dataclass
class _UpstreamRecord(SerialisableConfig):
    open_keys = True
    parameters: int | None = field(default=None, metadata=rule(min=0))
    fingerprint: str | None = field(default=None, metadata=TEXT)
    checkpoint: str | None = field(default=None, metadata=TEXT)


@dataclass
class _MetricSpec(SerialisableConfig):
    """`task_config.metrics` entries as the significance tests read them: {name, options: {...}}."""

    open_keys = True
    options: dict[str, Any] | None = None


@dataclass
class _TaskConfigRecord(SerialisableConfig):
    open_keys = True
    name: str | None = field(default=None, metadata=TEXT)
    metrics: list[str | _MetricSpec] | None = None
    labels: dict[str, Any] | None = None
    steps: int | dict[str, Any] | None = None


@dataclass
class _MetricsRecord(SerialisableConfig):
    open_keys = True
    test: dict[str, Number | None]
    dev: dict[str, Number | None] | None = None


@dataclass
class _CIRecord(SerialisableConfig):
    open_keys = True
    test: dict[str, Any] | None = None


@dataclass
class _SeedRecord(SerialisableConfig):
    """One head seed's numbers in a result trained with several (`seeds.<seed>`)."""

    open_keys = True
    metrics: _MetricsRecord
    ci95: _CIRecord | None = None
    lr: float | None = None
    best_step: int | None = field(default=None, metadata=rule(min=0))
    layer_weights: list[float] | None = None


@dataclass
class ResultRecord(SerialisableConfig):
    open_keys = True
    task: str = field(metadata=TEXT)
    upstream: str = field(metadata=TEXT)
    primary_metric: str = field(metadata=TEXT)  # the name of a metric in metrics.test
    higher_is_better: bool
    task_version: int | str
    task_config: _TaskConfigRecord
    metrics: _MetricsRecord
    layer_weights: list[float] | None = None
    head: str | None = field(default=None, metadata=TEXT)
    heads: dict[str, dict[str, Any]] | None = None
    ci95: _CIRecord | None = None
    protocol: str | None = field(default=None, metadata=TEXT)
    suite: _SuiteRecord | None = None
    upstream_info: _UpstreamRecord | None = None
    seeds: dict[str, _SeedRecord] | None = field(default=None, metadata=rule(nonempty=True))
    seed_rates: str | None = field(default=None, metadata=rule(choices=("grid", "chosen")))
    cache_layers: list[int] | None = field(default=None, metadata=rule(min=0, nonempty=True))
    metrics_sd: _MetricsRecord | None = None


def check_result_data(path: Path, data: dict) -> dict:
    """`data` (a result file's JSON object) checked against `ResultRecord`; ConfigError names the file
    and the key."""
    try:
        record = ResultRecord.from_dict(data, "result")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    primary = record.primary_metric
    if primary not in record.metrics.test:
        raise ConfigError(f"{path}: primary metric {primary!r} has no test value (metrics.test.{primary}).")
    value = record.metrics.test[primary]
    if value is None or not math.isfinite(value):
        raise ConfigError(f"{path}: result.metrics.test.{primary} must be a finite number, got {value!r}.")
    if record.task_config.name not in (None, record.task):
        raise ConfigError(f"{path}: task {record.task!r} but task_config.name {record.task_config.name!r}.")
    if record.seeds is not None:
        _check_seeds(path, record.seeds, primary, value)
    return data


def _check_seeds(path: Path, seeds: dict[str, _SeedRecord], primary: str, mean: float) -> None:
    """The seeds block of a several-seed result: seeds by number, each with its primary test value, whose
    mean is the value on top (what the leaderboard ranks)."""
    values = []
    for key, record in seeds.items():
        if not re.fullmatch(r"0|[1-9][0-9]*", key):
            raise ConfigError(f"{path}: result.seeds.{key}: a seed is a non-negative integer, e.g. seeds.0.")
        v = record.metrics.test.get(primary)
        if v is None or not math.isfinite(v):
            raise ConfigError(
                f"{path}: result.seeds.{key}.metrics.test.{primary} must be a finite number, got {v!r}."
            )
        values.append(v)
    if not math.isclose(sum(values) / len(values), mean, rel_tol=1e-9, abs_tol=1e-12):
        raise ConfigError(
            f"{path}: result.metrics.test.{primary} = {mean!r} is not the mean of its seeds' values "
            f"({', '.join(f'{v:g}' for v in values)}); re-run the evaluation."
        )


def read_result(path: Path) -> dict:
    """Load and check a result file; errors name the file and the key."""
    return check_result_data(path, read_json_object(path, "result"))
