"""Crash tests: a real `evalkit` process is killed with SIGKILL at a known point of synth, eval, pretrain
and leaderboard build, then run again with the same arguments; what it leaves must equal what an
uninterrupted run leaves.

Most kill points are observable: the test polls (every few ms) for a file the command writes (an
audio file, a part file, a cache shard, a result, a checkpoint, the hidden folder a build writes
into) or for a line of its output, and kills the process group the moment it appears (as a cluster
job's kill would: synth's worker processes die with it). Points only microseconds wide (between the
two renames of a swap, between two files of a checkpoint) are hit exactly by a wrapper around the
real command that SIGKILLs its own process right after the n-th call of a function (`KILL_AFTER`: a
hook in the test, not in evalkit). After each kill the test checks that it landed where meant (e.g.
no result yet, a checkpoint before the last), so a point that slipped fails loudly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
EVALKIT = [sys.executable, "-m", "evalkit"]
POLL_S = 0.002
TIMEOUT_S = 300


def run(*args: str) -> str:
    """An uninterrupted evalkit command; its output."""
    done = subprocess.run(
        [*EVALKIT, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def kill_when(ready: Callable[[str], bool], *args: str) -> None:
    """Start evalkit `args` in a new process group and SIGKILL the group as soon as `ready(output so
    far)` holds; fails if the command ends first (the kill point was never reached)."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*EVALKIT, *args], cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        deadline = time.monotonic() + TIMEOUT_S
        try:
            while not ready(output()):
                assert proc.poll() is None, (
                    f"ended (exit {proc.returncode}) before the kill point:\n{output()}"
                )
                assert time.monotonic() < deadline, f"no kill point after {TIMEOUT_S} s:\n{output()}"
                time.sleep(POLL_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed:\n{output()}"


# `python -c KILL_AFTER MODULE FUNCTION NEEDLE N evalkit-args...`: runs evalkit and SIGKILLs its own
# process right after the N-th call of MODULE.FUNCTION with an argument whose file name holds NEEDLE.
KILL_AFTER = """
import importlib, os, signal, sys
from evalkit.cli import main

module, name, needle, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
owner, calls = importlib.import_module(module), []
real = getattr(owner, name)

def killing(*args, **kwargs):
    done = real(*args, **kwargs)
    if any(needle in os.path.basename(str(a)) for a in args):
        calls.append(args)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return done

setattr(owner, name, killing)
sys.exit(main(sys.argv[5:]))
"""


def kill_after_call(function: str, needle: str, n: int, *args: str) -> None:
    """Run evalkit `args` in a process that SIGKILLs itself right after the n-th call of `function`
    ("module.name") with an argument whose file name holds `needle`."""
    module, name = function.rsplit(".", 1)
    wrapper = [sys.executable, "-c", KILL_AFTER, module, name, needle, str(n)]
    done = subprocess.run(
        [*wrapper, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == -signal.SIGKILL, (
        f"exit {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    )


def exists(pattern: str, root: Path) -> Callable[[str], bool]:
    """A kill point: a file or folder matching `pattern` under `root` has appeared."""

    def ready(_output: str) -> bool:
        try:
            return next(root.glob(pattern), None) is not None
        except OSError:  # a folder renamed or removed while globbing: look again
            return False

    return ready


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `folder`, hidden ones included."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def assert_same(got: dict, want: dict) -> None:
    """Same names and contents, reported by name (not as a diff of megabytes of audio)."""
    missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    differ = sorted(k for k in want.keys() & got.keys() if got[k] != want[k])
    assert not (missing or extra or differ), f"missing {missing[:5]}, extra {extra[:5]}, differ {differ[:5]}"


def polled(ready: Callable[[Path], Callable[[str], bool]]) -> Callable[[Path, list[str]], None]:
    """A kill point found by polling: `ready(out)` says when."""
    return lambda out, args: kill_when(ready(out), *args)


def after(function: str, needle: str, n: int) -> Callable[[Path, list[str]], None]:
    """A kill point right after a call: see `kill_after_call`."""
    return lambda out, args: kill_after_call(function, needle, n, *args)


# A temporary file of evalkit.core.io's atomic writes (`.<name>.<8 hex>.tmp` beside <name>).
TEMP_FILE = re.compile(r"(^|/)\.[^/]+\.[0-9a-f]{8}\.tmp$")

# ---- evalkit synth -----------------------------------------------------------------------------

SYNTH_CORPORA = ("ks",)  # 96 utterances in 4 chunks of 40 (train 2, dev 1, test 1)
SYNTH_KILLS = {
    "first audio file being written": polled(lambda out: exists("*/wav/*/*", out)),
    "first chunk done (its part file)": polled(lambda out: exists("*/.parts/*.json", out)),
    "first split's manifest written": after("evalkit.synth.suite.write_manifest", "", 1),
}


@pytest.mark.parametrize("point", SYNTH_KILLS)
def test_synth_killed_then_rerun_equals_an_uninterrupted_synth(smoke_suite, tmp_path, point):
    """The session's smoke suite is the uninterrupted run: the plan is per (seed, corpus, split), so a
    subset of corpora is byte for byte the same as those corpora of the whole suite."""
    out = tmp_path / "suite"
    args = [
        "synth",
        "--profile",
        "smoke",
        "--out",
        str(out),
        "--jobs",
        "2",
        "--corpora",
        ",".join(SYNTH_CORPORA),
    ]
    SYNTH_KILLS[point](out, args)
    assert not (out / "ks" / "test.jsonl").exists()  # the last manifest: killed before the end
    run(*args)
    want = {"suite.json": (smoke_suite / "suite.json").read_bytes()}
    for corpus in SYNTH_CORPORA:
        want |= {corpus: None} | {f"{corpus}/{k}": v for k, v in tree(smoke_suite / corpus).items()}
    got = tree(out)
    # before the fix a WAV write killed midway left its temporary file, and the re-run kept it
    assert not [name for name in got if TEMP_FILE.search(name)]
    assert_same(got, want)


# ---- evalkit eval ------------------------------------------------------------------------------

EVAL_ARGS = ["--upstream", "fbank", "--tasks", "ks,er", "--steps", "20", "--protocol", "quick"]
# Timing and host fields: the only ones a re-run may change.
VOLATILE = {"wall_time_s", "feature_time_s", "git_hash"}


def evaluate(out: Path, data: Path) -> list[str]:
    return ["eval", *EVAL_ARGS, "--data", str(data), "--output", str(out)]


@pytest.fixture(scope="module")
def evaluated(smoke_suite, tmp_path_factory) -> Path:
    """An uninterrupted `evalkit eval` (fbank on KS then ER): its results folder, cache included."""
    out = tmp_path_factory.mktemp("eval") / "straight"
    run(*evaluate(out, smoke_suite))
    return out


def results_of(folder: Path) -> dict:
    """The eval folder as compared: result JSONs without their timing/host fields, every other file's
    bytes (samples, the feature cache's shards and indexes), every folder."""

    def steady(node):
        if isinstance(node, dict):
            return {k: steady(v) for k, v in node.items() if k not in VOLATILE}
        return [steady(v) for v in node] if isinstance(node, list) else node

    files = tree(folder)
    for name in files:
        if name.startswith("fbank/") and name.endswith(".json"):
            files[name] = steady(json.loads(files[name]))
    return files


EVAL_KILLS = {
    "feature extraction (first cache shard)": polled(lambda out: exists(".cache/*/*/*/*shard_*", out)),
    # KS's first dev evaluation, 12 steps before the end of its training
    "head training (KS, step 8 of 20)": polled(lambda out: lambda output: "[ks] step 8/20" in output),
    "first task's result written (KS)": polled(lambda out: exists("fbank/ks.json", out)),
}


@pytest.mark.parametrize("point", EVAL_KILLS)
def test_eval_killed_then_rerun_equals_an_uninterrupted_eval(smoke_suite, evaluated, tmp_path, point):
    out = tmp_path / "results"
    EVAL_KILLS[point](out, evaluate(out, smoke_suite))
    assert not (out / "fbank" / "er.json").exists()
    assert (out / "fbank" / "ks.json").exists() == point.startswith("first task")
    run(*evaluate(out, smoke_suite))
    assert_same(results_of(out), results_of(evaluated))


# ---- evalkit pretrain --------------------------------------------------------------------------

# tests/pretraining/test_pretrain.py's tiny BEST-RQ, 24 steps with a checkpoint every 8.
RECIPE = {
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
        "max_steps": 24,
        "weight_decay": 0.01,
        "clip_grad": 1.0,
        "accumulate": 1,
        "betas": [0.9, 0.98],
    },
    "train": {"bf16": True, "log_every": 1, "checkpoint_every": 8, "seed": 0},
}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def pretrained(recipe, smoke_suite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "straight"
    run("pretrain", str(recipe), "--data", str(smoke_suite), "--out", str(out))
    return out


def logged(out: Path) -> list[dict]:
    """log.csv's steps and losses (timings left out)."""
    lines = (out / "log.csv").read_text().splitlines() if (out / "log.csv").is_file() else []
    header = lines[0].split(",") if lines else []
    # a row being appended while polled is incomplete: left out
    rows = [
        dict(zip(header, cells))
        for cells in (line.split(",") for line in lines[1:])
        if len(cells) == len(header)
    ]
    return [{"step": int(r["step"]), "loss": float(r["loss"])} for r in rows]


PRETRAIN_KILLS = {
    "mid-checkpoint (step 16: encoder and half of train_state.tmp written)": after(
        "evalkit.pretraining.train_state.save_model", "objective.safetensors", 2
    ),
    "mid-swap (step 16: train_state renamed to .old, the new one not yet in)": after(
        "os.rename", "train_state.old", 1
    ),
    "between checkpoints (step 18 logged)": polled(
        lambda out: lambda _: any(r["step"] >= 18 for r in logged(out))
    ),
    # before the fix the resumed run deleted train_state.old, its only complete state, before swapping
    # in the new one: killed there, --resume found no checkpoint and a run with --data started over
    "two kills in a row (mid-swap at step 16, then the resumed run as it removes train_state.old)": lambda out, args: (
        kill_after_call("os.rename", "train_state.old", 1, *args),
        kill_after_call("shutil.rmtree", "train_state.old", 1, *args[:2], "--out", str(out), "--resume"),
    ),
}


@pytest.mark.parametrize("point", PRETRAIN_KILLS)
def test_pretrain_killed_then_resumed_ends_with_the_weights_of_an_uninterrupted_run(
    recipe, smoke_suite, pretrained, tmp_path, point
):
    """Compared as tests/pretraining/test_pretrain.py compares an in-process resume: weights within
    1e-6, the same logged steps and losses, the same step count and audio seen."""
    out = tmp_path / "run"
    PRETRAIN_KILLS[point](out, ["pretrain", str(recipe), "--data", str(smoke_suite), "--out", str(out)])
    saved = [torch.load(p, weights_only=True)["step"] for p in out.glob("train_state*/state.pt")]
    assert saved and max(saved) < 24, saved  # a checkpoint before the last: there is something to resume
    run("pretrain", str(recipe), "--out", str(out), "--resume")

    for name in ("model.safetensors", "train_state/objective.safetensors"):
        a, b = load_file(pretrained / name), load_file(out / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), (name, key)
    straight, resumed = logged(pretrained), logged(out)
    assert [r["step"] for r in resumed] == list(range(1, 25))
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in straight])
    done, want = (json.loads((p / "config.json").read_text())["pretraining"] for p in (out, pretrained))
    assert done["steps"] == 24 and done["audio_seconds"] == pytest.approx(want["audio_seconds"])
    assert (out / "setup_report.json").read_bytes() == (pretrained / "setup_report.json").read_bytes()
    for folder in (".", "train_state"):  # no train_state.tmp/.old or temporary file left
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(
            p.name for p in (pretrained / folder).iterdir()
        )


# ---- evalkit leaderboard build -----------------------------------------------------------------


def board_args(results: Path, out: Path) -> list[str]:
    return ["leaderboard", "build", "--results", str(results), "--out", str(out), "--bootstrap", "200"]


# kill point -> what --out holds right after the kill: the earlier board, none, or the new board
LEADERBOARD_KILLS = {
    "new board's folder created": (
        polled(lambda out: exists(f".{out.name}.building-*", out.parent)),
        "earlier",
    ),
    "new board's tables written, plots and page not yet": (
        polled(lambda out: exists(f".{out.name}.building-*/*/leaderboard.json", out.parent)),
        "earlier",
    ),
    "old board renamed away, new not yet in": (after("os.rename", ".board.old-", 1), None),
    "new board renamed in, old not yet removed": (after("os.rename", ".board.building-", 1), "straight"),
}


@pytest.fixture(scope="module")
def boards(evaluated, tmp_path_factory) -> dict[str, Path]:
    """An earlier board (fbank on KS only), the results with ER added, and their uninterrupted board."""
    root = tmp_path_factory.mktemp("boards")
    earlier = root / "earlier" / "fbank"
    earlier.mkdir(parents=True)
    for name in ("ks.json", "ks.samples.jsonl"):
        shutil.copy(evaluated / "fbank" / name, earlier / name)
    run(*board_args(earlier.parent, root / "earlier-board"))
    run(*board_args(evaluated, root / "straight"))
    return {"earlier": root / "earlier-board", "results": evaluated, "straight": root / "straight"}


@pytest.mark.parametrize("point", LEADERBOARD_KILLS)
def test_leaderboard_build_killed_then_rerun_equals_an_uninterrupted_build(boards, tmp_path, point):
    """--out holds an earlier board (KS only); a build with ER added is killed, then run again: --out
    is the uninterrupted build's board and nothing is left beside it."""
    out = tmp_path / "board"
    shutil.copytree(boards["earlier"], out)
    earlier = tree(out)
    kill, holds = LEADERBOARD_KILLS[point]
    kill(out, board_args(boards["results"], out))
    want = {"earlier": earlier, None: None, "straight": tree(boards["straight"])}[holds]
    assert (tree(out) if out.exists() else None) == want
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".board.")]  # what the kill left
    run(*board_args(boards["results"], out))
    assert_same(tree(out), tree(boards["straight"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board"]


def test_every_file_a_pretraining_writes_has_the_mode_of_an_ordinary_open(pretrained):
    """safetensors creates its files 0600 whatever the umask: train_state/objective.safetensors was
    unreadable to colleagues sharing a run folder (defect 7)."""
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in pretrained.rglob("*") if p.is_file()]
    assert any(p.name == "objective.safetensors" for p in files)
    assert {str(p.relative_to(pretrained)): oct(p.stat().st_mode & 0o777) for p in files} == {
        str(p.relative_to(pretrained)): oct(0o666 & ~umask) for p in files
    }
