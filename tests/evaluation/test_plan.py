"""`evalkit eval --plan`: the cost of an evaluation, printed before it runs; nothing is written and no
audio is read, so it plans a corpus of several hundred hours whose audio is not on this machine."""

from __future__ import annotations

import json
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml

from evalkit.cli import main
from evalkit.evaluation import cost as cost_module
from evalkit.evaluation.cost import SyntheticFeatures, TaskCost, format_plan
from upstreams.load import load_upstream

SPLITS = {"train": 36_000, "dev": 200, "test": 200}  # 30-s records: 300 h of training audio


def big_corpus(root: Path) -> None:
    """DATA/big: manifests of 10-s records whose audio files do not exist, and a task that reads them."""
    for split, n in SPLITS.items():
        lines = (
            json.dumps(
                {
                    "id": f"{split}{i}",
                    "path": f"wav/{i}.wav",
                    "duration": 30.0,
                    "speaker": f"s{i % 7}",
                    "label": "abc"[i % 3],
                }
            )
            for i in range(n)
        )
        (root / "data" / "big").mkdir(parents=True, exist_ok=True)
        (root / "data" / "big" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "name": "big",
        "version": 1,
        "kind": "classification",
        "corpus": "big",
        "labels": {"keys": ["label"]},
        "heads": [{"name": "linear", "type": "mean_pool_linear"}],
        "metrics": [{"name": "accuracy", "primary": True}],
        "lr_grid": [1.0e-3, 3.0e-3, 1.0e-2],
        "steps": 1000,
        "eval_every": 250,
        "batch_seconds": 40,
    }
    (root / "tasks" / "big").mkdir(parents=True)
    (root / "tasks" / "big" / "task.yaml").write_text(yaml.safe_dump(spec))


def plan(root: Path, *extra: str) -> int:
    args = ["eval", "--upstream", "fbank", "--tasks", "big", "--include-path", str(root / "tasks")]
    return main([*args, "--data", str(root / "data"), "--output", str(root / "out"), "--plan", *extra])


def row(out: str, task: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"| {task} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def with_free_disk(monkeypatch, free: int) -> None:
    """The disk the cache would go to has `free` bytes, whatever this machine has (CI's has less)."""
    real = shutil.disk_usage
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cost_module.shutil, "disk_usage", lambda p: usage(real(p).total, real(p).used, free))


def test_a_plan_of_three_hundred_hours_reads_no_audio_and_writes_nothing(tmp_path, capsys, monkeypatch):
    big_corpus(tmp_path)
    with_free_disk(monkeypatch, 2**40)
    assert plan(tmp_path, "--protocol", "superb", "--seeds", "0,1,2", "--seed-rates", "chosen") == 0
    out = capsys.readouterr().out
    cells = row(out, "big")
    assert cells[1] == "300.00 / 1.67 / 1.67" and cells[2] == "36400"
    fbank = load_upstream("fbank")
    frames = sum(SPLITS.values()) * int(fbank.frames_for(torch.tensor([30 * 16_000])))  # ~100 a second
    gib = frames * fbank.num_layers * fbank.hidden_size * 2 / 2**30
    assert cells[3] == f"{gib:.2f} GiB"
    assert cells[4] == "5 x 1000"  # the grid's 3 rates for seed 0, the chosen rate for seeds 1 and 2
    assert re.fullmatch(r"[\d.]+ (s|min|h)", cells[8])
    assert "1.00 TiB free there (fits)" in out
    assert not (tmp_path / "out").exists()  # nothing written: no results, no cache


@pytest.mark.parametrize(
    "extra, runs",
    [
        (("--protocol", "superb", "--seeds", "0,1,2"), "9 x 1000"),
        (("--protocol", "quick", "--seeds", "0,1"), "2 x 1000"),
        (("--protocol", "superb", "--steps", "30"), "3 x 30"),
    ],
)
def test_the_runs_follow_the_protocol_and_the_seeds(tmp_path, capsys, extra, runs):
    big_corpus(tmp_path)
    assert plan(tmp_path, *extra) == 0
    assert row(capsys.readouterr().out, "big")[4] == runs


def test_a_cache_that_would_not_fit_is_said(tmp_path, capsys, monkeypatch):
    big_corpus(tmp_path)
    with_free_disk(monkeypatch, 2**30)
    assert plan(tmp_path, "--protocol", "quick") == 0
    assert (
        "1.00 GiB free there (does NOT fit: evalkit eval would stop before extracting)"
        in capsys.readouterr().out
    )


def test_the_time_is_the_calibrated_steps_times_the_runs():
    """The table's arithmetic, on numbers given by hand."""
    cost = TaskCost(
        "t",
        {"train": 1.0, "dev": 0.1, "test": 0.1},
        {"train": 10, "dev": 1, "test": 1},
        3 * 2**30,
        5,
        1000,
        120.0,
        1500.0,
        0.3,
    )
    text = format_plan([cost], None)
    assert (
        "| t | 1.00 / 0.10 / 0.10 | 12 | 3.00 GiB | 5 x 1000 | 0.300 | 2.0 min | 25.0 min | 27.0 min |"
        in text
    )
    assert "No cache (--no-cache)" in text


def test_synthetic_features_have_the_upstream_shape(smoke_suite):
    fbank = load_upstream("fbank")
    feats = SyntheticFeatures(fbank, smoke_suite / "ks" / "train.jsonl")
    ids = feats.ids[:3]
    hidden, lens = feats.batch(ids)
    assert hidden.shape == (fbank.num_layers, 3, int(lens.max()), fbank.hidden_size)
    assert lens.tolist() == [feats.lengths[i] for i in ids]
