"""read_manifest refuses malformed records with file:line and the key, before anything reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.core.errors import ConfigError
from evalkit.core.manifest import audio_path, read_manifest

GOOD = {"id": "a", "path": "wav/a.wav", "duration": 1.5, "speaker": "s"}


def write(tmp_path: Path, *records: dict, raw: bytes = b"") -> Path:
    path = tmp_path / "test.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + raw)
    return path


@pytest.mark.parametrize(
    "key, value",
    [
        ("id", 5),
        ("id", None),
        ("id", ""),
        ("id", ["a"]),
        ("path", ["a.wav"]),
        ("path", None),
        ("path", 3),
        ("path", ""),
        ("duration", "1.5"),
        ("duration", None),
        ("duration", True),
        ("duration", -1),
        ("duration", [1.5]),
    ],
)
def test_a_value_of_the_wrong_type_names_file_line_and_key(tmp_path, key, value):
    path = write(tmp_path, {**GOOD, "id": "first"}, {**GOOD, key: value})
    with pytest.raises(ConfigError) as e:
        read_manifest(path)
    assert f"{path}:2:" in str(e.value) and repr(key) in str(e.value)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_non_finite_duration_is_refused(tmp_path, literal):
    path = write(tmp_path, raw=b'{"id": "a", "path": "a.wav", "duration": ' + literal + b', "speaker": ""}\n')
    with pytest.raises(ConfigError, match=r":1: key 'duration'"):
        read_manifest(path)


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = write(
        tmp_path,
        GOOD,
        raw='{"id": "b", "path": "b.wav", "duration": 1, "speaker": "Jos\xe9"}\n'.encode("latin-1"),
    )
    with pytest.raises(ConfigError, match=r"test\.jsonl:2: not valid UTF-8 \(byte 0xe9") as e:
        read_manifest(path)
    assert "iconv" in str(e.value)


def test_utf8_with_a_byte_order_mark_and_integer_durations_are_read(tmp_path):
    path = write(
        tmp_path, raw=b"\xef\xbb\xbf" + json.dumps({**GOOD, "duration": 2, "speaker": "Jos\u00e9"}).encode()
    )
    assert read_manifest(path) == [{**GOOD, "duration": 2, "speaker": "Jos\u00e9"}]


@pytest.mark.parametrize("rel", ["../../secret.wav", "wav/../../../secret.wav", "../corpus/../../secret.wav"])
def test_a_relative_path_that_climbs_out_of_the_data_root_is_refused(tmp_path, rel):
    path = write(tmp_path, GOOD, {**GOOD, "id": "b", "path": rel})
    with pytest.raises(ConfigError, match=r"test\.jsonl:2: key 'path'.*climbs"):
        read_manifest(path)
    with pytest.raises(ConfigError, match="climbs"):
        audio_path(path, {**GOOD, "path": rel})


@pytest.mark.parametrize(
    "rel", ["./a.wav", "wav/../a.wav", "../other_corpus/a.wav", "/srv/corpora/src/a.wav"]
)
def test_absolute_paths_and_relative_ones_inside_the_data_root_are_read(tmp_path, rel):
    path = write(tmp_path, {**GOOD, "path": rel})
    assert read_manifest(path)[0]["path"] == rel
    expected = Path(rel) if rel.startswith("/") else tmp_path / rel
    assert audio_path(path, {**GOOD, "path": rel}) == expected
