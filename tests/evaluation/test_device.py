"""`evalkit eval --device`: where the upstream runs and the heads train. These machines have no GPU: a GPU
asked for must stop before any work, and `--device cpu` must give what the default gives here. The CUDA path
itself is measured by `bench/gpu.py` on a machine that has one."""

from __future__ import annotations

import json

import pytest
import torch

from evalkit.cli import main


def evaluate(suite, out, *extra) -> int:
    args = ["eval", "--upstream", "fbank", "--data", str(suite), "--output", str(out), "--tasks", "ks,sd"]
    return main([*args, "--steps", "3", "--protocol", "quick", *extra])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_asked_for_where_there_is_none_stops_before_any_work(smoke_suite, tmp_path, capsys, device):
    assert evaluate(smoke_suite, tmp_path / "out", "--device", device) == 2
    err = capsys.readouterr().err
    assert f"--device {device}: torch sees no CUDA device on this machine" in err and "--device cpu" in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_device_is_refused(smoke_suite, tmp_path, capsys):
    assert evaluate(smoke_suite, tmp_path / "out", "--device", "gpu") == 2
    assert "--device 'gpu': choose auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto is the GPU on this machine")
def test_cpu_gives_what_the_default_gives_and_is_recorded(smoke_suite, tmp_path):
    assert evaluate(smoke_suite, tmp_path / "auto") == 0
    assert evaluate(smoke_suite, tmp_path / "cpu", "--device", "cpu") == 0
    for task in ("ks", "sd"):
        auto = json.loads((tmp_path / "auto" / "fbank" / f"{task}.json").read_text())
        cpu = json.loads((tmp_path / "cpu" / "fbank" / f"{task}.json").read_text())
        assert cpu["metrics"] == auto["metrics"] and cpu["layer_weights"] == auto["layer_weights"]
        assert cpu["device"] == auto["device"] == "cpu" and cpu["bf16"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_run_with_a_gpu_where_there_is_none_stops_before_any_work(tmp_path, capsys):
    assert main(["run", "--profile", "smoke", "--workdir", str(tmp_path / "work"), "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_run_passes_the_device_to_its_evaluations_and_pre_trainings(tmp_path):
    from evalkit.pipeline.profiles import RUN_PROFILES
    from evalkit.pipeline.run import eval_options
    from evalkit.pretraining.distributed import distributed

    assert eval_options(RUN_PROFILES["smoke"], tmp_path, tmp_path, "cpu").device == "cpu"
    with distributed("cpu") as procs:
        assert procs.device == torch.device("cpu")
