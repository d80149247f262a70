"""The pre-training loop: loss curve, exact resume, checkpoints that `evalkit eval` loads, config errors, torchrun."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from evalkit.cli import main
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.pretraining.data import Crop, DataConfig, batch_stream, load_crops, plan_epoch, read_data
from evalkit.pretraining.distributed import native_bf16, use_bf16
from evalkit.pretraining.loop import build_optimizer, lr_factor, pretrain
from evalkit.pretraining.recipe import build_objective, config_from_dict, load_config
from evalkit.pretraining.train_state import rng_state, set_rng_state
from upstreams.bestrq import BestRQ
from upstreams.load import load_upstream

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "method": "bestrq",
    "encoder": {
        "frontend": {"kind": "fbank", "channels": 32},
        "encoder": {
            "kind": "transformer",
            "dim": 32,
            "layers": 2,
            "heads": 2,
            "ffn_dim": 64,
            "dropout": 0.1,
            "attention_dropout": 0.0,
            "input_dropout": 0.0,
            "layerdrop": 0.0,
            "pos_conv_kernel": 8,
            "pos_conv_groups": 4,
        },
    },
    "objective": {"codebook_size": 32, "codebook_dim": 8, "quality_utterances": 10},
    "data": {"crop_seconds": 2.0, "batch_seconds": 8.0, "min_seconds": 1.0},
    "optim": {
        "lr": 3.0e-3,
        "warmup_steps": 3,
        "max_steps": 30,
        "weight_decay": 0.01,
        "clip_grad": 1.0,
        "accumulate": 1,
        "betas": [0.9, 0.98],
    },
    "train": {"bf16": "auto", "log_every": 1, "checkpoint_every": 1000, "seed": 0},
}


def tiny(**sections) -> dict:
    raw = copy.deepcopy(TINY)
    for name, values in sections.items():
        raw[name].update(values)
    return raw


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def read_log(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def corpus(smoke_suite) -> Path:
    """The smoke suite (its pretrain/train.jsonl: 40 utterances, ~3 minutes), shared with other test files."""
    return smoke_suite


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bestrq") / "run"
    return pretrain(config_from_dict(tiny()), data=corpus, out=out, progress=False)


# ---- the loop ----------------------------------------------------------------------------------


def test_bestrq_loss_falls_on_the_smoke_corpus(trained):
    rows = read_log(trained)
    assert [r["step"] for r in rows] == list(range(1, 31))
    start = sum(r["loss"] for r in rows[:5]) / 5
    end = sum(r["loss"] for r in rows[-5:]) / 5
    assert end < start - 0.15, (start, end)
    assert sum(r["accuracy"] for r in rows[-5:]) > sum(r["accuracy"] for r in rows[:5])
    for key in ("code_perplexity", "masked_fraction", "lr", "grad_norm", "audio_per_second"):
        assert all(r[key] > 0 for r in rows), key


def test_output_folder_is_an_upstream_with_every_hidden_layer(trained):
    summary = json.loads((trained / "config.json").read_text())
    assert summary["upstream"] == "encoder" and summary["pretraining"]["steps"] == 30
    assert summary["pretraining"]["method"] == "bestrq" and summary["pretraining"]["audio_seconds"] > 0
    assert "pnmi" in summary["pretraining"]["setup_report"]  # the smoke corpus has phone alignments
    assert json.loads((trained / "setup_report.json").read_text()) == summary["pretraining"]["setup_report"]

    model = load_upstream(str(trained))
    wavs, lens = torch.randn(2, 32000) * 0.1, torch.tensor([32000, 20000])
    hidden, frame_lens = model(wavs, lens)
    assert len(hidden) == model.num_layers == 3 and model.frame_rate == 25.0
    assert all(h.shape == (2, 50, 32) for h in hidden) and frame_lens.tolist() == [50, 31]
    trained_weights = load_file(trained / "model.safetensors")
    assert all(torch.equal(v, trained_weights[k]) for k, v in model.state_dict().items())
    assert (trained / "tensorboard").is_dir() and any((trained / "tensorboard").iterdir())


def test_frozen_quantizer_is_saved_but_never_trained(trained):
    state = load_file(trained / "train_state" / "objective.safetensors")
    torch.manual_seed(0)  # the loop builds the objective right after seeding with train.seed
    fresh = BestRQ(TINY["encoder"], **TINY["objective"])
    assert torch.equal(state["projection"], fresh.projection) and torch.equal(
        state["codebook"], fresh.codebook
    )
    assert not torch.equal(state["head.weight"], fresh.head.weight)
    names = {n for n, _ in fresh.named_parameters()}
    assert "projection" not in names and "codebook" not in names


def test_resume_after_a_crash_gives_the_same_weights(corpus, tmp_path, monkeypatch):
    cfg = tiny(optim={"max_steps": 12}, train={"checkpoint_every": 6, "log_every": 2})
    straight = pretrain(config_from_dict(cfg), data=corpus, out=tmp_path / "straight", progress=False)

    calls = {"n": 0}
    forward = BestRQ.forward

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # mid-way between the checkpoint at step 6 and the end
            raise KeyboardInterrupt
        return forward(self, batch)

    monkeypatch.setattr(BestRQ, "forward", crashing)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config_from_dict(cfg), data=corpus, out=tmp_path / "killed", progress=False)
    monkeypatch.setattr(BestRQ, "forward", forward)
    assert torch.load(tmp_path / "killed" / "train_state" / "state.pt", weights_only=True)["step"] == 6
    with pytest.raises(EvalkitError, match="--resume"):
        pretrain(config_from_dict(cfg), data=corpus, out=tmp_path / "killed", progress=False)
    resumed = pretrain(config_from_dict(cfg), out=tmp_path / "killed", resume=True, progress=False)

    for name in ("model.safetensors", "train_state/objective.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), (name, key)
    assert [r["step"] for r in read_log(resumed)] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in read_log(resumed)] == pytest.approx([r["loss"] for r in read_log(straight)])
    done = json.loads((resumed / "config.json").read_text())["pretraining"]
    assert done["steps"] == 12 and done["audio_seconds"] == pytest.approx(
        json.loads((straight / "config.json").read_text())["pretraining"]["audio_seconds"]
    )


def test_a_stopped_run_resumes_to_a_larger_step_budget(corpus, tmp_path):
    out = pretrain(
        config_from_dict(tiny(optim={"max_steps": 2})), data=corpus, out=tmp_path / "r", progress=False
    )
    pretrain(config_from_dict(tiny()), out=out, max_steps=4, resume=True, progress=False)
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]
    with pytest.raises(EvalkitError, match="different 'objective'"):
        pretrain(
            config_from_dict(tiny(objective={"codebook_size": 16})), out=out, resume=True, progress=False
        )


# ---- the recipe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (tiny(optim={"warmup_step": 5}), ["optim", "'warmup_step'", "Did you mean 'warmup_steps'"]),
        ({**tiny(), "objectve": {}}, ["'objectve'", "Did you mean 'objective'"]),
        (
            tiny(objective={"codebook_sise": 8}),
            ["objective", "'codebook_sise'", "Did you mean 'codebook_size'"],
        ),
        ({**tiny(), "encoder": {"frontend": {"kind": "fbank", "chanels": 8}}}, ["'chanels'", "'channels'"]),
        ({**tiny(), "method": "bestrg"}, ["'bestrg'", "Did you mean 'bestrq'"]),
        (tiny(optim={"lr": "5e-4"}), ["optim.lr", "5.0e-4"]),
        (tiny(optim={"schedule": "cosin"}), ["optim.schedule", "'cosine'"]),
        (tiny(data={"batch_seconds": 0}), ["data.batch_seconds", "> 0"]),
    ],
)
def test_config_mistakes_name_the_file_and_key(tmp_path, raw, words):
    path = write_config(tmp_path / "typo.yaml", raw)
    with pytest.raises(ConfigError) as e:
        build_objective(load_config(path))  # a method checks its own settings when built
    for word in [str(path), *words]:
        assert word in str(e.value)


def test_cli_pretrain_bad_input_exits_2(tmp_path, corpus, capsys):
    path = write_config(tmp_path / "typo.yaml", tiny(train={"sed": 1}))
    assert main(["pretrain", str(path), "--data", str(corpus), "--out", str(tmp_path / "o")]) == 2
    assert "'sed'" in capsys.readouterr().err
    good = write_config(tmp_path / "good.yaml", tiny())
    assert main(["pretrain", str(good), "--out", str(tmp_path / "o")]) == 2  # no --data
    assert main(["pretrain", str(good), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["pretrain", str(good), "--data", str(corpus), "--max-steps", "0"]) == 2


def test_cli_lists_methods(capsys):
    assert main(["ls", "methods"]) == 0
    assert capsys.readouterr().out.split() == ["bestrq", "distilhubert", "hubert", "wav2vec2"]


def test_shipped_recipes_validate():
    paths = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))
    assert {p.name for p in paths} >= {"bestrq-tiny.yaml", "bestrq-small.yaml", "bestrq-base.yaml"}
    for path in paths:
        load_config(path)


# ---- batches, schedule, random state --------------------------------------------------------------


def test_epoch_plan_covers_every_utterance_once_within_the_budget(corpus):
    cfg = DataConfig(crop_seconds=3.0, batch_seconds=10.0, min_seconds=2.0)
    data = read_data(corpus, cfg.min_seconds)
    assert all(r["duration"] >= 2.0 for r in data.records)
    plan = plan_epoch(data, cfg, seed=0, epoch=0)
    crops = [c for batch in plan for c in batch]
    assert sorted(c.index for c in crops) == list(range(len(data.records)))
    for c in crops:
        n = int(data.records[c.index]["duration"] * 16000)
        assert c.samples == min(n, 48000) and 0 <= c.offset <= n - c.samples
    assert all(max(c.samples for c in b) * len(b) <= 10.0 * 16000 for b in plan if len(b) > 1)
    assert plan == plan_epoch(data, cfg, seed=0, epoch=0)
    assert plan != plan_epoch(data, cfg, seed=0, epoch=1) and plan != plan_epoch(data, cfg, seed=1, epoch=0)
    batch = load_crops(data, plan[0])
    assert batch.wavs.shape == (len(plan[0]), int(batch.wav_lens.max())) and batch.wav_lens.tolist() == [
        c.samples for c in plan[0]
    ]


def test_processes_get_disjoint_equal_shards(corpus):
    cfg = DataConfig(crop_seconds=2.0, batch_seconds=4.0)
    data = read_data(corpus, cfg.min_seconds)
    n = len(plan_epoch(data, cfg, 0, 0))
    shards = []
    for rank in range(3):
        stream = batch_stream(data, cfg, 0, rank, 3, 0, 0)
        shards.append([tuple(next(stream)[2].ids) for _ in range(n // 3)])
    assert len({ids for shard in shards for ids in shard}) == n // 3 * 3
    resumed = batch_stream(data, cfg, 0, 1, 3, 0, 2)
    assert [tuple(next(resumed)[2].ids) for _ in range(3)] == shards[1][2:5]


def test_worker_processes_read_the_same_batches(corpus):
    data = read_data(corpus, 1.0)
    plain = batch_stream(data, DataConfig(crop_seconds=2.0, batch_seconds=8.0), 0, 0, 1, 0, 3)
    workers = batch_stream(data, DataConfig(crop_seconds=2.0, batch_seconds=8.0, workers=1), 0, 0, 1, 0, 3)
    for _ in range(3):
        (e1, i1, a), (e2, i2, b) = next(plain), next(workers)
        assert (e1, i1, a.ids) == (e2, i2, b.ids) and torch.equal(a.wavs, b.wavs)


def test_learning_rate_warms_up_then_decays():
    cfg = config_from_dict(tiny(optim={"warmup_steps": 10, "max_steps": 110, "min_lr_ratio": 0.1})).optim
    factors = [lr_factor(s, cfg) for s in range(111)]
    assert factors[0] == pytest.approx(1 / 11) and factors[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)
    cfg.schedule = "linear"
    assert lr_factor(35, cfg) == pytest.approx(0.1 + 0.9 * 0.75)


@pytest.mark.parametrize("avx512_bf16, amx", [(False, False), (True, False), (False, True)])
def test_bf16_auto_is_bf16_only_where_the_cpu_has_it(avx512_bf16, amx, monkeypatch):
    # without AVX-512 BF16 or AMX, bf16 is emulated: ~6x slower than fp32 per tiny-recipe step (bench/precision.py)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert native_bf16(cpu) == use_bf16("auto", cpu) == (avx512_bf16 or amx)
    assert use_bf16(True, cpu) and not use_bf16(False, cpu)  # an explicit setting is obeyed
    assert config_from_dict(tiny()).train.bf16 == "auto"
    with pytest.raises(ConfigError, match="bf16"):
        config_from_dict(tiny(train={"bf16": "fast"}))


def test_random_state_round_trips_through_a_weights_only_file(tmp_path):
    import random

    import numpy as np

    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == got[:2] and torch.equal(expected[2], got[2])


# ---- every Base recipe, and torchrun --------------------------------------------------------------


def stand_in_for_prior_runs(recipe: Path, work: Path) -> None:
    """Random-init encoders of the recipes that `recipe` builds on (`${work}/NAME`: a teacher, iteration 1)."""
    from safetensors.torch import save_file

    from upstreams.encoder import SSLEncoder

    for name in set(re.findall(r"\$\{work\}/([\w.-]+)", recipe.read_text())):
        encoder = SSLEncoder(**load_config(recipe.parent / f"{name}.yaml").encoder)
        (work / name).mkdir(parents=True)
        (work / name / "config.json").write_text(
            json.dumps({"upstream": "encoder", "config": encoder.config})
        )
        save_file(
            {k: v.contiguous() for k, v in encoder.state_dict().items()}, work / name / "model.safetensors"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "pretrain").glob("*-base.yaml")), ids=lambda p: p.stem
)
def test_base_recipe_builds_and_trains_one_step(path, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_WORK", str(tmp_path / "work"))
    stand_in_for_prior_runs(path, tmp_path / "work")
    cfg = load_config(path)
    data = read_data(corpus, 2.0)
    torch.manual_seed(0)
    objective = build_objective(cfg)
    (tmp_path / "setup").mkdir()
    objective.setup(data, tmp_path / "setup", log=lambda *_: None)
    objective.train()
    optimizer = build_optimizer(objective, cfg.optim)
    batch = load_crops(data, [Crop(0, 0, 32000)])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.train.bf16, torch.device("cpu"))):
        output = objective(batch)
    output.loss.backward()
    before = {n: p.detach().clone() for n, p in objective.encoder.named_parameters()}
    optimizer.step()
    assert torch.isfinite(output.loss)
    assert any(not torch.equal(before[n], p) for n, p in objective.encoder.named_parameters())
    assert cfg.encoder["encoder"]["dim"] == 768  # Base width (DistilHuBERT's student has only 2 layers)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(corpus, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny(optim={"max_steps": 3}))
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "evalkit",
        "pretrain",
        str(config),
        "--data",
        str(corpus),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*command, "--max-steps", "3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "train_state" / "rng-0.pt").is_file() and (out / "train_state" / "rng-1.pt").is_file()
    summary = json.loads((out / "config.json").read_text())["pretraining"]
    assert summary["processes"] == 2 and summary["steps"] == 3
    done = subprocess.run(
        [*command, "--max-steps", "4", "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]
    hidden, _ = load_upstream(str(out))(torch.randn(1, 16000) * 0.1, torch.tensor([16000]))
    assert len(hidden) == 3


def test_resume_before_the_first_checkpoint_says_so(tmp_path, capsys):
    """A run killed before its first checkpoint recorded no data folder: the message says that."""
    from evalkit.cli import main

    assert main(["pretrain", "hubert-tiny", "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint yet" in err and "--data" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_across_two_nodes_equals_two_processes_on_one(corpus, tmp_path):
    """Pre-training across nodes: two `torchrun --nnodes 2 --nproc-per-node 1` launches on localhost meeting
    through a c10d rendezvous train the same weights as one `--standalone --nproc_per_node 2` launch (the
    same per-rank seeds and data shards, the same global batch)."""
    config = write_config(tmp_path / "tiny.yaml", tiny(optim={"max_steps": 3}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def pretrain_command(*launcher: str, out: Path) -> list[str]:
        run = ["-m", "evalkit", "pretrain", str(config), "--data", str(corpus), "--out", str(out)]
        return [sys.executable, "-m", "torch.distributed.run", *launcher, *run, "--max-steps", "3"]

    one = subprocess.run(
        pretrain_command("--standalone", "--nproc_per_node", "2", out=tmp_path / "one"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    rendezvous = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d"]
    rendezvous += ["--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "--rdzv_id", "evalkit-test"]
    nodes = [
        subprocess.Popen(
            pretrain_command(*rendezvous, out=tmp_path / "two"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((tmp_path / "two" / "config.json").read_text())["pretraining"]
    assert summary["processes"] == 2 and summary["steps"] == 3
