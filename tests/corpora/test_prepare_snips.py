"""Audio SNIPS: speaker-disjoint splits, IOB tags -> slots with character offsets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora.snips import iob_to_slots, prepare_snips

LINES = [
    (
        "Ivy-snips-train-0",
        "add sabrina salerno to the grime instrumentals playlist",
        "O B-artist I-artist O O B-playlist I-playlist O",
        "AddToPlaylist",
    ),
    (
        "Joanna-snips-train-1",
        "what is the weather in Paris , France ? ... & more",
        "O O O O O B-city O B-country O O O O",
        "GetWeather",
    ),
    ("Brian-snips-train-2", "play queen", "O B-artist", "PlayMusic"),  # a test voice: not in train
    ("Aditi-snips-valid-0", "book a table for two", "O O O O party_size_number", "BookRestaurant"),
    ("Salli-snips-valid-0", "book a table for two", "O O O O party_size_number", "BookRestaurant"),
    (
        "Brian-snips-test-0",
        "rate this book 5 stars",
        "O B-object_select B-object_type B-rating_value B-rating_unit",
        "RateBook",
    ),
]


def build(src: Path, audio, text) -> Path:
    lines = []
    for i, (uid, words, tags, intent) in enumerate(LINES):
        lines.append(f"{uid} BOS {words} EOS\tO {tags} {intent}\n")
        split = uid.split("-")[2]
        audio(src / split / uid.split("-")[0] / f"{uid}.wav", 0.2 + 0.1 * i, seed=i)
    text(src / "all.iob.snips.txt", "".join(lines))
    return src


def test_splits_text_and_slots(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "SNIPS", audio, text)
    paths = idempotent(lambda: prepare_snips(tmp_path, tmp_path / "out"))  # src may be SNIPS' parent
    train = read_manifest(paths["train"])
    assert [r["id"] for r in train] == ["Ivy-snips-train-0", "Joanna-snips-train-1"]
    first, second = train
    assert first["text"] == "add sabrina salerno to the grime instrumentals playlist"
    assert first["slots"] == [
        {"type": "artist", "value": "sabrina salerno", "start": 4, "end": 19},
        {"type": "playlist", "value": "grime instrumentals", "start": 27, "end": 46},
    ]
    assert first["intent"] == "AddToPlaylist" and first["speaker"] == "Ivy"
    # as s3prl's encoder: a word that is a substring of "?!.,;-" goes ("..." is not one), "&" is "and"
    assert second["text"] == "what is the weather in paris france ... and more"
    assert [(s["type"], s["value"]) for s in second["slots"]] == [("city", "paris"), ("country", "france")]
    (dev,) = read_manifest(paths["dev"])
    assert dev["id"] == "Aditi-snips-valid-0"
    assert dev["slots"] == [{"type": "party_size_number", "value": "two", "start": 17, "end": 20}]
    (test,) = read_manifest(paths["test"])
    assert [s["value"] for s in test["slots"]] == ["this", "book", "5", "stars"]
    assert test["path"] == str(src.resolve() / "test" / "Brian" / "Brian-snips-test-0.wav")
    for rec in train + [dev, test]:
        for slot in rec["slots"]:
            assert rec["text"][slot["start"] : slot["end"]] == slot["value"]


def test_slot_types_are_counted_as_s3prls_preparation_counts_them(tmp_path, audio, text):
    """slots.txt (the faithful SF task's output layer): O first, then the types by falling count of their tags
    (artist 3, playlist and party_size_number 2, ...; ties in order of first use)."""
    build(tmp_path / "SNIPS", audio, text)
    prepare_snips(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "slots.txt").read_text().split("\n") == [
        "O", "artist", "playlist", "party_size_number", "city", "country",
        "object_select", "object_type", "rating_value", "rating_unit", "",
    ]  # fmt: skip


def test_slot_types_of_s3prls_preparation_are_copied(tmp_path, audio, text):
    src = build(tmp_path / "SNIPS", audio, text)
    text(src / "slots.txt", "O\ncity\nartist")  # s3prl writes no final newline
    prepare_snips(src, tmp_path / "out")
    assert (tmp_path / "out" / "slots.txt").read_text() == "O\ncity\nartist\n"
    text(src / "slots.txt", "\n")
    with pytest.raises(EvalkitError, match=r"slots\.txt: empty"):
        prepare_snips(src, tmp_path / "out2")


def test_iob_to_slots_splits_adjacent_same_type_on_b():
    got = iob_to_slots(["a", "b", "c", "d"], ["B-x", "B-x", "I-x", "I-y"])
    assert [(s["value"], s["type"]) for s in got["slots"]] == [("a", "x"), ("b c", "x"), ("d", "y")]


def test_missing_transcripts_are_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "all.iob.snips.txt").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src.resolve() / "all.iob.snips.txt"))):
        prepare_snips(src, tmp_path / "out")


def test_transcript_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    (src / "valid" / "Aditi" / "Aditi-snips-valid-0.wav").unlink()
    with pytest.raises(EvalkitError, match=r"Aditi-snips-valid-0\.wav.*all\.iob\.snips\.txt:4"):
        prepare_snips(src, tmp_path / "out")


def test_malformed_line_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    with open(src / "all.iob.snips.txt", "a") as f:
        f.write("Ivy-snips-train-9 BOS two words EOS\tO B-x PlayMusic\n")
    with pytest.raises(EvalkitError, match=r"all\.iob\.snips\.txt:7: .*one tag per word"):
        prepare_snips(src, tmp_path / "out")
