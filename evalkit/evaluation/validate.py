"""`evalkit validate`: check suites, manifests, task YAMLs and result files.

Each check yields `(message, ok)` lines so that one run reports every problem
instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import audio_path, read_manifest
from evalkit.core.results import read_result
from evalkit.evaluation.task import load_task_file


def validate_manifest(path: Path, check_audio: bool = True) -> Iterator[tuple[str, bool]]:
    try:
        records = read_manifest(path)
    except EvalkitError as e:
        yield str(e), False
        return
    missing = [r["id"] for r in records if check_audio and not audio_path(path, r).is_file()]
    bad_dur = [r["id"] for r in records if not isinstance(r["duration"], int | float) or r["duration"] <= 0]
    if missing:
        yield f"{path}: {len(missing)} record(s) point at missing audio, e.g. {missing[0]!r}", False
    if bad_dur:
        yield f"{path}: {len(bad_dur)} record(s) have a non-positive duration, e.g. {bad_dur[0]!r}", False
    if not missing and not bad_dur:
        hours = sum(r["duration"] for r in records) / 3600
        speakers = len({r["speaker"] for r in records})
        yield f"{path}: {len(records)} utterances, {hours:.2f} h, {speakers} speakers", True


def validate_path(path: Path) -> Iterator[tuple[str, bool]]:
    """Dispatch on what `path` is: a manifest, a corpus or suite folder, a YAML or JSON file."""
    if not path.exists():
        yield f"{path}: no such file or folder", False
    elif path.is_dir():
        manifests = sorted(path.glob("*.jsonl")) + sorted(path.glob("*/*.jsonl"))
        yamls = sorted(path.glob("*.yaml")) + sorted(path.glob("*/*.yaml"))
        results = sorted(p for p in path.glob("*/*.json") if not p.name.startswith("."))
        if not manifests and not yamls and not results:
            yield f"{path}: no manifests (*.jsonl), task YAMLs or result files found", False
        for m in manifests:
            yield from validate_manifest(m)
        for y in yamls:
            yield from validate_path(y)
        for r in results:
            yield from validate_path(r)
    elif path.suffix == ".jsonl":
        yield from validate_manifest(path)
    elif path.suffix in (".yaml", ".yml"):
        yield from _validate_yaml(path)
    elif path.suffix == ".json":
        yield from _validate_result(path)
    else:
        yield f"{path}: don't know how to validate a {path.suffix or 'suffix-less'} file", False


def _validate_result(path: Path) -> Iterator[tuple[str, bool]]:
    try:
        r = read_result(path)
    except EvalkitError as e:
        yield str(e), False
        return
    pm = r["primary_metric"]
    yield f"{path}: {r['upstream']} on {r['task']}: test {pm} = {r['metrics']['test'][pm]:.4f}", True


def _validate_yaml(path: Path) -> Iterator[tuple[str, bool]]:
    try:
        task = load_task_file(path)
    except EvalkitError as e:
        yield str(e), False
        return
    yield f"{path}: task {task.name!r} version {task.version}", True
