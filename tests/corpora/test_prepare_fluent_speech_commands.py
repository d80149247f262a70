"""Fluent Speech Commands: official CSV splits, action/object/location labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora.fluent_speech_commands import prepare_fluent_speech_commands

HEADER = ",path,speakerId,transcription,action,object,location\n"
ROWS = {
    "train_data.csv": [
        ("spkA", "u1", "Turn on the lights", "activate", "lights", "none"),
        ("spkA", "u2", "Bring me my shoes", "bring", "shoes", "none"),
        ("spkB", "u3", "Heat up the kitchen", "increase", "heat", "kitchen"),
    ],
    "valid_data.csv": [("spkC", "u4", "Switch the language", "change language", "none", "none")],
    "test_data.csv": [("spkD", "u5", "Volume down", "decrease", "volume", "none")],
}


def build(root: Path, audio, text) -> Path:
    for name, rows in ROWS.items():
        lines = [HEADER]
        for i, (spk, uid, trans, action, obj, loc) in enumerate(rows):
            rel = f"wavs/speakers/{spk}/{uid}.wav"
            audio(root / rel, 0.3, seed=i)
            lines.append(f'{i},{rel},{spk},"{trans}",{action},{obj},{loc}\n')
        text(root / "data" / name, "".join(lines))
    return root


def test_splits_and_intent_labels(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "fluent_speech_commands_dataset", audio, text)
    paths = idempotent(lambda: prepare_fluent_speech_commands(src, tmp_path / "out"))
    train = read_manifest(paths["train"])
    assert [r["id"] for r in train] == ["spkA_u1", "spkA_u2", "spkB_u3"]
    assert train[2] | {"path": None} == {
        "id": "spkB_u3",
        "path": None,
        "duration": 0.3,
        "speaker": "spkB",
        "text": "Heat up the kitchen",
        "action": "increase",
        "object": "heat",
        "location": "kitchen",
    }
    assert read_manifest(paths["dev"])[0]["action"] == "change language"
    assert [r["speaker"] for r in read_manifest(paths["test"])] == ["spkD"]


def test_src_may_be_the_parent_folder(tmp_path, audio, text):
    build(tmp_path / "fluent_speech_commands_dataset", audio, text)
    paths = prepare_fluent_speech_commands(tmp_path, tmp_path / "out")
    assert len(read_manifest(paths["train"])) == 3


def test_missing_split_file_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "data" / "valid_data.csv").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "data" / "valid_data.csv"))):
        prepare_fluent_speech_commands(src, tmp_path / "out")


def test_row_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    missing = src / "wavs" / "speakers" / "spkD" / "u5.wav"
    missing.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(missing)) + ".*test_data.csv:2"):
        prepare_fluent_speech_commands(src, tmp_path / "out")


def test_missing_column_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    csv = src / "data" / "test_data.csv"
    csv.write_text(csv.read_text().replace("location", "place"))
    with pytest.raises(EvalkitError, match="test_data.csv: missing column.*location"):
        prepare_fluent_speech_commands(src, tmp_path / "out")
