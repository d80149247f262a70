"""Manifests: one JSON object per line, one file per split (`<corpus>/<split>.jsonl`).

Every corpus, synthetic or real, is written in this one schema (lhotse-style),
so a task never cares where its data came from.

Required keys of every record:
    id        unique within the split (non-empty string)
    path      audio file (non-empty string), relative to the manifest's folder (or absolute)
    duration  seconds (a number >= 0), the audio's length: extraction batches by it
    speaker   speaker label (string; "" when unknown)

Label keys by corpus (a record carries those its task reads):
    pretrain  text, phones (IPA list), alignment ([[start_s, end_s, phone], ...])
    pr / asr  text (lower-case words), phones, alignment
    ks        label: one of the ten keywords, "_unknown_" or "_silence_"
    qbe       role: "query" | "document"; query: term (text);
              document: text, occurrences ([{"term", "start", "end"}, ...])
    ic        text, action, object, location
    sf        text, slots ([{"type", "value", "start", "end"}, ...]; start/end are
              character offsets of the value in text)
    sid       (the speaker key is the label)
    asv       (the speaker key); trials in `<split>_trials.txt`, one
              "<1|0> <enroll id> <test id>" per line, as VoxCeleb's veri_test
    sd        speakers (list), segments ([[start_s, end_s, speaker], ...]); the
              same segments as RTTM in `<split>.rttm`
    er        emotion: neutral | happy | angry | sad
Optional: voice (synthesis parameters), fold (IEMOCAP session), gender.

Ground truth of the synthetic suite (what the `oracle` upstream reads), in every speech record:
    phones         eSpeak's symbols for the speaker's accent (what PR scores)
    phones_common  the same phones in one accent-independent inventory (evalkit/synth/phones.py)
    alignment      [[start_s, end_s, phone], ...]; in SD mixtures [[start_s, end_s, phone, talker]];
                   empty for KS silence clips
    voices         SD: talker id -> voice fields, for every talker (voice holds the first)
    emotion_params ER: the prosody drawn for the emotion (pitch_shift, range_shift, rate_scale,
                   volume, tilt)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from evalkit.core.errors import ConfigError
from evalkit.core.io import atomic_write_text

REQUIRED_KEYS = ("id", "path", "duration", "speaker")


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read and validate a JSONL manifest; errors name the file, line and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: manifest not found. Run `evalkit synth` or `evalkit prepare` to create it."
        )
    records, seen = [], set()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = _decode(path, lineno, raw)
            if not line.strip():
                continue
            rec = _parse(path, lineno, line)
            if rec["id"] in seen:
                raise ConfigError(
                    f"{path}:{lineno}: duplicate id {rec['id']!r}; ids must be unique in a split."
                )
            seen.add(rec["id"])
            records.append(rec)
    return records


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}:{lineno}: not valid UTF-8 (byte 0x{e.object[e.start]:02x} at column {e.start + 1}). "
            "Manifests are UTF-8 JSON lines: re-create it, or convert it (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def _parse(path: Path, lineno: int, line: str) -> dict:
    """One line as a record whose required keys hold values of the right type."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg}). Re-create the manifest.") from None
    if not isinstance(rec, dict):
        raise ConfigError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}.")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ConfigError(f"{path}:{lineno}: record lacks required key(s) {', '.join(missing)}.")
    for key in ("id", "path"):
        if not isinstance(rec[key], str) or not rec[key]:
            raise ConfigError(
                f"{path}:{lineno}: key {key!r} is {rec[key]!r} ({type(rec[key]).__name__}); expected a "
                "non-empty string. Fix the record or re-create the manifest."
            )
    if _climbs_out(rec["path"]):
        raise ConfigError(
            f"{path}:{lineno}: key 'path' is {rec['path']!r}, which climbs with '..' out of the data root "
            f"{path.parent.parent} (the folder above the manifest's). Write an absolute path for audio kept "
            "elsewhere (as `evalkit prepare` does) or move the audio under the data root."
        )
    duration = rec["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 <= duration < math.inf:
        raise ConfigError(
            f"{path}:{lineno}: key 'duration' is {duration!r} ({type(duration).__name__}); expected the "
            "audio's length in seconds, a number >= 0. Fix the record or re-create the manifest."
        )
    return rec


def audio_path(manifest_path: str | os.PathLike, record: dict) -> Path:
    """The absolute path of a record's audio (paths are relative to the manifest)."""
    p = Path(record["path"])
    if p.is_absolute():
        return p
    if _climbs_out(record["path"]):
        raise ConfigError(
            f"{manifest_path}: record {record.get('id')!r} has path {record['path']!r}, which climbs with '..' "
            "out of the data root (the folder above the manifest's). Write an absolute path or move the audio."
        )
    return Path(manifest_path).parent / p


def _climbs_out(rel: str) -> bool:
    """Whether a relative path climbs with '..' above the manifest folder's parent, the data root.

    Read as written, not resolved: a corpus folder that is a symlink into other storage is fine,
    and absolute paths (`evalkit prepare` points at the source corpus) are not relative.
    """
    if Path(rel).is_absolute():
        return False
    depth = 0
    for part in Path(rel).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < -1:
            return True
    return False


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write a JSONL manifest atomically: readers never see half a file."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in records]
    atomic_write_text(path, "".join(lines))


def frame_labels(alignment: list, num_frames: int, frame_rate: float, blank: str = "sil") -> list[str]:
    """Per-frame phone labels from `[[start_s, end_s, phone], ...]` at `frame_rate` Hz.

    A frame takes the phone covering its centre; frames outside every segment
    get `blank`.
    """
    labels = [blank] * num_frames
    for start, end, phone in alignment:
        first = max(0, int(round(start * frame_rate)))
        last = min(num_frames, int(round(end * frame_rate)))
        for i in range(first, last):
            labels[i] = phone
    return labels
