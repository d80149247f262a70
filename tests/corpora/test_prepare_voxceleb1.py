"""VoxCeleb1: SID splits from iden_split.txt; ASV train/test and trials from veri_test2.txt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.corpora import prepare
from evalkit.corpora.voxceleb1 import prepare_voxceleb1_asv, prepare_voxceleb1_sid
from evalkit.errors import EvalkitError
from evalkit.manifest import read_manifest

DEV_UTTS = ["id10001/vidA/00001.wav", "id10001/vidA/00002.wav", "id10001/vidB/00001.wav",
            "id10002/vidC/00001.wav", "id10002/vidC/00002.wav"]
TEST_UTTS = ["id10270/vidT/00001.wav", "id10270/vidT/00002.wav", "id10271/vidU/00001.wav"]
IDEN_SPLIT = "1 id10001/vidA/00001.wav\n1 id10001/vidA/00002.wav\n2 id10001/vidB/00001.wav\n" \
             "3 id10002/vidC/00001.wav\n1 id10002/vidC/00002.wav\n"
TRIALS = "1 id10270/vidT/00001.wav id10270/vidT/00002.wav\n0 id10270/vidT/00001.wav id10271/vidU/00001.wav\n"


def build(src: Path, audio, text, s3prl_layout: bool = False) -> Path:
    for i, rel in enumerate(DEV_UTTS):
        audio(src / ("dev/wav" if s3prl_layout else "wav") / rel, 0.2 + 0.1 * i, seed=i)
    for i, rel in enumerate(TEST_UTTS):
        audio(src / ("test/wav" if s3prl_layout else "wav") / rel, 0.2, seed=10 + i)
    text(src / "iden_split.txt", IDEN_SPLIT)
    text(src / "meta" / "veri_test2.txt", TRIALS)
    return src


def ids(path: Path) -> list[str]:
    return [r["id"] for r in read_manifest(path)]


def test_sid_splits(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "src", audio, text)
    paths = idempotent(lambda: prepare_voxceleb1_sid(src, tmp_path / "sid"))
    assert ids(paths["train"]) == ["id10001-vidA-00001", "id10001-vidA-00002", "id10002-vidC-00002"]
    assert ids(paths["dev"]) == ["id10001-vidB-00001"]
    (rec,) = read_manifest(paths["test"])
    assert rec["speaker"] == "id10002" and rec["duration"] == pytest.approx(0.5)
    assert rec["path"] == str((src / "wav" / "id10002/vidC/00001.wav").resolve())


def test_asv_train_test_and_trials(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "src", audio, text, s3prl_layout=True)
    out = tmp_path / "asv"
    paths = idempotent(lambda: prepare("voxceleb1_asv", src, out))
    assert sorted(paths) == ["test", "train"]
    train = read_manifest(paths["train"])
    assert {r["speaker"] for r in train} == {"id10001", "id10002"} and len(train) == 5
    assert ids(paths["test"]) == ["id10270-vidT-00001", "id10270-vidT-00002", "id10271-vidU-00001"]
    assert (out / "test_trials.txt").read_text().splitlines() == [
        "1 id10270-vidT-00001 id10270-vidT-00002",
        "0 id10270-vidT-00001 id10271-vidU-00001",
    ]
    test_ids = set(ids(paths["test"]))
    for line in (out / "test_trials.txt").read_text().splitlines():
        assert set(line.split()[1:]) <= test_ids


def test_missing_split_file_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "iden_split.txt").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src.resolve() / "iden_split.txt"))):
        prepare_voxceleb1_sid(src, tmp_path / "sid")


def test_missing_trial_list_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "meta" / "veri_test2.txt").unlink()
    with pytest.raises(EvalkitError, match="veri_test2.txt"):
        prepare_voxceleb1_asv(src, tmp_path / "asv")


def test_trial_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    missing = src / "wav" / "id10271" / "vidU" / "00001.wav"
    missing.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(missing.resolve())) + ".*veri_test2.txt:2"):
        prepare_voxceleb1_asv(src, tmp_path / "asv")
