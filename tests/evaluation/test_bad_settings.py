"""Settings that would train nothing, or train nonsense, stop with a message before any work.

Before, `--steps 0` and a task's `steps: -5` exited 0 with results under `--protocol quick`,
`--lr-grid nan` wrote `lr: NaN`, `optimizer: {name: sgdx}` silently trained AdamW and a typo in
a head's args surfaced as a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalkit.cli import main

GOOD = {
    "name": "tiny_ks",
    "version": 1,
    "kind": "classification",
    "corpus": "ks",
    "labels": {"keys": ["label"]},
    "heads": [{"name": "linear", "type": "mean_pool_linear"}],
    "metrics": [{"name": "accuracy", "primary": True}],
    "lr_grid": [1.0e-3],
    "steps": 2,
}


def write_task(root: Path, **changes) -> Path:
    folder = root / "tasks" / "tiny_ks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.yaml").write_text(yaml.safe_dump({**GOOD, **changes}))
    return root / "tasks"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"steps": -5}, "steps"),
        ({"steps": 0}, "steps"),
        ({"steps": {"smoke": 0}}, "steps"),
        ({"eval_every": -3}, "eval_every"),
        ({"batch_seconds": 0}, "batch_seconds"),
        ({"lr_grid": []}, "lr_grid"),
        ({"lr_grid": [-0.1]}, "lr_grid"),
        ({"optimizer": {"name": "sgdx"}}, "sgdx"),
        ({"optimizer": {"name": "adamw", "weight_decya": 0.1}}, "weight_decay"),
        ({"heads": [{"name": "linear", "type": "mean_pool_linear", "args": {"hiden": 64}}]}, "hidden"),
    ],
)
def test_a_task_that_would_train_nothing_is_refused(smoke_suite, tmp_path, capsys, change, key):
    tasks = write_task(tmp_path, **change)
    assert main(["validate", str(tasks / "tiny_ks" / "task.yaml")]) != 0
    out = capsys.readouterr()
    assert key in out.out + out.err
    args = ["eval", "--upstream", "fbank", "--tasks", "tiny_ks", "--include-path", str(tasks)]
    assert (
        main([*args, "--data", str(smoke_suite), "--output", str(tmp_path / "out"), "--protocol", "quick"])
        == 2
    )
    err = capsys.readouterr().err
    assert "task.yaml" in err and key in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--steps", "-1"], "--steps"),
        (["--steps", "0"], "--steps"),
        (["--lr-grid=-1"], "--lr-grid"),
        (["--lr-grid", "nan"], "--lr-grid"),
        (["--lr-grid", "fast"], "--lr-grid"),
        (["--tasks", ","], "names no task"),
    ],
)
def test_command_line_values_that_train_nothing_are_refused(smoke_suite, tmp_path, capsys, flags, says):
    args = ["eval", "--upstream", "fbank", "--tasks", "ks", "--data", str(smoke_suite)]
    assert main([*args, "--output", str(tmp_path / "out"), "--protocol", "quick", *flags]) == 2
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()
