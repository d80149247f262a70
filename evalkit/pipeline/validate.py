"""`evalkit validate`: check suites, manifests, task YAMLs and result files with the checks `evalkit eval`
applies, before hours of work find a problem.

Each input goes through the reader `evalkit eval` uses: manifests through `read_manifest`, their audio
through extraction's `check_lengths` (present, a readable header, not over MAX_SECONDS, as long as the
manifest says) and then `load_audio` (decodes whole, finite samples: a NaN or a text file saved as
`.wav` is found here), task YAMLs through `load_task_file` and pre-training recipes (a YAML with a
`method:`) through `load_config` and the method's own checks (both the schema of
`evalkit.core.config`), result files through the result schema (`evalkit.core.results`). It sits in
the pipeline layer because it reads what both evaluation and pre-training read. A corpus folder's test labels that
never occur in its training split get a warning. Each check yields `(message, status)` lines, status
"ok", "warn" or "fail", so that one run reports every problem instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from evalkit.core.audio import load_audio
from evalkit.core.errors import EvalkitError
from evalkit.core.io import read_yaml
from evalkit.core.manifest import read_manifest
from evalkit.core.progress import progress_bar
from evalkit.core.results import read_result
from evalkit.evaluation.runner import check_lengths, utterances_of
from evalkit.evaluation.task import load_task_file
from evalkit.pretraining.recipe import check_objective, load_config

Line = tuple[str, str]  # (message, "ok" | "warn" | "fail")
LABEL_KEYS = ("label",)  # record keys of a corpus folder whose test values must occur in train


def validate_manifest(path: Path, decode: bool = True) -> Iterator[Line]:
    """A manifest and its audio: the records, then each file's header against its duration, then
    (`decode`) every sample."""
    try:
        records = read_manifest(path)
        utts = utterances_of(path, records)
    except EvalkitError as e:
        yield str(e), "fail"
        return
    missing = [u for u in utts if not u.path.is_file()]
    if missing:
        yield (
            f"{path}: {len(missing)} record(s) point at missing audio, e.g. {missing[0].id!r} ({missing[0].path})",
            "fail",
        )
        return
    problems = 0
    try:
        check_lengths(path, utts)
    except EvalkitError as e:
        yield str(e), "fail"
        problems += 1
    if decode and not problems:
        for u in progress_bar(utts, desc=f"decoding {path.name}", unit="file", leave=False):
            try:
                load_audio(u.path)
            except EvalkitError as e:
                yield f"{path}: record {u.id!r}: {e}", "fail"
                problems += 1
    if not problems:
        hours = sum(u.duration for u in utts) / 3600
        speakers = len({r["speaker"] for r in records})
        checked = "audio decoded" if decode else "audio headers checked"
        yield f"{path}: {len(records)} utterances, {hours:.2f} h, {speakers} speakers ({checked})", "ok"


def unseen_labels(folder: Path) -> Iterator[Line]:
    """Labels of a corpus folder's dev and test manifests that its train manifest never has: a head
    cannot predict them, so those records can only be wrong (a split made by hand, a typo)."""
    train = folder / "train.jsonl"
    if not train.is_file():
        return
    try:
        seen = {key: {str(r[key]) for r in read_manifest(train) if key in r} for key in LABEL_KEYS}
    except EvalkitError:
        return  # reported by validate_manifest
    for split in ("dev", "test"):
        manifest = folder / f"{split}.jsonl"
        if not manifest.is_file():
            continue
        try:
            records = read_manifest(manifest)
        except EvalkitError:
            continue
        for key, known in seen.items():
            unseen = sorted({str(r[key]) for r in records if key in r and str(r[key]) not in known})
            if known and unseen:
                count = sum(str(r.get(key)) in unseen for r in records)
                yield (
                    f"{manifest}: {count} record(s) have a {key} never seen in {train.name} "
                    f"({', '.join(map(repr, unseen[:5]))}{', ...' if len(unseen) > 5 else ''}); a head "
                    "trained there cannot predict them",
                    "warn",
                )


def validate_path(path: Path, decode: bool = True) -> Iterator[Line]:
    """Dispatch on what `path` is: a manifest, a corpus or suite folder, a YAML or JSON file."""
    if not path.exists():
        yield f"{path}: no such file or folder", "fail"
    elif path.is_dir():
        yield from _validate_folder(path, decode)
    elif path.suffix == ".jsonl":
        yield from validate_manifest(path, decode)
        if path.name == "test.jsonl":
            yield from unseen_labels(path.parent)
    elif path.suffix in (".yaml", ".yml"):
        yield from _validate_yaml(path)
    elif path.suffix == ".json":
        yield from _validate_result(path)
    else:
        yield f"{path}: don't know how to validate a {path.suffix or 'suffix-less'} file", "fail"


def _validate_folder(path: Path, decode: bool) -> Iterator[Line]:
    """A suite, corpus, task or results folder: what it and its sub-folders hold."""
    manifests = sorted(path.glob("*.jsonl")) + sorted(path.glob("*/*.jsonl"))
    yamls = sorted(path.glob("*.yaml")) + sorted(path.glob("*/*.yaml"))
    results = sorted(p for p in path.glob("*/*.json") if not p.name.startswith("."))
    if not manifests and not yamls and not results:
        yield f"{path}: no manifests (*.jsonl), task YAMLs or result files found", "fail"
    for m in manifests:
        yield from validate_manifest(m, decode)
    for folder in sorted({m.parent for m in manifests}):
        yield from unseen_labels(folder)
    for y in yamls:
        yield from _validate_yaml(y)
    for r in results:
        yield from _validate_result(r)


def _validate_result(path: Path) -> Iterator[Line]:
    try:
        r = read_result(path)
    except EvalkitError as e:
        yield str(e), "fail"
        return
    pm = r["primary_metric"]
    yield f"{path}: {r['upstream']} on {r['task']}: test {pm} = {r['metrics']['test'][pm]:.4f}", "ok"


def _validate_yaml(path: Path) -> Iterator[Line]:
    """A task file, or a pre-training recipe (the YAML names a `method`)."""
    try:
        data = read_yaml(path, "YAML")
        if isinstance(data, dict) and "method" in data:
            recipe = load_config(path)
            check_objective(recipe)
            yield f"{path}: pre-training recipe ({recipe.method}, {recipe.optim.max_steps} steps)", "ok"
            return
        task = load_task_file(path)
    except EvalkitError as e:
        yield str(e), "fail"
        return
    yield f"{path}: task {task.name!r} version {task.version}", "ok"
