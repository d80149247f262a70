"""Libri2Mix for speaker diarization, read from the Kaldi-style data dirs SUPERB SD uses.

s3prl's diarization recipe does not read Libri2Mix's CSVs directly: LibriMix's
`scripts/prepare_diarization.py` turns them (plus LibriSpeech voice-activity
RTTMs) into one Kaldi data dir per split, and the recipe reads those. So do we:
    <src>/{train,dev,test}/wav.scp    "<recording> <wav path>"
    <src>/{train,dev,test}/segments   "<segment> <recording> <start s> <end s>"
    <src>/{train,dev,test}/utt2spk    "<segment> <speaker>"
(`reco2dur`, `spk2utt` and `rttm` there are derived files and not needed.)
Relative wav paths are resolved against the data dir holding wav.scp; piped
commands ("... |") are refused. Durations come from the audio headers.

Each recording becomes one record with `speakers` (sorted) and `segments`
([[start, end, speaker], ...] sorted by start); `<split>.rttm` holds the same
segments as NIST RTTM for DER scoring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    is_prepared,
    manifest_paths,
    require_audio,
    require_dir,
    require_file,
    write_prepared,
)

SPLITS = ("train", "dev", "test")
CORPUS = "libri2mix"


def prepare_libri2mix(
    src: str | os.PathLike, out: str | os.PathLike, splits: Sequence[str] = SPLITS
) -> dict[str, Path]:
    """Write `<out>/<split>.jsonl` and `<out>/<split>.rttm` for each Kaldi data dir in `splits`."""
    src, out = Path(src).resolve(), Path(out)
    options = {"src": str(src), "splits": list(splits)}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    manifests, rttms = {}, {}
    for split in splits:
        records = _read_data_dir(require_dir(src / split, f"Kaldi data dir for {split!r}"))
        manifests[split] = records
        rttms[f"{split}.rttm"] = "".join(
            f"SPEAKER {r['id']} 1 {start:.3f} {end - start:.3f} <NA> <NA> {spk} <NA> <NA>\n"
            for r in records
            for start, end, spk in r["segments"]
        )
    return write_prepared(out, CORPUS, options, manifests, rttms)


def _table(path: Path, fields: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated Kaldi table; the last field takes the rest."""
    rows = []
    for lineno, line in enumerate(
        require_file(path, "Kaldi data file").read_text(encoding="utf-8").splitlines(), 1
    ):
        if not line.strip():
            continue
        parts = line.split(None, fields - 1)
        if len(parts) != fields:
            raise EvalkitError(f"{path}:{lineno}: expected {fields} fields, got {line!r}.")
        rows.append((lineno, parts))
    if not rows:
        raise EvalkitError(f"{path}: is empty. Re-run LibriMix's scripts/prepare_diarization.py.")
    return rows


def _read_data_dir(data_dir: Path) -> list[dict]:
    wav_scp, segments_file, utt2spk_file = data_dir / "wav.scp", data_dir / "segments", data_dir / "utt2spk"
    wavs: dict[str, Path] = {}
    for lineno, (rec, target) in _table(wav_scp, 2):
        if target.rstrip().endswith("|"):
            raise EvalkitError(
                f"{wav_scp}:{lineno}: piped commands are not supported; list a wav file instead."
            )
        audio = Path(os.path.normpath(data_dir / target.strip()))
        wavs[rec] = require_audio(audio, f"{wav_scp}:{lineno}")
    speaker_of = {utt: spk.strip() for _, (utt, spk) in _table(utt2spk_file, 2)}
    segments: dict[str, list] = {rec: [] for rec in wavs}
    for lineno, (utt, rec, start, end) in _table(segments_file, 4):
        if rec not in wavs:
            raise EvalkitError(f"{segments_file}:{lineno}: recording {rec!r} is not in {wav_scp}.")
        if utt not in speaker_of:
            raise EvalkitError(f"{segments_file}:{lineno}: segment {utt!r} has no speaker in {utt2spk_file}.")
        try:
            span = (float(start), float(end))
        except ValueError:
            raise EvalkitError(
                f"{segments_file}:{lineno}: start/end must be seconds, got {start!r} {end!r}."
            ) from None
        if not 0 <= span[0] < span[1]:
            raise EvalkitError(f"{segments_file}:{lineno}: segment ends before it starts ({start} .. {end}).")
        segments[rec].append([round(span[0], 4), round(span[1], 4), speaker_of[utt]])
    records = []
    for rec, audio in wavs.items():
        segs = sorted(segments[rec])
        records.append(
            {
                "id": rec,
                "path": str(audio),
                "duration": duration(audio),
                "speaker": "",
                "speakers": sorted({s for _, _, s in segs}),
                "segments": segs,
            }
        )
    return records
