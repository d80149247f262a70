"""`evalkit eval --plan`: what an evaluation will cost, printed before anything runs.

For each task still to evaluate: the audio of each split it reads (records and hours, from the
manifests' declared durations; no audio is read), the features it still has to cache (the estimate
the disk check uses), the head trainings (heads x learning rates x head seeds, as the protocol and
`--seed-rates` make them) and their steps, and the wall time on this machine. The time comes from a
short calibration on synthetic input: a few batches of random waveforms through the upstream
(extraction speed) and a few training steps of each task's reference head on random features of
the upstream's shape (seconds per step, and per forward pass for the dev evaluations). Nothing is
written.

The estimate leaves out what it cannot see: learning rates that `extend_grid` adds when the best is
at an edge of the grid (one more training each), QbE's DTW scoring, reading a large cache from a slow
disk, and post-processing tuned on dev (SD's threshold).
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.manifest import read_manifest
from evalkit.evaluation.cache_size import cache_bytes, is_cached
from evalkit.evaluation.kinds.base import TaskKind, head_seeds, training_plan
from evalkit.evaluation.runner import UpstreamRunner, utterances_of
from evalkit.evaluation.trainer import build_runs, intra_op_threads, make_batches, to_device, train_step

CALIBRATION_STEPS = 3  # timed training steps per task, after one warm-up step
CALIBRATION_BATCHES = 2  # timed upstream batches, after one warm-up batch


class SyntheticFeatures:
    """Random features of an upstream's shape for a manifest's records (the `Features` protocol): what
    a cache would hold, without running the upstream. Batches are views of one random buffer."""

    def __init__(self, upstream, manifest: Path, layers=None) -> None:
        utts = utterances_of(manifest, read_manifest(manifest))
        runner = UpstreamRunner(upstream, "cpu", False, None, 60.0, layers)
        self.ids = [u.id for u in utts]
        self.num_layers, self.hidden_size = runner.num_layers, runner.hidden_size
        self.frame_rate = runner.frame_rate
        self.lengths = dict(zip(self.ids, runner.estimate_frames(utts)))
        self._buffer = torch.empty(0)

    def batch(self, ids, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        lens = torch.tensor([self.lengths[i] for i in ids], dtype=torch.int64)
        b, t = len(ids), max(1, int(lens.max()))
        if self._buffer.shape[1:2] < (b * t,) or self._buffer.dtype != dtype:
            self._buffer = torch.randn(self.num_layers, b * t, self.hidden_size, generator=_generator()).to(
                dtype
            )
        return self._buffer[:, : b * t].view(self.num_layers, b, t, self.hidden_size), lens


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@dataclass
class TaskCost:
    """One task's share of an evaluation."""

    task: str
    hours: dict[str, float]  # split -> hours of audio
    records: dict[str, int]  # split -> records
    cache_bytes: int  # features still to cache (a manifest another task caches counts there)
    runs: int  # head trainings: (head, learning rate, seed) runs
    steps: int  # training steps of each
    extract_s: float | None  # None: the upstream could not be calibrated
    train_s: float  # training and dev evaluations
    step_s: float | None  # one training step of one run (calibrated)

    @property
    def total_s(self) -> float | None:
        return None if self.extract_s is None else self.extract_s + self.train_s


def extraction_speed(upstream, seconds: float, batch_seconds: float = 60.0) -> float | None:
    """Audio seconds per second through the upstream, on random waveforms of `seconds` each filling
    batches of `batch_seconds`; None for an upstream that reads manifest records (the oracle)."""
    if getattr(upstream, "record_keys", ()):
        return None
    seconds = min(max(seconds, 1.0), batch_seconds)
    n = max(1, int(batch_seconds // seconds))
    samples = int(seconds * SAMPLE_RATE)
    device = next((p.device for p in upstream.parameters()), torch.device("cpu"))
    wavs = (0.1 * torch.randn(n, samples, generator=_generator())).to(device)
    lens = torch.full((n,), samples, dtype=torch.int64, device=device)
    with torch.inference_mode():
        upstream(wavs, lens)  # warm-up
        t0 = time.perf_counter()
        for _ in range(CALIBRATION_BATCHES):
            upstream(wavs, lens)
        _synchronize(device)
        took = time.perf_counter() - t0
    return CALIBRATION_BATCHES * n * seconds / took


def step_seconds(kind: TaskKind, feats: SyntheticFeatures, head, lr: float) -> tuple[float, float]:
    """(one training step, one forward pass) of one run of `head` on a typical batch, in seconds."""
    recs = {r["id"]: r for r in kind.records("train")}
    durations = {i: r["duration"] for i, r in recs.items()}
    spec = kind.task.batch
    if spec is None:  # batches of `batch_seconds`: the median batch
        batches = make_batches(list(recs), durations, kind.task.batch_seconds, random.Random(0))
        batches.sort(key=len)
        batch, accumulate = batches[len(batches) // 2], 1
    else:  # batches of utterances (s3prl's recipes): utterances of the median duration, accumulated
        order = sorted(recs, key=durations.__getitem__)
        start = max(0, len(order) // 2 - spec.utterances // 2)
        batch, accumulate = order[start : start + spec.utterances], spec.accumulate
    (run,) = build_runs(kind, feats.num_layers, feats.hidden_size, [lr], heads=[head], seed=0)
    device = torch.device(kind.settings.device)
    run.modules().to(device)
    opt = torch.optim.AdamW(run.modules().parameters(), lr=lr)
    hidden, lens = to_device(feats.batch(batch), device)
    targets = [kind.target(recs[i]) for i in batch]
    bf16 = kind.settings.bf16
    micro = [(hidden, lens, targets)] * accumulate
    options = {"accumulate": accumulate, "specaug": kind.task.specaug}
    train_step(kind, [run], opt, micro, bf16, **options)  # warm-up
    t0 = time.perf_counter()
    for _ in range(CALIBRATION_STEPS):
        train_step(kind, [run], opt, micro, bf16, **options)
    _synchronize(device)
    step = (time.perf_counter() - t0) / CALIBRATION_STEPS
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        kind.predict(run.forward(hidden, lens), lens)
    _synchronize(device)
    return step, time.perf_counter() - t0


def head_runs(kind: TaskKind) -> tuple[int, int, int, int]:
    """(runs, steps, dev evaluations per run, runs of the first seed) of the kind's trained run."""
    grid, head_specs, steps, every = training_plan(kind.task, kind.settings)
    seeds = head_seeds(kind.task, kind.settings)
    first = len(grid) * len(head_specs)
    later = len(head_specs) if kind.settings.seed_rates == "chosen" else first
    evals = steps // every + (1 if steps % every else 0)
    return first + (len(seeds) - 1) * later, steps, evals, first


def task_cost(upstream, kind: TaskKind, cache: Path | None, speed: float | None, seen: set) -> TaskCost:
    """The cost of one task; `seen` holds the manifests already counted (a shared split caches once)."""
    hours, records, to_cache, to_extract = {}, {}, 0, 0.0
    feats = {}
    for split in kind.splits:
        manifest = Path(kind.manifest(split)).resolve()
        recs = kind.records(split)
        records[split] = len(recs)
        hours[split] = sum(r["duration"] for r in recs) / 3600
        layers = kind.settings.layers
        feats[split] = manifest
        if split == "train" and kind.task.crop is not None:
            continue  # random crops: the upstream runs inside every step (counted with the training)
        if manifest not in seen and not (
            cache is not None
            and is_cached(
                upstream,
                manifest,
                cache,
                layers=layers,
                audio=kind.task.audio,
            )
        ):
            seen.add(manifest)
            to_cache += cache_bytes(upstream, manifest, layers=layers)
            to_extract += hours[split] * 3600
    extract_s = None if speed is None else to_extract / speed
    if cache is None:  # --no-cache runs the upstream at every step instead: not estimated apart
        to_cache = 0
    if not kind.trains:
        return TaskCost(kind.task.name, hours, records, to_cache, 0, 0, extract_s, 0.0, None)
    runs, steps, evals, _ = head_runs(kind)
    grid, head_specs, _, _ = training_plan(kind.task, kind.settings)
    with intra_op_threads(kind.settings.train_threads):  # heads train with the threads a run gives them
        step, forward = step_seconds(
            kind, SyntheticFeatures(upstream, feats["train"], kind.settings.layers), head_specs[0], grid[0]
        )
    dev_batches = max(1.0, hours.get("dev", 0.0) * 3600 / kind.task.batch_seconds)
    train_s = runs * steps * step + runs * evals * dev_batches * forward
    if kind.task.crop is not None and speed is not None:  # the upstream on every step's crops
        train_s += runs * steps * crop_audio_seconds(kind) / speed
    return TaskCost(kind.task.name, hours, records, to_cache, runs, steps, extract_s, train_s, step)


def crop_audio_seconds(kind: TaskKind) -> float:
    """Seconds of audio one training step sends through the upstream under the task's random crops:
    the step's utterances, each at most `crop.seconds` long (means over the train split)."""
    task = kind.task
    full = [r["duration"] for r in kind.records("train")] or [1.0]
    cropped = sum(min(d, task.crop.seconds) for d in full) / len(full)
    if task.batch is not None:
        utterances = task.batch.utterances * task.batch.accumulate
    else:  # batches of `batch_seconds` of whole utterances
        utterances = task.batch_seconds / max(1e-9, sum(full) / len(full))
    return utterances * cropped


def plan_costs(upstream, kinds: list[TaskKind], cache: Path | None, log=print) -> list[TaskCost]:
    """Every task's cost, calibrating the upstream once on utterances of the train splits' median length."""
    durations = sorted(r["duration"] for k in kinds for r in k.records(k.splits[0]))
    median = durations[len(durations) // 2] if durations else 10.0
    speed = extraction_speed(upstream, median)
    log(
        f"calibration: the upstream runs at {speed:.0f} audio-s/s on random {median:.1f} s waveforms"
        if speed is not None
        else "calibration: this upstream reads manifest records, so its extraction time is not estimated"
    )
    seen: set = set()
    return [task_cost(upstream, k, cache, speed, seen) for k in kinds]


def format_plan(costs: list[TaskCost], cache: Path | None, device: str = "cpu") -> str:
    """The plan as a Markdown table, with the totals, the free disk and what the estimate leaves out."""
    lines = [
        "| task | audio h (train / dev / test) | records | cache to write | runs x steps | s/step | "
        "extract | train | total |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for c in costs:
        audio = " / ".join(f"{c.hours[s]:.2f}" for s in c.hours)
        runs = f"{c.runs} x {c.steps}" if c.runs else "no training"
        step = f"{c.step_s:.3f}" if c.step_s is not None else ""
        lines.append(
            f"| {c.task} | {audio} | {sum(c.records.values())} | {_size(c.cache_bytes)} | {runs} | {step} | "
            f"{_duration(c.extract_s)} | {_duration(c.train_s)} | {_duration(c.total_s)} |"
        )
    total_cache = sum(c.cache_bytes for c in costs)
    extract = None if any(c.extract_s is None for c in costs) else sum(c.extract_s for c in costs)
    train = sum(c.train_s for c in costs)
    total = None if extract is None else extract + train
    lines.append(
        f"| **all** | {sum(sum(c.hours.values()) for c in costs):.2f} h | "
        f"{sum(sum(c.records.values()) for c in costs)} | {_size(total_cache)} | "
        f"{sum(c.runs for c in costs)} runs | | {_duration(extract)} | {_duration(train)} | {_duration(total)} |"
    )
    lines.append("")
    if cache is not None:
        where = next(q for q in (cache.absolute(), *cache.absolute().parents) if q.exists())
        free = shutil.disk_usage(where).free
        fits = "fits" if total_cache <= free else "does NOT fit: evalkit eval would stop before extracting"
        lines.append(
            f"Cache: {_size(total_cache)} to write under {cache}; {_size(free)} free there ({fits})."
        )
    else:
        lines.append(
            "No cache (--no-cache): the upstream runs at every training step; its time is not estimated."
        )
    lines.append(
        f"Times are estimated on {device} from a short calibration; they leave out learning rates added at a "
        "grid's edge, QbE's DTW scoring and reading the cache from disk."
    )
    return "\n".join(lines)


def _size(n: int) -> str:
    if n >= 2**40:
        return f"{n / 2**40:.2f} TiB"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
