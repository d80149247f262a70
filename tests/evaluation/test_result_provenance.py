"""An existing result is kept only if it was made the way a run would make it now.

Results are filed under the checkpoint folder's name, so two checkpoints of one name, or one
checkpoint re-run with other settings, land on the same file: that must stop with a message,
never keep the first model's numbers silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import evalkit.evaluation.evaluate as evaluate
from evalkit.cli import main
from evalkit.evaluation.fingerprint import FINGERPRINT_CACHE
from upstreams.checkpoint import write_checkpoint
from upstreams.encoder import random_transformer


def checkpoint(folder: Path, seed: int) -> Path:
    model = random_transformer(seed)
    write_checkpoint(folder, model.state_dict(), {"upstream": "encoder", "config": model.config})
    return folder


def evaluate_cli(upstream: Path | str, suite: Path, out: Path, *extra: str) -> int:
    args = ["eval", "--upstream", str(upstream), "--tasks", "ks", "--data", str(suite), "--output", str(out)]
    return main([*args, "--protocol", "quick", "--steps", "2", *extra])


@pytest.fixture
def first(smoke_suite, tmp_path) -> tuple[Path, Path]:
    """Checkpoint a/ckpt evaluated on KS into tmp_path/out; returns (its folder, its result file)."""
    ckpt = checkpoint(tmp_path / "a" / "ckpt", seed=0)
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out") == 0
    return ckpt, tmp_path / "out" / "ckpt" / "ks.json"


def test_another_checkpoint_of_the_same_name_is_refused(smoke_suite, tmp_path, first, capsys):
    _, result = first
    before = result.read_bytes()
    other = checkpoint(tmp_path / "b" / "ckpt", seed=1)
    assert evaluate_cli(other, smoke_suite, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "upstream weights (fingerprint)" in err and "--name" in err and "--overwrite" in err
    assert result.read_bytes() == before  # the first model's result is intact
    assert evaluate_cli(other, smoke_suite, tmp_path / "out", "--name", "ckpt-b") == 0
    assert (tmp_path / "out" / "ckpt-b" / "ks.json").is_file() and result.read_bytes() == before


@pytest.mark.parametrize(
    "changed, what",
    [(["--steps", "3"], "steps 2 there, 3 now"), (["--lr-grid", "0.1"], "learning rates")],
)
def test_other_settings_are_refused_and_the_same_ones_resume(
    smoke_suite, tmp_path, first, capsys, changed, what
):
    ckpt, _ = first
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out", *changed) == 2  # the last --steps counts
    assert what in capsys.readouterr().err
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out", "--protocol", "sweep") == 2
    assert "protocol 'quick' there, 'sweep' now" in capsys.readouterr().err
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out") == 0  # same making: kept
    assert "result exists" in capsys.readouterr().out
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out", "--steps", "3", "--overwrite") == 0


def test_resume_reads_the_cached_fingerprint_instead_of_loading_the_weights(
    smoke_suite, tmp_path, first, monkeypatch
):
    ckpt, _ = first
    assert (ckpt / FINGERPRINT_CACHE).is_file()

    def no_loading(spec):
        raise AssertionError(f"{spec} was loaded to check results that its cached fingerprint covers")

    monkeypatch.setattr(evaluate, "load_upstream", no_loading)
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out") == 0
    checkpoint(ckpt, seed=2)  # new weights in the same folder: the cache is stale, the weights are read
    monkeypatch.undo()
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out") == 2


def test_results_of_a_checkpoint_that_is_gone_are_kept_with_a_warning(smoke_suite, tmp_path, first, capsys):
    ckpt, result = first
    before = result.read_bytes()
    for f in ckpt.iterdir():
        f.unlink()
    ckpt.rmdir()
    assert evaluate_cli(ckpt, smoke_suite, tmp_path / "out") == 0
    assert "cannot be compared" in capsys.readouterr().out and result.read_bytes() == before


def test_a_results_name_is_one_plain_folder_name(smoke_suite, tmp_path, capsys):
    assert evaluate_cli("fbank", smoke_suite, tmp_path / "out", "--name", "../elsewhere") == 2
    assert "--name" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


def test_an_unfinished_pre_training_is_evaluated_with_a_warning(smoke_suite, tmp_path, capsys):
    model = random_transformer(0)
    config = {"upstream": "encoder", "config": model.config}
    unfinished = {**config, "pretraining": {"method": "hubert", "steps": 3, "finished": False}}
    write_checkpoint(tmp_path / "half", model.state_dict(), unfinished)
    assert evaluate_cli(tmp_path / "half", smoke_suite, tmp_path / "out") == 0
    assert "unfinished pre-training (step 3" in capsys.readouterr().out
    finished = {**config, "pretraining": {"method": "hubert", "steps": 3, "finished": True}}
    write_checkpoint(tmp_path / "done", model.state_dict(), finished)
    assert evaluate_cli(tmp_path / "done", smoke_suite, tmp_path / "out") == 0
    assert "unfinished pre-training" not in capsys.readouterr().out


def test_evalkit_run_words_a_clash_with_its_own_options(smoke_suite, tmp_path, first):
    """`evalkit run` has no --name or --overwrite: its message says what a run can do instead."""
    from evalkit.evaluation.task import load_task
    from evalkit.pipeline.profiles import RUN_PROFILES
    from evalkit.pipeline.run import eval_options

    ckpt, result = first
    opts = eval_options(RUN_PROFILES["smoke"], tmp_path / "work" / "smoke", tmp_path / "work")
    opts = evaluate.replace(opts, data=smoke_suite, output=tmp_path / "out", protocol="sweep")
    with pytest.raises(evaluate.ConfigError) as e:
        evaluate.check_existing(str(ckpt), [load_task("ks")], opts, log=lambda *_: None)
    message = str(e.value)
    assert str(result) in message and "protocol 'quick' there, 'sweep' now" in message
    assert "--workdir" in message and "--overwrite" not in message and "--name" not in message
