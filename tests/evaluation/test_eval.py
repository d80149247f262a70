"""`evalkit eval` end to end on the smoke suite, the trainer, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from evalkit.cli import main
from evalkit.core.manifest import read_manifest, write_manifest
from evalkit.evaluation.task import KINDS, load_task, load_task_file
from evalkit.evaluation.trainer import train

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("pr", "asr", "ks", "qbe", "ic", "sf", "sid", "asv", "sd", "er")


@pytest.fixture(scope="module")
def fbank_results(smoke_suite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    assert (
        main(
            [
                "eval",
                "--upstream",
                "fbank",
                "--tasks",
                "all",
                "--data",
                str(smoke_suite),
                "--output",
                str(out),
                "--steps",
                "6",
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_fbank_on_all_ten_tasks(fbank_results):
    files = sorted(p.stem for p in (fbank_results / "fbank").glob("*.json"))
    assert files == sorted(TASKS)
    for task in TASKS:
        res = json.loads((fbank_results / "fbank" / f"{task}.json").read_text())
        pm = res["primary_metric"]
        assert res["task"] == task and res["upstream"] == "fbank"
        value = res["metrics"]["test"][pm]
        low, high = res["ci95"]["test"][pm]
        assert low <= value + 1e-9 and value <= high + 1e-9
        assert res["task_version"] == load_task(task).version
        assert abs(sum(res["layer_weights"]) - 1) < 1e-5
        assert res["upstream_info"]["fingerprint"] and res["versions"]["torch"].startswith("2.11")
        samples = (fbank_results / "fbank" / f"{task}.samples.jsonl").read_text().splitlines()
        assert len(samples) > 0


@pytest.mark.slow
def test_rerun_skips_finished_tasks(fbank_results, smoke_suite, capsys):
    before = (fbank_results / "fbank" / "ks.json").stat().st_mtime_ns
    assert (
        main(
            [
                "eval",
                "--upstream",
                "fbank",
                "--tasks",
                "ks",
                "--data",
                str(smoke_suite),
                "--output",
                str(fbank_results),
                "--steps",
                "6",
            ]
        )
        == 0
    )
    assert (fbank_results / "fbank" / "ks.json").stat().st_mtime_ns == before
    assert "result exists" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["superb", "quick"])
def test_protocols_train_the_reference_head(smoke_suite, tmp_path, protocol):
    assert (
        main(
            [
                "eval",
                "--upstream",
                "fbank",
                "--tasks",
                "ks",
                "--data",
                str(smoke_suite),
                "--output",
                str(tmp_path),
                "--steps",
                "2",
                "--protocol",
                protocol,
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "fbank" / "ks.json").read_text())
    grid = load_task("ks").lr_grid
    assert list(res["heads"]) == [load_task("ks").heads[0].name] and res["protocol"] == protocol
    if protocol == "quick":
        assert res["lr_grid"] == [sorted(grid)[len(grid) // 2]] and res["lr"] == res["lr_grid"][0]
    else:
        assert res["lr_grid"] == grid and set(res["heads"]["linear"]["lr_grid"]) == {f"{lr:g}" for lr in grid}


class _LabelInLayer:
    """Features whose layer 2 is the one-hot label and every other layer noise."""

    num_layers, hidden_size = 4, 8

    def __init__(self, records, classes):
        self.records = {r["id"]: r for r in records}
        self.classes = classes
        self.gen = torch.Generator().manual_seed(0)

    def batch(self, ids):
        hidden = torch.randn(self.num_layers, len(ids), 5, self.hidden_size, generator=self.gen)
        for b, i in enumerate(ids):
            hidden[2, b] = 0
            hidden[2, b, :, self.classes.index(self.records[i]["label"])] = 3.0
        return hidden, torch.full((len(ids),), 5)


def test_featurizer_weights_move_to_the_informative_layer(tmp_path):
    classes = ["a", "b", "c", "d"]
    for split, n in (("train", 64), ("dev", 16), ("test", 16)):
        write_manifest(
            tmp_path / "toy" / f"{split}.jsonl",
            [
                {
                    "id": f"{split}{i}",
                    "path": "x.wav",
                    "duration": 1.0,
                    "speaker": "s",
                    "label": classes[i % 4],
                }
                for i in range(n)
            ],
        )
    task = load_task_file(ROOT / "tasks" / "ks" / "task.yaml")
    task.corpus, task.heads = "toy", task.heads[:1]
    recipe = KINDS.get("classification")(task, tmp_path)
    feats = {s: _LabelInLayer(recipe.records(s), classes) for s in ("train", "dev", "test")}
    (run,) = train(recipe, feats, [3e-2], steps=200, eval_every=100, progress=False, log=lambda *_: None)
    weights = run.featurizer.layer_weights()
    assert weights[2] == max(weights) and weights[2] > 0.4, weights
    assert run.best_dev == 1.0


def test_readme_task_example_runs(smoke_suite, tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n# mytasks/accent/task.yaml\n(.*?)```", readme, re.S).group(1)
    folder = tmp_path / "mytasks" / "accent"
    folder.mkdir(parents=True)
    (folder / "task.yaml").write_text(block)
    assert main(["validate", str(folder / "task.yaml")]) == 0
    out = tmp_path / "res"
    assert (
        main(
            [
                "eval",
                "--upstream",
                "fbank",
                "--tasks",
                "accent",
                "--include-path",
                str(tmp_path / "mytasks"),
                "--data",
                str(smoke_suite),
                "--output",
                str(out),
                "--steps",
                "4",
            ]
        )
        == 0
    )
    res = json.loads((out / "fbank" / "accent.json").read_text())
    assert res["task"] == "accent" and 0 <= res["metrics"]["test"]["accuracy"] <= 1


def test_every_shipped_task_validates(capsys):
    assert main(["validate", str(ROOT / "tasks")]) == 0
    out = capsys.readouterr().out
    for t in TASKS:
        assert f"task {t!r}" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--upstream", "fbank", "--tasks", "kss"], "Did you mean 'ks'"),
        (["--upstream", "fbnak", "--tasks", "ks"], "Did you mean 'fbank'"),
    ],
)
def test_unknown_names_exit_2_with_suggestions(smoke_suite, tmp_path, capsys, argv, message):
    code = main(["eval", *argv, "--data", str(smoke_suite), "--output", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_typo_in_task_yaml_exits_2(tmp_path, capsys):
    folder = tmp_path / "t" / "typo"
    folder.mkdir(parents=True)
    text = (ROOT / "tasks" / "ks" / "task.yaml").read_text().replace("lr_grid:", "lr_gird:")
    (folder / "task.yaml").write_text(text)
    assert main(["validate", str(folder / "task.yaml")]) == 2
    err = capsys.readouterr()
    assert "lr_gird" in err.out and "Did you mean 'lr_grid'" in err.out


def test_missing_audio_exits_2_and_keeps_results(smoke_suite, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(smoke_suite / "ks", data / "ks")
    shutil.copytree(smoke_suite / "er", data / "er")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--upstream",
                "fbank",
                "--tasks",
                "ks",
                "--data",
                str(data),
                "--output",
                str(out),
                "--steps",
                "2",
            ]
        )
        == 0
    )
    recs = read_manifest(data / "er" / "test.jsonl")
    (data / "er" / recs[0]["path"]).unlink()
    code = main(
        [
            "eval",
            "--upstream",
            "fbank",
            "--tasks",
            "ks,er",
            "--data",
            str(data),
            "--output",
            str(out),
            "--steps",
            "2",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert recs[0]["path"].split("/")[-1] in err and "missing" in err
    assert (out / "fbank" / "ks.json").exists()
