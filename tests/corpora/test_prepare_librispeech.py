"""LibriSpeech: SUPERB splits, lower-case text, eSpeak phones, errors that name the missing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora import prepare
from evalkit.corpora.librispeech import prepare_librispeech

UTTERANCES = {
    "train-clean-100": {("19", "198"): ["YES NO", "STOP RIGHT THERE"], ("26", "495"): ["GO LEFT"]},
    "dev-clean": {("84", "121123"): ["TURN OFF THE LIGHT"]},
    "test-clean": {("1089", "134686"): ["UP AND DOWN", "ON"]},
}


def build(root: Path, audio, text) -> Path:
    for subset, chapters in UTTERANCES.items():
        for (spk, chap), lines in chapters.items():
            folder = root / "LibriSpeech" / subset / spk / chap
            trans = []
            for i, line in enumerate(lines):
                utt = f"{spk}-{chap}-{i:04d}"
                audio(folder / f"{utt}.flac", 0.25 + 0.05 * i)
                trans.append(f"{utt} {line}\n")
            text(folder / f"{spk}-{chap}.trans.txt", "".join(trans))
    return root


def test_manifests_follow_superb_splits(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "src", audio, text)
    paths = idempotent(lambda: prepare_librispeech(src, tmp_path / "out"))
    assert sorted(paths) == ["dev", "test", "train"]
    train = read_manifest(paths["train"])
    assert [r["id"] for r in train] == ["19-198-0000", "19-198-0001", "26-495-0000"]
    assert [r["speaker"] for r in train] == ["19", "19", "26"]
    assert train[1]["text"] == "stop right there"
    assert train[1]["duration"] == pytest.approx(0.30)
    assert Path(train[0]["path"]).is_absolute() and Path(train[0]["path"]).is_file()
    # eSpeak's en-us phones of "yes no": /j ɛ s n oʊ/.
    assert train[0]["phones"] == ["j", "ɛ", "s", "n", "oʊ"]
    assert [r["text"] for r in read_manifest(paths["test"])] == ["up and down", "on"]
    assert len(read_manifest(paths["dev"])) == 1


def test_registry_and_options(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text) / "LibriSpeech"  # src may be the LibriSpeech folder itself
    paths = prepare("librispeech", src, tmp_path / "out", subsets={"train": "dev-clean"}, phones=False)
    assert list(paths) == ["train"]
    (rec,) = read_manifest(paths["train"])
    assert rec["text"] == "turn off the light" and "phones" not in rec
    # Other options on the same folder rebuild instead of trusting the old marker.
    paths = prepare("librispeech", src, tmp_path / "out", subsets={"train": "dev-clean"})
    (rec,) = read_manifest(paths["train"])
    assert rec["phones"][:3] == ["t", "ɜː", "n"]


def test_missing_transcript_file_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    trans = src / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(trans))):
        prepare_librispeech(src, tmp_path / "out", phones=False)


def test_transcript_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    flac = src / "LibriSpeech" / "test-clean" / "1089" / "134686" / "1089-134686-0001.flac"
    flac.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(flac))):
        prepare_librispeech(src, tmp_path / "out", phones=False)
    assert not (tmp_path / "out" / "train.jsonl").exists()  # nothing half-written


def test_missing_subset_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    for p in sorted((src / "LibriSpeech" / "test-clean").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    with pytest.raises(EvalkitError, match="test-clean"):
        prepare_librispeech(src, tmp_path / "out", phones=False)


G2P = {  # s3prl's lexicon format: WORD, then stressed ARPAbet; a second file and a second pronunciation
    "lexicon-200k-g2p.txt": "YES Y EH1 S\nNO N OW1\nSTOP S T AA1 P\nRIGHT R AY1 T\nTHERE DH EH1 R\nGO G OW1\n"
    "LEFT L EH1 F T\nTURN T ER1 N\nOFF AO1 F\nTHE DH AH0\nLIGHT L AY1 T\nUP AH1 P\nAND AH0 N D\nDOWN D AW1 N\n",
    "lexicon-allothers-g2p.txt": "ON AA1 N\nTHE DH IY0\n",
}


def write_g2p_lexicons(folder: Path) -> str:
    """Miniature s3prl g2p lexicons; returns the `g2p_lexicon` option (paths joined by commas)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in G2P.items():
        (folder / name).write_text(body)
    return ",".join(str(folder / name) for name in G2P)


def test_g2p_lexicons_give_s3prls_phones(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    paths = prepare_librispeech(
        src, tmp_path / "out", phones=False, g2p_lexicon=write_g2p_lexicons(tmp_path / "lex")
    )
    train = {r["id"]: r for r in read_manifest(paths["train"])}
    assert train["19-198-0000"]["arpabet"] == ["Y", "EH1", "S", "N", "OW1"]
    dev = read_manifest(paths["dev"])
    # THE has two pronunciations (one per file): the first one read is taken, as s3prl does
    assert dev[0]["arpabet"] == ["T", "ER1", "N", "AO1", "F", "DH", "AH0", "L", "AY1", "T"]
    (tmp_path / "lex" / "lexicon-allothers-g2p.txt").write_text("THE DH IY0\n")  # ON is gone
    lexicons = [tmp_path / "lex" / name for name in G2P]
    with pytest.raises(EvalkitError, match=r"word\(s\) \['ON'\] that no g2p lexicon lists"):
        prepare_librispeech(src, tmp_path / "out2", phones=False, g2p_lexicon=lexicons)
