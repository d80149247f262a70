"""What every corpus preparer shares: layout checks, durations, and the "done" marker.

A preparer reads a corpus as its distributors ship it, checks the layout up
front (so a half-extracted archive fails at once, naming the file that is
missing), and writes manifests only when all of them can be written. A marker
file `.done.json` written last records the options and the line count of every
file written; a re-run with the same options skips when the marker and the
files agree, and rewrites everything otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from evalkit.core.audio import audio_info
from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.manifest import write_manifest

MARKER = ".done.json"


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file; otherwise an error saying what was expected there."""
    if not path.is_file():
        raise EvalkitError(
            f"{path}: {what} not found. Check that the corpus is fully extracted into this folder."
        )
    return path


def require_dir(path: Path, what: str, pattern: str = "*") -> Path:
    """`path` if it is a folder holding at least one entry matching `pattern`."""
    if not path.is_dir():
        raise EvalkitError(
            f"{path}: {what} not found. Check that the corpus is fully extracted into this folder."
        )
    if next(path.glob(pattern), None) is None:
        raise EvalkitError(f"{path}: {what} is empty (no {pattern!r} inside). Re-extract the corpus.")
    return path


def require_audio(path: Path, referenced_by: str | os.PathLike) -> Path:
    """`path` if the audio file exists; otherwise an error naming who referenced it."""
    if not path.is_file():
        raise EvalkitError(
            f"{path}: audio file listed in {referenced_by} is missing. Re-extract the corpus or fix the list."
        )
    return path


def duration(path: Path) -> float:
    """Seconds of audio, from the file header (AudioError names an unreadable file)."""
    return round(audio_info(path).duration, 4)


def first_existing(candidates: Iterable[Path], what: str) -> Path:
    """The first candidate path that exists, or an error listing where we looked."""
    candidates = list(candidates)
    for c in candidates:
        if c.exists():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise EvalkitError(f"{what} not found; looked for: {looked}. Point `src` at the extracted corpus.")


def is_prepared(out: Path, corpus: str, options: Mapping) -> bool:
    """True when `out` holds a complete preparation of `corpus` with these options."""
    marker = out / MARKER
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if done.get("corpus") != corpus or done.get("options") != _jsonable(options):
        return False
    for name, lines in done.get("files", {}).items():
        path = out / name
        if not path.is_file() or _count_lines(path) != lines:
            return False
    return True


def write_prepared(
    out: Path,
    corpus: str,
    options: Mapping,
    manifests: Mapping[str, list[dict]],
    texts: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write manifests (`<split>.jsonl`) and extra text files, then the marker.

    `manifests` maps a split name (may contain a folder, as `fold1/train`) to
    its records; `texts` maps a file name to its content (trials, RTTM).
    Returns split name -> manifest path.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    files: dict[str, int] = {}
    paths: dict[str, Path] = {}
    for split, records in manifests.items():
        path = out / f"{split}.jsonl"
        write_manifest(path, records)
        files[f"{split}.jsonl"] = len(records)
        paths[split] = path
    for name, text in (texts or {}).items():
        atomic_write_text(out / name, text)
        files[name] = text.count("\n")
    marker = {"corpus": corpus, "options": _jsonable(options), "files": files}
    atomic_write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")
    return paths


def manifest_paths(out: Path) -> dict[str, Path]:
    """Split name -> manifest path, as recorded by the marker of a finished preparation."""
    done = json.loads((out / MARKER).read_text(encoding="utf-8"))
    return {name[: -len(".jsonl")]: out / name for name in done["files"] if name.endswith(".jsonl")}


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _jsonable(options: Mapping) -> dict:
    """Options as they round-trip through JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dict(options), default=str))
