"""Manifests that lie or are malformed stop `evalkit eval` with a clear message, before any work.

Before: a 20-minute WAV labelled 1 s was batched as 1 s (11.9 GB peak RSS instead of ~1 GB); a
10 ms clip crashed `--upstream fbank` with torchaudio's AssertionError; an id that was a number or
null trained every head and then failed on the feature cache, a path that was a list and a
non-UTF-8 manifest gave tracebacks; `corpus: ../../etc` and a record's `../../secret.wav` read
outside the data root.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evalkit.cli import main
from evalkit.core.audio import save_wav
from evalkit.core.manifest import write_manifest
from upstreams.baselines import FbankContextUpstream, FbankUpstream

SPLITS = ("train", "dev", "test")


def make_corpus(folder: Path, seconds: float = 0.5, n: int = 4) -> None:
    """A two-class corpus of noise clips, `n` per split, with manifests that tell the truth."""
    rng = np.random.default_rng(0)
    for split in SPLITS:
        records = []
        for i in range(n):
            rel = f"wav/{split}_{i}.wav"
            save_wav(folder / rel, 0.1 * rng.standard_normal(int(seconds * 16_000)).astype(np.float32))
            records.append(
                {"id": f"{split}_{i}", "path": rel, "duration": seconds, "speaker": "s", "label": "ab"[i % 2]}
            )
        write_manifest(folder / f"{split}.jsonl", records)


def write_task(tasks: Path, name: str, corpus: str) -> None:
    folder = tasks / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "version": 1,
        "kind": "classification",
        "corpus": corpus,
        "labels": {"keys": ["label"]},
        "heads": [{"name": "linear", "type": "mean_pool_linear"}],
        "metrics": [{"name": "accuracy", "primary": True}],
        "lr_grid": [1.0e-3],
        "steps": 2,
    }
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture
def setup(tmp_path) -> Path:
    """DATA/good and DATA/bad (to be broken by the test), their tasks, and a finished result for `good`."""
    make_corpus(tmp_path / "data" / "good")
    make_corpus(tmp_path / "data" / "bad")
    write_task(tmp_path / "tasks", "good", "good")
    write_task(tmp_path / "tasks", "bad", "bad")
    assert evaluate(tmp_path, "good") == 0
    return tmp_path


def evaluate(root: Path, tasks: str, upstream: str = "fbank") -> int:
    return main(
        [
            "eval",
            "--upstream",
            upstream,
            "--tasks",
            tasks,
            "--include-path",
            str(root / "tasks"),
            "--data",
            str(root / "data"),
            "--output",
            str(root / "out"),
            "--protocol",
            "quick",
        ]
    )


def edit_manifest(root: Path, change, split: str = "test") -> Path:
    """Apply `change(records)` to DATA/bad/<split>.jsonl, written as plain JSON lines."""
    path = root / "data" / "bad" / f"{split}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    change(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def refused(root: Path, capsys, *fragments: str) -> str:
    """`evalkit eval --tasks good,bad` exits 2 naming `fragments`; good's result is intact, bad has none."""
    result = root / "out" / "fbank" / "good.json"
    before = result.read_bytes()
    assert evaluate(root, "good,bad") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert result.read_bytes() == before
    assert not (root / "out" / "fbank" / "bad.json").exists()
    return err


# --- 1. durations the audio does not have -----------------------------------------------------


def test_a_manifest_that_understates_a_duration_is_refused_before_extraction(setup, capsys):
    def lie(records):
        save_wav(setup / "data" / "bad" / records[1]["path"], np.zeros(6 * 16_000, np.float32))
        records[1]["duration"] = 1.0

    manifest = edit_manifest(setup, lie)
    shards_before = set((setup / "out" / ".cache").glob("*/*/*/shard_*.json"))
    err = refused(setup, capsys, str(manifest), "'test_1'", "1.00 s", "6.00 s", "evalkit prepare")
    assert "fix the manifest" in err.lower()
    new_shards = set((setup / "out" / ".cache").glob("*/*/*/shard_*.json")) - shards_before
    assert all("test_" not in p.read_text() for p in new_shards)  # only bad's train and dev were extracted


def test_small_duration_differences_are_tolerated(setup):
    edit_manifest(setup, lambda records: records[0].update(duration=0.8))  # the audio lasts 0.5 s
    assert evaluate(setup, "bad") == 0


def test_over_long_audio_is_refused_before_extraction(setup, capsys):
    def long(records):
        path = setup / "data" / "bad" / records[2]["path"]
        write_sparse_wav(path, seconds=3601)  # over the one-hour cap, without writing 115 MB
        records[2]["duration"] = 3601.0

    edit_manifest(setup, long, split="train")
    refused(setup, capsys, "'train_2'", "3601.0 s", "3600 s", "Split it")


def write_sparse_wav(path: Path, seconds: int) -> None:
    """A 16 kHz 16-bit mono WAV whose data (zeros) is a hole in the file: its header is all that is read."""
    n_bytes = seconds * 16_000 * 2
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + n_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        16_000,
        32_000,
        2,
        16,
        b"data",
        n_bytes,
    )
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n_bytes)


# --- 2. clips shorter than one fbank window ---------------------------------------------------


@pytest.mark.parametrize("upstream", ["fbank", "fbank_context"])
def test_a_clip_shorter_than_one_fbank_window_is_evaluated(setup, upstream):
    def short(records):
        save_wav(setup / "data" / "bad" / records[0]["path"], 0.1 * np.ones(160, np.float32))  # 10 ms
        records[0]["duration"] = 0.01

    edit_manifest(setup, short)
    assert evaluate(setup, "bad", upstream) == 0
    res = json.loads((setup / "out" / upstream / "bad.json").read_text())
    assert res["samples"]["test"] == 4 and np.isfinite(res["metrics"]["test"]["accuracy"])


@pytest.mark.parametrize("cls", [FbankUpstream, FbankContextUpstream])
def test_fbank_gives_one_frame_for_a_clip_shorter_than_its_window(cls):
    up = cls()
    wavs = torch.zeros(3, 800)
    wavs[0, :160] = 0.1
    wavs[1] = torch.randn(800) * 0.1
    lens = torch.tensor([160, 800, 1])
    (hidden,), frames = up(wavs, lens)
    assert frames.tolist() == [1, 3, 1] and up.frames_for(lens).tolist() == [1, 3, 1]
    assert torch.isfinite(hidden).all() and hidden.shape == (3, 3, up.hidden_size)
    assert (hidden[0, 1:] == 0).all() and (hidden[0, 0] != 0).any()
    assert up.frames_for(torch.tensor([0])).tolist() == [0]


def test_an_upstream_that_gives_no_frame_for_a_clip_is_refused_with_its_id(tmp_path):
    from evalkit.core.errors import AudioError
    from evalkit.evaluation.features import extract

    make_corpus(tmp_path, n=2)
    save_wav(tmp_path / "wav" / "test_1.wav", np.ones(160, np.float32) * 0.1)
    records = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    records[1]["duration"] = 0.01
    write_manifest(tmp_path / "test.jsonl", records)

    class Snipped(FbankUpstream):  # kaldi's snip_edges count: no frame below 25 ms, as an hf: model
        def frames_for(self, wav_lens):
            return torch.clamp((wav_lens - 400) // 160 + 1, min=0)

    with pytest.raises(AudioError, match=r"'test_1'.*0\.010 s.*Drop"):
        extract(Snipped(), tmp_path / "test.jsonl", tmp_path / "cache", progress=False)


# --- 3. values of the wrong type -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [("id", 5), ("id", None), ("path", ["a.wav"]), ("path", ""), ("duration", "0.5"), ("duration", None)],
)
def test_a_record_value_of_the_wrong_type_is_refused_naming_line_and_key(setup, capsys, key, value):
    manifest = edit_manifest(setup, lambda records: records[2].update({key: value}))
    refused(setup, capsys, f"{manifest}:3", repr(key))


def test_a_manifest_that_is_not_utf8_is_refused_naming_the_line(setup, capsys):
    manifest = setup / "data" / "bad" / "dev.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"speaker": "s"', '"speaker": "Jos\xe9"'.encode("latin-1"))
    manifest.write_bytes(b"".join(lines))
    refused(setup, capsys, f"{manifest}:2", "UTF-8")


# --- 4. paths that climb out of the data root --------------------------------------------------


def test_a_task_corpus_that_climbs_out_of_data_is_refused(setup, capsys):
    make_corpus(setup / "outside")  # a corpus that `corpus: ../outside` would find
    write_task(setup / "tasks", "bad", "../outside")
    refused(setup, capsys, "'../outside'", "--data", "climbs out")


def test_a_relative_audio_path_that_climbs_out_of_the_data_root_is_refused(setup, capsys):
    secret = setup / "secret.wav"
    save_wav(secret, np.zeros(8000, np.float32))
    manifest = edit_manifest(setup, lambda records: records[3].update(path="../../secret.wav"))
    refused(setup, capsys, f"{manifest}:4", "'../../secret.wav'", "absolute path")


def test_absolute_and_in_root_relative_paths_keep_working(setup):
    def move(records):
        records[0]["path"] = str((setup / "data" / "bad" / records[0]["path"]).resolve())
        records[1]["path"] = "wav/../wav/" + records[1]["path"].split("/")[-1]
        records[2]["path"] = "../bad/" + records[2]["path"]  # still inside DATA

    edit_manifest(setup, move)
    assert evaluate(setup, "bad") == 0
