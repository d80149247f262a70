"""QUESST 2014: English queries and documents, occurrences from the ground-truth RTTM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora.quesst14 import prepare_quesst14

DOCS = {
    "quesst14_00001": "nnenglish",
    "quesst14_00002": "nnenglish",
    "quesst14_00003": "nnenglish",
    "quesst14_00004": "basque",
}
DEV = {"quesst14_dev_0001": "nnenglish", "quesst14_dev_0002": "basque"}
EVAL = {"quesst14_eval_0001": "nnenglish"}
DEV_RTTM = (
    "LEXEME quesst14_00001 1 0.120 0.300 quesst14_dev_0001 lex <NA> <NA>\n"
    "LEXEME quesst14_00004 1 0.500 0.200 quesst14_dev_0002 lex <NA> <NA>\n"
)
EVAL_RTTM = (
    "LEXEME quesst14_00002 1 0.05 0.25 quesst14_eval_0001 lex <NA> <NA>\n"
    "LEXEME quesst14_00003 1 0.2 0.1 <NA> lex quesst14_eval_0001 <NA>\n"
)


def build(root: Path, audio, text, prefix: str = "quesst14Database/") -> Path:
    for folder, items, lst in (
        ("Audio", DOCS, "utterances"),
        ("dev_queries", DEV, "dev"),
        ("eval_queries", EVAL, "eval"),
    ):
        lines = []
        for i, (name, lang) in enumerate(items.items()):
            audio(root / folder / f"{name}.wav", 0.5, sample_rate=8000, seed=i)
            lines.append(f"{prefix}{folder}/{name}.wav {lang}\n")
        text(root / "scoring" / f"language_key_{lst}.lst", "".join(lines))
    text(root / "scoring" / "groundtruth_quesst14_dev" / "quesst14_dev.rttm", DEV_RTTM)
    text(root / "scoring" / "groundtruth_quesst14_eval" / "quesst14_eval.rttm", EVAL_RTTM)
    return root


def test_english_queries_documents_and_occurrences(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "quesst14Database", audio, text)
    paths = idempotent(lambda: prepare_quesst14(src, tmp_path / "out"))
    assert sorted(paths) == ["dev", "test"]
    dev = {r["id"]: r for r in read_manifest(paths["dev"])}
    assert sorted(dev) == ["quesst14_00001", "quesst14_00002", "quesst14_00003", "quesst14_dev_0001"]
    assert (
        dev["quesst14_dev_0001"]["role"] == "query"
        and dev["quesst14_dev_0001"]["term"] == "quesst14_dev_0001"
    )
    assert dev["quesst14_00001"]["role"] == "document" and dev["quesst14_00001"]["text"] == ""
    assert dev["quesst14_00001"]["occurrences"] == [{"term": "quesst14_dev_0001", "start": 0.12, "end": 0.42}]
    assert dev["quesst14_00002"]["occurrences"] == []
    assert dev["quesst14_00001"]["duration"] == pytest.approx(0.5)
    test = {r["id"]: r for r in read_manifest(paths["test"])}
    assert [i for i, r in test.items() if r["role"] == "query"] == ["quesst14_eval_0001"]
    assert test["quesst14_00002"]["occurrences"] == [
        {"term": "quesst14_eval_0001", "start": 0.05, "end": 0.3}
    ]
    assert test["quesst14_00003"]["occurrences"] == [{"term": "quesst14_eval_0001", "start": 0.2, "end": 0.3}]


def test_language_option_and_parent_src(tmp_path, audio, text):
    build(tmp_path / "quesst14Database", audio, text)
    with pytest.raises(EvalkitError, match="language_key_eval.lst: lists no 'basque' audio"):
        prepare_quesst14(tmp_path, tmp_path / "out", language="basque")


def test_list_paths_already_relative_to_the_database(tmp_path, audio, text):
    src = build(tmp_path / "db", audio, text, prefix="")
    paths = prepare_quesst14(src, tmp_path / "out")
    assert len(read_manifest(paths["test"])) == 1 + 3


def test_missing_list_is_named(tmp_path, audio, text):
    src = build(tmp_path / "quesst14Database", audio, text)
    (src / "scoring" / "language_key_dev.lst").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "scoring" / "language_key_dev.lst"))):
        prepare_quesst14(src, tmp_path / "out")


def test_missing_ground_truth_is_named(tmp_path, audio, text):
    src = build(tmp_path / "quesst14Database", audio, text)
    rttm = src / "scoring" / "groundtruth_quesst14_eval" / "quesst14_eval.rttm"
    rttm.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(rttm))):
        prepare_quesst14(src, tmp_path / "out")


def test_list_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "quesst14Database", audio, text)
    (src / "Audio" / "quesst14_00002.wav").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "Audio" / "quesst14_00002.wav"))):
        prepare_quesst14(src, tmp_path / "out")


def test_scope_files_hold_every_language(tmp_path, audio, text):
    """What QUESST's scorer counts: every query and document of the split, in every language, and where
    each query occurs (the Basque query's Basque document too)."""
    import json

    src = build(tmp_path / "quesst14Database", audio, text)
    prepare_quesst14(src, tmp_path / "out")
    dev = json.loads((tmp_path / "out" / "dev_scope.json").read_text())
    assert dev["queries"] == ["quesst14_dev_0001", "quesst14_dev_0002"]
    assert dev["documents"] == sorted(DOCS)
    assert dev["occurrences"] == {
        "quesst14_dev_0001": ["quesst14_00001"],
        "quesst14_dev_0002": ["quesst14_00004"],
    }
    test = json.loads((tmp_path / "out" / "test_scope.json").read_text())
    assert test["occurrences"] == {"quesst14_eval_0001": ["quesst14_00002", "quesst14_00003"]}
