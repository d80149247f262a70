"""LibriSpeech for ASR and PR, with SUPERB's splits.

Layout read (as the OpenSLR archives extract):
    <src>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <src>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
(`src` may also be the `LibriSpeech` folder itself.)

SUPERB trains ASR and PR on train-clean-100, selects on dev-clean and tests on
test-clean. `phones` are eSpeak NG's IPA phones of the transcript (en-us), the
same phone set as the synthetic suite. s3prl's PR uses its own g2p lexicons
instead (s3prl/downstream/ctc/lexicon/librispeech-lexicon-200k-g2p.txt and
librispeech-lexicon-allothers-g2p.txt, in the s3prl repository, not in the
corpus): given them as `g2p_lexicon` (a list of files, or one string of paths
joined by commas), each record also gets `arpabet`, its words' stressed ARPAbet
phones, the first pronunciation of a word that has several (as s3prl's
libriphone.py:50-57), which the faithful `pr_superb` task reads.
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
    require_file,
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
    g2p_lexicon: str | os.PathLike | list | None = None,
) -> dict[str, Path]:
    """Write `<out>/<split>.jsonl` (id, path, duration, speaker, text, phones; with `g2p_lexicon`, arpabet).

    `subsets` maps evalkit split names to LibriSpeech subset folders (default:
    SUPERB's). `phones=False` skips the eSpeak transcription (ASR only).
    """
    src, out = Path(src).resolve(), Path(out)
    subsets = dict(subsets or SUPERB_SPLITS)
    lexicons = _lexicon_paths(g2p_lexicon)
    options = {"src": str(src), "subsets": subsets, "phones": phones} | (
        {"g2p_lexicon": [str(p) for p in lexicons]} if lexicons else {}
    )
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    root = _root(src, subsets)
    dirs = {
        split: require_dir(root / name, f"LibriSpeech subset {name!r}") for split, name in subsets.items()
    }
    manifests = {split: _read_subset(d, phones) for split, d in dirs.items()}
    if lexicons:
        pronounce = read_g2p_lexicons(lexicons)
        for split, records in manifests.items():
            for rec in records:
                rec["arpabet"] = arpabet(rec, pronounce, dirs[split])
    return write_prepared(out, CORPUS, options, manifests)


def _lexicon_paths(value) -> list[Path]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    paths = [Path(str(p).strip()).resolve() for p in items if str(p).strip()]
    for path in paths:
        require_file(path, "g2p lexicon (s3prl/downstream/ctc/lexicon/*-g2p.txt of the s3prl repository)")
    return paths


def read_g2p_lexicons(paths: list[Path]) -> dict[str, list[str]]:
    """WORD -> its first pronunciation over the files in order ("WORD PH1 PH2 ..." per line), as s3prl's
    LibriPhoneDataset builds it."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            word, *phones = line.split()
            if not phones:
                raise EvalkitError(f"{path}:{lineno}: expected 'WORD PHONE PHONE ...', got {line!r}.")
            found.setdefault(word, phones)
    return found


def arpabet(record: dict, pronounce: dict[str, list[str]], subset: Path) -> list[str]:
    """A transcript's words' pronunciations, concatenated (no silence between words, as s3prl)."""
    words = record["text"].upper().split()
    missing = [w for w in words if w not in pronounce]
    if missing:
        raise EvalkitError(
            f"{subset}: utterance {record['id']!r} has word(s) {missing[:3]} that no g2p lexicon lists. Give "
            "both of s3prl's lexicons (librispeech-lexicon-200k-g2p.txt and librispeech-lexicon-allothers-g2p.txt)."
        )
    return [p for w in words for p in pronounce[w]]


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
