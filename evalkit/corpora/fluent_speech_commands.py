"""Fluent Speech Commands for intent classification (SUPERB IC).

Layout read (fluent_speech_commands_dataset):
    <src>/data/{train,valid,test}_data.csv
        columns: (row index), path, speakerId, transcription, action, object, location
    <src>/wavs/speakers/<speakerId>/<uuid>.wav   (`path` is relative to src)

The official splits are speaker-disjoint; SUPERB uses them as they are
(valid -> dev). An intent is right only if action, object and location are.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    first_existing,
    is_prepared,
    manifest_paths,
    require_audio,
    require_file,
    write_prepared,
)

SPLIT_FILES = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")
CORPUS = "fluent_speech_commands"


def prepare_fluent_speech_commands(src: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Write `<out>/{train,dev,test}.jsonl` with text, action, object, location."""
    src, out = Path(src).resolve(), Path(out)
    options = {"src": str(src)}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    data = first_existing([src / "data", src / "fluent_speech_commands_dataset" / "data"], "FSC data/ folder")
    root = data.parent
    csvs = {split: require_file(data / name, "FSC split file") for split, name in SPLIT_FILES.items()}
    manifests = {split: _read_split(root, path) for split, path in csvs.items()}
    return write_prepared(out, CORPUS, options, manifests)


def _read_split(root: Path, csv_path: Path) -> list[dict]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EvalkitError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}."
            )
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise EvalkitError(f"{csv_path}: holds no rows. Re-extract the corpus.")
    records = []
    for lineno, row in rows:
        audio = require_audio(root / row["path"], f"{csv_path}:{lineno}")
        records.append(
            {
                "id": f"{row['speakerId']}_{audio.stem}",
                "path": str(audio),
                "duration": duration(audio),
                "speaker": row["speakerId"],
                "text": row["transcription"].strip(),
                "action": row["action"],
                "object": row["object"],
                "location": row["location"],
            }
        )
    return records
