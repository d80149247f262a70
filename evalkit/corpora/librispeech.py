"""LibriSpeech for ASR and PR, with SUPERB's splits.

Layout read (as the OpenSLR archives extract):
    <src>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <src>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
(`src` may also be the `LibriSpeech` folder itself.)

SUPERB trains ASR and PR on train-clean-100, selects on dev-clean and tests on
test-clean. Phone targets here are eSpeak NG's IPA phones of the transcript
(en-us), the same phone set as the synthetic suite; s3prl's PR uses a
g2p lexicon instead, so PER values are comparable only within evalkit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    first_existing,
    is_prepared,
    manifest_paths,
    require_dir,
    write_prepared,
)
from evalkit.synth.espeak import Voice, engine

SUPERB_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
CORPUS = "librispeech"


def prepare_librispeech(
    src: str | os.PathLike,
    out: str | os.PathLike,
    subsets: Mapping[str, str] | None = None,
    phones: bool = True,
) -> dict[str, Path]:
    """Write `<out>/<split>.jsonl` (id, path, duration, speaker, text, phones).

    `subsets` maps evalkit split names to LibriSpeech subset folders (default:
    SUPERB's). `phones=False` skips the eSpeak transcription (ASR only).
    """
    src, out = Path(src).resolve(), Path(out)
    subsets = dict(subsets or SUPERB_SPLITS)
    options = {"src": str(src), "subsets": subsets, "phones": phones}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    root = _root(src, subsets)
    dirs = {
        split: require_dir(root / name, f"LibriSpeech subset {name!r}") for split, name in subsets.items()
    }
    manifests = {split: _read_subset(d, phones) for split, d in dirs.items()}
    return write_prepared(out, CORPUS, options, manifests)


def _root(src: Path, subsets: Mapping[str, str]) -> Path:
    first = next(iter(subsets.values()))
    found = first_existing([src / first, src / "LibriSpeech" / first], f"LibriSpeech subset {first!r}")
    return found.parent


def _read_subset(subset_dir: Path, phones: bool) -> list[dict]:
    if phones:
        eng, voice = engine(), Voice("en-us")
    records = []
    for chapter in sorted(p for p in subset_dir.glob("*/*") if p.is_dir()):
        spk, chap = chapter.parent.name, chapter.name
        trans = chapter / f"{spk}-{chap}.trans.txt"
        if not trans.is_file():
            raise EvalkitError(
                f"{trans}: transcript file not found for chapter folder {chapter}. Re-extract."
            )
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            if not text:
                raise EvalkitError(f"{trans}:{lineno}: expected '<utterance id> <TRANSCRIPT>', got {line!r}.")
            audio = chapter / f"{utt}.flac"
            if not audio.is_file():
                raise EvalkitError(f"{audio}: audio file listed in {trans}:{lineno} is missing. Re-extract.")
            text = text.lower()
            rec = {"id": utt, "path": str(audio), "duration": duration(audio), "speaker": spk, "text": text}
            if phones:
                rec["phones"] = eng.phonemes(text, voice)
            records.append(rec)
    if not records:
        raise EvalkitError(
            f"{subset_dir}: no <spk>/<chapter>/*.trans.txt found. Is this a LibriSpeech subset?"
        )
    return records
