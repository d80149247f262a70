"""Any labelled speech dataset in Hugging Face form, mapped onto evalkit's manifest schema.

Two sources are read:
* a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
  (one split per DatasetDict key; a single Dataset is split "train");
* an `audiofolder` folder: `metadata.csv` or `metadata.jsonl` with a
  `file_name` column (audio path relative to the metadata file), either one
  per split subfolder (`train/metadata.csv`) or one at the top whose paths
  start with the split folder (`train/a.wav`); otherwise the split is "train".

A small mapping, a dict or a YAML file, says which column fills which
manifest key, e.g. {"id": "file_id", "text": "transcription",
"speaker": "speaker_id", "label": "label", "audio": "audio"}. Keys other than
`audio` become manifest keys; ClassLabel integers become their names. Without
`id` records are numbered; without `speaker` it is "".

Audio is read without torchcodec (datasets' own decoder and its
`audiofolder` builder need it to encode or decode): the Audio column is cast
to `decode=False`, and its bytes or path are decoded with soundfile, mixed to
mono, resampled to 16 kHz and written as `<out>/audio/<split>/<n>.wav`.
Split names "validation" and "valid" become "dev".
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from evalkit.core.audio import SAMPLE_RATE, load_audio, save_wav
from evalkit.core.errors import AudioError, ConfigError, EvalkitError
from evalkit.corpora.prep import is_prepared, manifest_paths, write_prepared

CORPUS = "hf_dataset"
SPLIT_NAMES = {"validation": "dev", "valid": "dev"}
_KNOWN_SPLITS = ("train", "dev", "test", "validation", "valid")
_METADATA = ("metadata.csv", "metadata.jsonl")


def load_mapping(mapping: Mapping[str, str] | str | os.PathLike | None) -> dict[str, str]:
    """The column mapping from a dict or a YAML file (manifest key -> column name)."""
    if mapping is None:
        return {}
    source = "mapping"
    if not isinstance(mapping, Mapping):
        source = str(mapping)
        try:
            mapping = yaml.safe_load(Path(mapping).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{source}: cannot read the column mapping ({e.strerror}).") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML ({e}).") from None
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ConfigError(f"{source}: expected a mapping of manifest key -> column name, got {mapping!r}.")
    return dict(mapping)


def prepare_hf_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    mapping: Mapping[str, str] | str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write `<out>/<split>.jsonl` and 16 kHz WAVs from a saved dataset or an audiofolder."""
    src, out = Path(src).resolve(), Path(out)
    columns = load_mapping(mapping)
    options = {"src": str(src), "mapping": columns}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    audio_column = columns.pop("audio", "audio")
    manifests = {}
    for split, rows in _read_source(src, audio_column).items():
        name = SPLIT_NAMES.get(split, split)
        manifests[name] = _write_split(rows, name, columns, out)
    return write_prepared(out, CORPUS, options, manifests)


def _read_source(src: Path, audio_column: str) -> dict[str, Iterator[tuple[str, dict, dict, Path]]]:
    """Split -> iterator of (where, row, audio {"bytes", "path"}, folder for relative paths)."""
    if (src / "dataset_dict.json").is_file() or (src / "state.json").is_file():
        return _read_saved(src, audio_column)
    if any((src / m).is_file() for m in _METADATA) or any(
        (d / m).is_file() for d in src.glob("*") if d.is_dir() for m in _METADATA
    ):
        return _read_audiofolder(src)
    raise EvalkitError(
        f"{src}: neither a saved Hugging Face dataset (dataset_dict.json or state.json) nor an audiofolder "
        "(metadata.csv / metadata.jsonl). Point src at the folder given to save_to_disk, or at the audiofolder."
    )


def _read_saved(src: Path, audio_column: str) -> dict[str, Iterator]:
    import datasets  # deferred: optional dependency, and a heavy one

    loaded = datasets.load_from_disk(str(src))
    splits = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    result = {}
    for split, ds in splits.items():
        if audio_column not in ds.column_names:
            raise EvalkitError(
                f"{src} [{split}]: no audio column {audio_column!r}; columns are {', '.join(ds.column_names)}. "
                "Name it in the mapping as audio: <column>."
            )
        if isinstance(ds.features[audio_column], datasets.Audio):
            ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
        result[split] = _saved_rows(src, split, ds, audio_column)
    return result


def _saved_rows(src: Path, split: str, ds, audio_column: str) -> Iterator[tuple[str, dict, dict, Path]]:
    import datasets  # deferred: optional dependency, and a heavy one

    names = {c: f for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
    for i, row in enumerate(ds):
        audio = row.pop(audio_column)
        audio = {"path": audio, "bytes": None} if isinstance(audio, str) else audio or {}
        row = {c: names[c].int2str(v) if c in names and v is not None else v for c, v in row.items()}
        yield f"{src} [{split}] row {i}", row, audio, src


def _read_audiofolder(src: Path) -> dict[str, Iterator]:
    found = [(src / m, None) for m in _METADATA if (src / m).is_file()]
    found += [
        (d / m, d.name) for d in sorted(src.glob("*")) if d.is_dir() for m in _METADATA if (d / m).is_file()
    ]
    splits: dict[str, list] = {}
    for meta, split in found:
        for where, row in _metadata_rows(meta):
            rel = row.pop("file_name")
            name = split or (rel.split("/", 1)[0] if rel.split("/", 1)[0] in _KNOWN_SPLITS else "train")
            splits.setdefault(name, []).append((where, row, {"path": rel, "bytes": None}, meta.parent))
    return {split: iter(rows) for split, rows in splits.items()}


def _metadata_rows(meta: Path) -> Iterator[tuple[str, dict]]:
    with open(meta, newline="", encoding="utf-8") as f:
        if meta.suffix == ".csv":
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]
        else:
            rows = []
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append((lineno, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise EvalkitError(f"{meta}:{lineno}: not valid JSON ({e.msg}).") from None
    for lineno, row in rows:
        if not isinstance(row, dict) or "file_name" not in row:
            raise EvalkitError(f"{meta}:{lineno}: no 'file_name' column; audiofolder metadata needs one.")
        yield f"{meta}:{lineno}", row


def _write_split(rows: Iterator, split: str, columns: Mapping[str, str], out: Path) -> list[dict]:
    records, seen = [], set()
    for i, (where, row, audio, base) in enumerate(rows):
        for key, column in columns.items():
            if column not in row:
                raise EvalkitError(
                    f"{where}: no column {column!r} (mapped to {key!r}); columns are {', '.join(row)}."
                )
        rec_id = str(row[columns["id"]]) if "id" in columns else f"{split}_{i:06d}"
        if rec_id in seen:
            raise EvalkitError(f"{where}: duplicate id {rec_id!r}; map `id` to a column with unique values.")
        seen.add(rec_id)
        samples = _decode(audio, base, where)
        rel = f"audio/{split}/{i:06d}.wav"
        save_wav(out / rel, samples)
        rec = {
            "id": rec_id,
            "path": rel,
            "duration": round(len(samples) / SAMPLE_RATE, 4),
            "speaker": str(row[columns["speaker"]]) if "speaker" in columns else "",
        }
        rec.update({key: row[column] for key, column in columns.items() if key not in rec})
        records.append(rec)
    return records


def _decode(audio: dict, base: Path, where: str) -> np.ndarray:
    """16 kHz mono float32 from an Audio value ({"bytes", "path"}) without torchcodec."""
    if audio.get("bytes"):
        try:
            data, rate = sf.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(
                f"{where}: the embedded audio bytes cannot be decoded ({e}). Re-encode as WAV/FLAC."
            ) from None
        if not np.isfinite(data).all():
            raise AudioError(f"{where}: the embedded audio holds NaN or Inf samples.")
        mono = data.mean(axis=1)
        if rate != SAMPLE_RATE:
            # deferred: torch only to resample embedded audio that is not at 16 kHz already
            import torch
            import torchaudio.functional as AF

            mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, SAMPLE_RATE).numpy()
        return mono
    if not audio.get("path"):
        raise AudioError(f"{where}: the audio value has neither bytes nor a path.")
    path = Path(audio["path"])
    return load_audio(path if path.is_absolute() else base / path)
