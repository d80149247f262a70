"""Speech Commands v0.01 for keyword spotting (SUPERB KS: 10 words + unknown + silence).

Layout read (speech_commands_v0.01.tar.gz):
    <src>/<word>/<speaker hash>_nohash_<n>.wav
    <src>/validation_list.txt, <src>/testing_list.txt   (paths relative to src)
    <src>/_background_noise_/*.wav
and optionally the separate test archive (speech_commands_test_set_v0.01),
which SUPERB tests on:
    <src_test>/<label>/*.wav   with labels the 10 words, _unknown_, _silence_

Splits: dev = validation_list, test = the test archive when given, else
testing_list, train = every other word file. `_silence_` for train/dev (and
test without the archive) is cut from the background-noise files: each file
is split into consecutive 1-second segments written as WAVs under
`<out>/_silence_/`; segment i of a file goes to dev when i % 10 == 0, to test
when i % 10 == 1 and no test archive is given, and to train otherwise. s3prl
instead crops a random second at load time; fixed files make every record
reproducible and cacheable. `train_s3prl` and `dev_s3prl` are s3prl's: the same
word files, and every noise file whole as a `_silence_` record in both
(s3prl/downstream/speech_commands/dataset.py:60-65), for a task that crops a
random second at each draw (the faithful `ks_superb`: `crop: {seconds: 1.0}`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from evalkit.core.audio import SAMPLE_RATE, load_audio, save_wav
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

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_DIR = "_background_noise_"
CORPUS = "speech_commands"


def prepare_speech_commands(
    src: str | os.PathLike, out: str | os.PathLike, src_test: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Write `<out>/{train,dev,test}.jsonl` with `label` (keyword, _unknown_ or _silence_)."""
    src, out = Path(src).resolve(), Path(out)
    test_root = Path(src_test).resolve() if src_test is not None else None
    # format 2: train_s3prl and dev_s3prl came in
    options = {"src": str(src), "src_test": str(test_root) if test_root else None, "format": 2}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    dev_list = require_file(src / "validation_list.txt", "Speech Commands validation list")
    test_list = require_file(src / "testing_list.txt", "Speech Commands testing list")
    noise_dir = require_dir(src / NOISE_DIR, "background-noise folder", "*.wav")
    words = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not words:
        raise EvalkitError(
            f"{src}: no word folders found (expected e.g. {src / 'yes'}). Point src at the corpus."
        )
    listed = set(_read_list(dev_list)) | set(_read_list(test_list))
    train = [f"{w.name}/{f.name}" for w in words for f in sorted(w.glob("*.wav"))]
    manifests = {
        "train": [_word_record(src, rel, src) for rel in train if rel not in listed],
        "dev": [_word_record(src, rel, dev_list) for rel in _read_list(dev_list)],
        "test": (
            [_word_record(src, rel, test_list) for rel in _read_list(test_list)]
            if test_root is None
            else _read_test_archive(test_root)
        ),
    }
    noise = [_noise_record(f) for f in sorted(noise_dir.glob("*.wav"))]
    manifests["train_s3prl"] = manifests["train"] + noise
    manifests["dev_s3prl"] = manifests["dev"] + noise
    for split, recs in _silence_records(noise_dir, out, with_test=test_root is None).items():
        manifests[split].extend(recs)
    return write_prepared(out, CORPUS, options, manifests)


def _noise_record(noise: Path) -> dict:
    """A background-noise file, whole, as a `_silence_` record (s3prl reads a random second of it)."""
    return {
        "id": f"noise_{noise.stem}",
        "path": str(noise),
        "duration": duration(noise),
        "speaker": "",
        "label": SILENCE,
    }


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _label(word: str) -> str:
    return word if word in KEYWORDS or word in (UNKNOWN, SILENCE) else UNKNOWN


def _speaker(filename: str) -> str:
    m = re.match(r"(.+?)_nohash_", filename)
    return m.group(1) if m else ""


def _word_record(root: Path, rel: str, listed_in: Path) -> dict:
    audio = require_audio(root / rel, listed_in)
    word = audio.parent.name
    return {
        "id": f"{word}_{audio.stem}",
        "path": str(audio),
        "duration": duration(audio),
        "speaker": _speaker(audio.name),
        "label": _label(word),
    }


def _read_test_archive(root: Path) -> list[dict]:
    labels = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    records = [
        _word_record(root, f"{d.name}/{f.name}", root) for d in labels for f in sorted(d.glob("*.wav"))
    ]
    if not records:
        raise EvalkitError(
            f"{root}: no <label>/*.wav found in the Speech Commands test archive "
            "(speech_commands_test_set_v0.01). Check src_test."
        )
    return records


def _silence_records(noise_dir: Path, out: Path, with_test: bool) -> dict[str, list[dict]]:
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    seg_dir = out / SILENCE
    for noise in sorted(noise_dir.glob("*.wav")):
        wav = load_audio(noise)
        for i in range(len(wav) // SAMPLE_RATE):
            name = f"{noise.stem}_{i:04d}"
            save_wav(seg_dir / f"{name}.wav", wav[i * SAMPLE_RATE : (i + 1) * SAMPLE_RATE])
            split = "dev" if i % 10 == 0 else "test" if i % 10 == 1 and with_test else "train"
            splits[split].append(
                {
                    "id": f"silence_{name}",
                    "path": f"{SILENCE}/{name}.wav",
                    "duration": 1.0,
                    "speaker": "",
                    "label": SILENCE,
                }
            )
    return splits
