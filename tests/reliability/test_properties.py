"""Random bytes and random structures into every reader of user input: a clear error, never a crash.

`EvalkitError` (exit 2 with a message) or a valid result are the only allowed outcomes; any other
exception is a traceback a user would see. Hypothesis shrinks a failure to its smallest input.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.core.audio import load_audio
from evalkit.core.errors import EvalkitError
from evalkit.core.io import read_json_object
from evalkit.core.manifest import read_manifest
from evalkit.core.results import REQUIRED
from evalkit.evaluation.task import load_task_file
from evalkit.leaderboard.collect import check_result
from evalkit.pretraining.recipe import config_from_dict, load_config

# derandomized: CI must not turn red on an example no one has seen; run with HYPOTHESIS_PROFILE=explore
# (more examples, random) to look for new ones
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SETTINGS = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Structures that look like the real thing: the keys readers look for, with random values.
MANIFEST_KEYS = ["id", "path", "duration", "speaker", "text", "label"]
RESULT_KEYS = list(REQUIRED)
TASK_KEYS = [
    "name",
    "version",
    "kind",
    "corpus",
    "heads",
    "metrics",
    "steps",
    "lr_grid",
    "labels",
    "optimizer",
]
RECIPE_KEYS = ["method", "encoder", "objective", "data", "optim", "train"]


def keyed(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values, max_size=len(keys))


def written(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    (folder / name).write_bytes(data)
    return folder / name


def clear_error_or_value(read, path: Path) -> None:
    try:
        read(path)
    except EvalkitError as e:
        assert str(path.name) in str(e) or str(path) in str(e), f"the message does not name the file: {e}"


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_as_a_manifest(data):
    clear_error_or_value(read_manifest, written(data, "train.jsonl"))


@SETTINGS
@given(st.lists(keyed(MANIFEST_KEYS), max_size=4))
def test_random_records_as_a_manifest(records):
    text = "".join(json.dumps(r) + "\n" for r in records)
    clear_error_or_value(read_manifest, written(text.encode(), "train.jsonl"))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_as_a_json_file(data):
    clear_error_or_value(lambda p: read_json_object(p, "result"), written(data, "ks.json"))


@SETTINGS
@given(keyed(RESULT_KEYS))
def test_random_structures_as_a_result_file(data):
    clear_error_or_value(check_result, written(json.dumps(data).encode(), "ks.json"))


@SETTINGS
@given(st.binary(max_size=300) | keyed(TASK_KEYS).map(lambda d: yaml.safe_dump(d).encode()))
def test_random_task_files(data):
    clear_error_or_value(load_task_file, written(data, "task.yaml"))


@SETTINGS
@given(st.binary(max_size=300) | keyed(RECIPE_KEYS).map(lambda d: yaml.safe_dump(d).encode()))
def test_random_pretraining_recipes(data):
    clear_error_or_value(load_config, written(data, "recipe.yaml"))


@SETTINGS
@given(keyed(RECIPE_KEYS))
def test_random_pretraining_recipe_structures(data):
    try:
        config_from_dict(data, source="recipe.yaml")
    except EvalkitError as e:
        assert "recipe.yaml" in str(e)


@SETTINGS
@given(st.binary(max_size=2000), st.sampled_from(["a.wav", "a.flac", "a.ogg"]))
def test_random_bytes_as_audio(data, name):
    clear_error_or_value(load_audio, written(data, name))


@SETTINGS
@given(st.binary(min_size=0, max_size=400))
def test_a_wav_header_followed_by_random_bytes(data):
    header = (
        b"RIFF"
        + (36 + len(data)).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + (16000).to_bytes(4, "little")
        + (32000).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + len(data).to_bytes(4, "little")
    )
    clear_error_or_value(load_audio, written(header + data, "a.wav"))
