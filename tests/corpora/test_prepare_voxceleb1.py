"""VoxCeleb1: SID splits from iden_split.txt; ASV train/dev/test, test trials from veri_test2.txt, dev trials drawn."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora import prepare
from evalkit.corpora.voxceleb1 import balanced_trials, prepare_voxceleb1_asv, prepare_voxceleb1_sid

DEV_UTTS = [
    "id10001/vidA/00001.wav",
    "id10001/vidA/00002.wav",
    "id10001/vidB/00001.wav",
    "id10002/vidC/00001.wav",
    "id10002/vidC/00002.wav",
]
# More VoxCeleb1-dev speakers (not in iden_split.txt), so that ASV can hold 2 out for dev.
MORE_DEV_UTTS = [f"id1000{s}/vid{s}/0000{u}.wav" for s in range(3, 7) for u in range(1, 4)]
TEST_UTTS = ["id10270/vidT/00001.wav", "id10270/vidT/00002.wav", "id10271/vidU/00001.wav"]
IDEN_SPLIT = (
    "1 id10001/vidA/00001.wav\n1 id10001/vidA/00002.wav\n2 id10001/vidB/00001.wav\n"
    "3 id10002/vidC/00001.wav\n1 id10002/vidC/00002.wav\n"
)
TRIALS = "1 id10270/vidT/00001.wav id10270/vidT/00002.wav\n0 id10270/vidT/00001.wav id10271/vidU/00001.wav\n"


def build(
    src: Path, audio, text, s3prl_layout: bool = False, more_speakers: bool = False, seconds: float = 0.2
) -> Path:
    """A miniature VoxCeleb1; `seconds`: about how long each utterance is."""
    for i, rel in enumerate(DEV_UTTS + (MORE_DEV_UTTS if more_speakers else [])):
        audio(src / ("dev/wav" if s3prl_layout else "wav") / rel, seconds + 0.01 * i, seed=i)
    for i, rel in enumerate(TEST_UTTS):
        audio(src / ("test/wav" if s3prl_layout else "wav") / rel, seconds, seed=10 + i)
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
    assert rec["speaker"] == "id10002" and rec["duration"] == pytest.approx(0.23)
    assert rec["path"] == str((src / "wav" / "id10002/vidC/00001.wav").resolve())


def test_asv_train_dev_test_and_trials(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "src", audio, text, s3prl_layout=True, more_speakers=True)
    out = tmp_path / "asv"
    paths = idempotent(lambda: prepare("voxceleb1_asv", src, out))
    assert sorted(paths) == ["dev", "test", "train"]
    train, dev = read_manifest(paths["train"]), read_manifest(paths["dev"])
    train_spk, dev_spk = {r["speaker"] for r in train}, {r["speaker"] for r in dev}
    assert len(dev_spk) == 2 and len(train_spk) == 4 and not train_spk & dev_spk  # 2% of 6 -> at least 2
    assert len(train) + len(dev) == len(DEV_UTTS) + len(MORE_DEV_UTTS)
    assert ids(paths["test"]) == ["id10270-vidT-00001", "id10270-vidT-00002", "id10271-vidU-00001"]
    assert (out / "test_trials.txt").read_text().splitlines() == [
        "1 id10270-vidT-00001 id10270-vidT-00002",
        "0 id10270-vidT-00001 id10271-vidU-00001",
    ]
    speaker = {r["id"]: r["speaker"] for r in dev}
    trials = [line.split() for line in (out / "dev_trials.txt").read_text().splitlines()]
    assert trials and {a for _, a, _ in trials} | {b for _, _, b in trials} <= set(speaker)
    for label, a, b in trials:
        assert a != b and (label == "1") == (speaker[a] == speaker[b])
    labels = [t[0] for t in trials]
    assert labels.count("1") == labels.count("0") > 0
    assert len({frozenset(t[1:]) for t in trials}) == len(trials)


def test_asv_dev_split_is_seeded(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text, more_speakers=True)
    made = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1), ("d", 2), ("e", 3)):
        prepare_voxceleb1_asv(src, tmp_path / name, seed=seed)
        made[name] = (
            (tmp_path / name / "dev.jsonl").read_text(),
            (tmp_path / name / "dev_trials.txt").read_text(),
        )
    assert made["a"] == made["b"]
    assert (
        len({dev for dev, _ in made.values()}) > 1
    )  # 15 possible pairs of speakers: seeds 0-3 differ somewhere


def test_asv_needs_speakers_to_hold_out(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)  # only 2 training speakers
    with pytest.raises(EvalkitError, match="only 2 training speakers.*vox1_dev_wav"):
        prepare_voxceleb1_asv(src, tmp_path / "asv")
    with pytest.raises(EvalkitError, match="dev_speakers"):
        prepare_voxceleb1_asv(src, tmp_path / "asv", dev_speakers=0)


def test_balanced_trials_at_voxceleb_scale():
    """24 held-out speakers x 120 utterances: 4000 distinct trials, half target, drawn without enumerating."""
    by_speaker = {f"s{s:02d}": [f"s{s:02d}-u{u:03d}" for u in range(120)] for s in range(24)}
    trials = balanced_trials(by_speaker, 4000, random.Random(0))
    assert len(trials) == 4000 and sum(label for label, _, _ in trials) == 2000
    assert len({(a, b) for _, a, b in trials}) == 4000
    for label, a, b in trials:
        assert a < b and label == (a[:3] == b[:3])
    assert trials == balanced_trials(by_speaker, 4000, random.Random(0))
    assert trials != balanced_trials(by_speaker, 4000, random.Random(1))


def test_balanced_trials_when_few_pairs_exist():
    by_speaker = {"a": ["a1", "a2"], "b": ["b1", "b2"]}  # 2 target pairs, 4 non-target pairs
    trials = balanced_trials(by_speaker, 100, random.Random(0))
    assert sorted(t for t in trials if t[0] == 1) == [(1, "a1", "a2"), (1, "b1", "b2")]
    assert len([t for t in trials if t[0] == 0]) == 2 and len(set(trials)) == 4


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
