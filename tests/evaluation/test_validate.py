"""`evalkit validate` applies the checks `evalkit eval` applies, audio contents included.

Before, validate only checked that audio files existed: a suite holding NaN samples or a text file
saved as `.wav` passed, as did a manifest whose durations the audio does not have; and a test label
never seen in training passed both commands without a word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_bad_manifests import evaluate, make_corpus, write_task

from evalkit.cli import main


@pytest.fixture
def corpus(tmp_path) -> Path:
    make_corpus(tmp_path / "data" / "c")
    write_task(tmp_path / "tasks", "c", "c")
    return tmp_path


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def nan_audio(root: Path) -> str:
    audio = np.zeros(8000, np.float32)
    audio[100] = np.nan
    soundfile.write(root / "data/c/wav/test_1.wav", audio, 16_000, subtype="FLOAT")  # keeps the NaN
    return "test_1"


def text_as_wav(root: Path) -> str:
    (root / "data/c/wav/test_2.wav").write_text("id\tpath\nthis is a table, not audio\n")
    return "test_2.wav"


def wrong_duration(root: Path) -> str:
    manifest = root / "data/c/test.jsonl"
    records = _records(manifest)
    records[3]["duration"] = 5.0
    _write(manifest, records)
    return "test_3"


def missing_audio(root: Path) -> str:
    (root / "data/c/wav/test_0.wav").unlink()
    return "test_0"


@pytest.mark.parametrize("breakage", [nan_audio, text_as_wav, wrong_duration, missing_audio])
def test_validate_and_eval_refuse_the_same_broken_audio(corpus, capsys, breakage):
    assert main(["validate", str(corpus / "data/c")]) == 0
    capsys.readouterr()
    named = breakage(corpus)
    assert main(["validate", str(corpus / "data/c")]) == 2
    out, err = capsys.readouterr()
    fails = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert fails and all("test.jsonl" in line or "test_" in line for line in fails), out
    assert any(named in line for line in fails), out
    assert "Traceback" not in err
    assert evaluate(corpus, "c") == 2  # eval stops on the same file, before a result is written
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not (corpus / "out/fbank/c.json").exists()


def test_headers_only_skips_decoding_but_still_checks_lengths(corpus, capsys):
    nan_audio(corpus)
    assert main(["validate", "--headers-only", str(corpus / "data/c")]) == 0
    assert "audio headers checked" in capsys.readouterr().out
    wrong_duration(corpus)
    assert main(["validate", "--headers-only", str(corpus / "data/c")]) == 2


def test_a_test_label_never_seen_in_training_is_a_warning_in_validate_and_eval(corpus, capsys):
    manifest = corpus / "data/c/test.jsonl"
    records = _records(manifest)
    records[0]["label"] = "zebra"
    _write(manifest, records)
    assert main(["validate", str(corpus / "data/c")]) == 0
    out = capsys.readouterr().out
    assert any(
        line.startswith("WARN ") and "'zebra'" in line and "test.jsonl" in line for line in out.splitlines()
    )
    assert evaluate(corpus, "c") == 0
    out = capsys.readouterr().out
    assert any(line.startswith("warning: ") and "'zebra'" in line for line in out.splitlines()), out
    assert (corpus / "out/fbank/c.json").is_file()


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"steps": 0}, "task.steps"),
        ({"lr_grid": ["fast"]}, "task.lr_grid[0]"),
        ({"optimizer": {"name": "sgdx"}}, "task.optimizer.name"),
        ({"heads": [{"name": "linear", "type": "mean_pool_linear", "args": {"hiden": 3}}]}, "'hiden'"),
        ({"metrics": [{"name": "accuracy", "primary": "yes"}]}, "task.metrics[0].primary"),
        ({"version": "1"}, "task.version"),
    ],
)
def test_validate_and_eval_refuse_the_same_task_file(corpus, capsys, edit, key):
    import yaml

    task = corpus / "tasks/c/task.yaml"
    task.write_text(yaml.safe_dump({**yaml.safe_load(task.read_text()), **edit}))
    assert main(["validate", str(task)]) == 2
    out = capsys.readouterr().out
    assert str(task) in out and key in out, out
    assert evaluate(corpus, "c") == 2
    err = capsys.readouterr().err
    assert str(task) in err and key in err, err
