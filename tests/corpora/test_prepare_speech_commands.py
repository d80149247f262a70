"""Speech Commands v0.01: official lists, 10 words + _unknown_ + _silence_ cut from the noise files."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import audio_path, read_manifest
from evalkit.corpora.speech_commands import prepare_speech_commands

WORD_FILES = [
    "yes/aaa_nohash_0.wav",
    "yes/bbb_nohash_0.wav",
    "no/aaa_nohash_0.wav",
    "bed/ccc_nohash_0.wav",
    "right/ddd_nohash_1.wav",
]


def build(src: Path, audio, text) -> Path:
    for i, rel in enumerate(WORD_FILES):
        audio(src / rel, 0.2, seed=i)
    audio(src / "_background_noise_" / "white_noise.wav", 3.5, seed=10)  # 3 one-second segments
    audio(src / "_background_noise_" / "pink_noise.wav", 11.2, seed=11)  # 11 segments
    text(src / "validation_list.txt", "yes/bbb_nohash_0.wav\n")
    text(src / "testing_list.txt", "no/aaa_nohash_0.wav\nbed/ccc_nohash_0.wav\n")
    return src


def labels(records: list[dict]) -> Counter:
    return Counter(r["label"] for r in records)


def test_lists_labels_and_silence(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "src", audio, text)
    out = tmp_path / "out"
    paths = idempotent(lambda: prepare_speech_commands(src, out))
    train, dev, test = (read_manifest(paths[s]) for s in ("train", "dev", "test"))
    assert [r["id"] for r in train if r["label"] != "_silence_"] == ["right_ddd_nohash_1", "yes_aaa_nohash_0"]
    assert labels(train) == {"right": 1, "yes": 1, "_silence_": 1 + 8}  # segments i % 10 not in {0, 1}
    assert labels(dev) == {"yes": 1, "_silence_": 1 + 2}  # i % 10 == 0
    assert labels(test) == {"no": 1, "_unknown_": 1, "_silence_": 1 + 1}  # i % 10 == 1
    assert {r["speaker"] for r in train if r["label"] == "yes"} == {"aaa"}
    # Each silence record is its own 1-second file: the matching slice of the noise recording.
    noise, _ = sf.read(src / "_background_noise_" / "pink_noise.wav", dtype="float32")
    (seg,) = [r for r in dev if r["id"] == "silence_pink_noise_0010"]
    samples, rate = sf.read(audio_path(paths["dev"], seg), dtype="float32")
    assert rate == 16_000 and seg["duration"] == 1.0
    np.testing.assert_allclose(samples, noise[160_000:176_000], atol=1e-4)


def test_separate_test_archive(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    test_src = tmp_path / "speech_commands_test_set_v0.01"
    audio(test_src / "yes" / "eee_nohash_0.wav", 0.2)
    audio(test_src / "_unknown_" / "fff_nohash_0.wav", 0.2)
    audio(test_src / "_silence_" / "silence_0.wav", 1.0)
    paths = prepare_speech_commands(src, tmp_path / "out", src_test=test_src)
    test = read_manifest(paths["test"])
    assert labels(test) == {"yes": 1, "_unknown_": 1, "_silence_": 1}
    assert all(Path(r["path"]).is_relative_to(test_src) for r in test)
    # testing_list files leave train either way; silence segments that would go to test go to train.
    train = read_manifest(paths["train"])
    assert labels(train) == {"right": 1, "yes": 1, "_silence_": 2 + 9}


def test_missing_list_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "validation_list.txt").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "validation_list.txt"))):
        prepare_speech_commands(src, tmp_path / "out")


def test_list_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "bed" / "ccc_nohash_0.wav").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "bed" / "ccc_nohash_0.wav"))):
        prepare_speech_commands(src, tmp_path / "out")


def test_empty_noise_folder_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    for f in (src / "_background_noise_").iterdir():
        f.unlink()
    with pytest.raises(EvalkitError, match="_background_noise_.*empty"):
        prepare_speech_commands(src, tmp_path / "out")
