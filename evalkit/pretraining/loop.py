"""The one pre-training loop for every method: `evalkit pretrain CONFIG --data DIR --out OUT`.

Read it top to bottom, as nanoGPT's train.py: load the recipe, join the
torchrun group if there is one (gloo on CPU, NCCL on GPU), build the method's
`Objective` (`upstreams.methods.METHODS`), run its one-off setup, then train with
AdamW, linear warm-up + cosine (or linear) decay, bf16 autocast where the device has it, gradient
accumulation and clipping, on batches planned by seconds of audio. Every
`checkpoint_every` steps and at the end it writes

    OUT/config.json, OUT/model.safetensors   the encoder: what `evalkit eval --upstream OUT` loads
    OUT/train_state/                         objective weights, optimizer, scheduler, RNG, data position
    OUT/setup/, OUT/setup_report.json        what `Objective.setup` made (k-means targets, a teacher...)
    OUT/log.csv, OUT/tensorboard/            loss, the method's stats, lr, grad norm, audio seconds/s

and `--resume` continues from train_state/ to the very same weights as a run
that was never stopped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_model
from tqdm import tqdm

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_open, atomic_write_text
from evalkit.core.progress import progress_bar
from evalkit.pretraining.data import batch_stream, read_data
from evalkit.pretraining.distributed import Processes, barrier, distributed, sum_over_processes, use_bf16
from evalkit.pretraining.recipe import OptimConfig, PretrainConfig, build_objective, load_config
from evalkit.pretraining.train_state import find_train_state, save_checkpoint, seed_everything, set_rng_state
from upstreams.objective import Objective, PretrainData
from upstreams.work import work_dir

# ---- optimizer and schedule --------------------------------------------------------------------


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Linear warm-up to 1, then cosine or linear decay to min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay


def build_optimizer(objective: Objective, cfg: OptimConfig) -> torch.optim.AdamW:
    trainable = [p for p in objective.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


# ---- logs --------------------------------------------------------------------------------------


class TrainLog:
    """OUT/log.csv and TensorBoard; rows past the resumed step (a killed run's last ones) are dropped."""

    def __init__(self, out: Path, step: int) -> None:
        # deferred: tensorboard is slow to import, and only rank 0 writes logs
        from torch.utils.tensorboard import SummaryWriter

        self.path = out / "log.csv"
        self.rows: list[dict] = []
        if self.path.is_file() and step > 0:
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        self.fields = list(self.rows[0]) if self.rows else []
        self._rewrite()
        self.tensorboard = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1 if step else None)

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if set(row) - set(self.fields):
            self.fields += [k for k in row if k not in self.fields]
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.fields).writerow(row)
        for key, value in row.items():
            if key not in ("step", "epoch"):
                self.tensorboard.add_scalar(f"pretrain/{key}", value, row["step"])
        self.tensorboard.flush()

    def _rewrite(self) -> None:
        """The whole file anew (after a resume, or when a row brings a new column), atomically."""
        with atomic_open(self.path, "w") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        self.tensorboard.close()


# ---- the loop ----------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where the run stands (train_state/ keeps the first five) and what this invocation has done."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # position inside the epoch
    audio_before: float = 0.0  # audio seconds and wall time of the invocations before this one
    wall_before: float = 0.0
    audio_here: float = 0.0  # audio seconds this process has trained on in this invocation
    started: float = 0.0
    bad_steps: int = 0  # steps skipped in a row for a non-finite gradient


@dataclass
class Window:
    """Sums of the step statistics since the last log row."""

    sums: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.time)

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def row(self, procs: Processes, at: Progress, lr: float, grad_norm: float) -> dict:
        """The means over every process (a collective: all call it), then a fresh window."""
        total = sum_over_processes(procs, self.sums)
        now = time.time()
        n = total.pop("n")
        row = {
            "step": at.step,
            "epoch": at.epoch,
            "loss": total.pop("loss") / n,
            **{k: v / n for k, v in sorted(total.items()) if k != "audio"},
            "lr": lr,
            "grad_norm": grad_norm,
            "audio_per_second": total["audio"] / max(now - self.start, 1e-9),
        }
        self.sums, self.start = {}, now
        return row


def pretrain(
    config: str | os.PathLike | PretrainConfig,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> Path:
    """Pre-trains the recipe's encoder into `out`; returns `out`. `device`: cpu, cuda or cuda:N (None: CUDA
    where torch sees a GPU).

    The default `out` is <work>/<recipe name>, <work> being $EVALKIT_WORK or `exp`: where
    recipes that build on another run (HuBERT iteration 2, DistilHuBERT) look for it as `${work}/NAME`.
    """
    cfg = config if isinstance(config, PretrainConfig) else load_config(config)
    if max_steps is not None:
        if max_steps <= 0:
            raise EvalkitError(f"--max-steps must be a positive number of steps; got {max_steps}.")
        cfg.optim.max_steps = max_steps
    out = Path(out) if out is not None else Path(work_dir()) / Path(cfg.source).stem
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # found now, not by mkdir once the data is read and the processes are up
        raise EvalkitError(f"--out {out}: {blocker} is a file, not a folder. Give --out a folder.")
    with distributed(device) as procs:
        return _train(cfg, Path(data) if data is not None else None, out, resume, progress, procs)


def _train(
    cfg: PretrainConfig, data_dir: Path | None, out: Path, resume: bool, progress: bool, procs: Processes
) -> Path:
    say = tqdm.write if procs.main else (lambda *_: None)
    state_dir, saved = _previous_run(cfg, out, resume, say)
    data_dir = _data_folder(data_dir, saved, out, resume)
    data = read_data(data_dir, cfg.data.min_seconds)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(procs)

    # The model: the same initial weights in every process; then the method's one-off setup.
    seed_everything(cfg.train.seed)
    objective = build_objective(cfg).to(procs.device)
    report = _setup(objective, data, out, procs, saved is not None, say)
    objective.to(procs.device).train()
    model = _parallel(objective, cfg, procs)
    optimizer = build_optimizer(objective, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.optim))
    seed_everything(cfg.train.seed * 1000 + procs.rank)  # masks and dropout differ between processes
    at = Progress()
    if saved is not None:
        at = _restore(saved, state_dir, objective, optimizer, scheduler, procs, say)
        say(f"resuming {out} at step {at.step} (epoch {at.epoch}, batch {at.batch})")
    say(_describe(cfg, objective, data, procs, at.step))

    o = cfg.optim
    log = TrainLog(out, at.step) if procs.main else None
    bar = progress_bar(
        total=o.max_steps,
        initial=at.step,
        unit="step",
        disable=not (progress and procs.main),
        dynamic_ncols=True,
    )
    stream = batch_stream(data, cfg.data, cfg.train.seed, procs.rank, procs.world, at.epoch, at.batch)
    autocast = torch.autocast(
        procs.device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.train.bf16, procs.device)
    )
    window = Window()
    at.started = time.time()
    while at.step < o.max_steps:
        _accumulate(model, stream, autocast, o.accumulate, procs, at, window)
        lr = optimizer.param_groups[0]["lr"]
        grad_norm = _optimizer_step(objective, optimizer, scheduler, o, at, say)
        bar.update()
        if _due(at.step, cfg.train.log_every, o.max_steps):
            row = window.row(procs, at, lr, grad_norm)
            if log is not None:
                log.write(row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "epoch", "lr")})
                if not progress:  # no bar (e.g. a pipeline worker): a line per log step
                    print(
                        f"[pretrain {out.name}] step {at.step}/{o.max_steps} loss {row['loss']:.3f} "
                        f"{row['audio_per_second']:.0f} audio-s/s",
                        flush=True,
                    )
        if _due(at.step, cfg.train.checkpoint_every, o.max_steps):
            seen = sum_over_processes(procs, {"audio": at.audio_here})["audio"]
            state = _train_state(cfg, data_dir, optimizer, scheduler, at, seen)
            save_checkpoint(
                out, procs, objective, _summary(cfg, objective, data, procs, at, report, seen), state
            )
    bar.close()
    if log is not None:
        log.close()
    _finish(cfg, out, procs, at, saved, say)
    return out


def _previous_run(cfg: PretrainConfig, out: Path, resume: bool, say) -> tuple[Path | None, dict | None]:
    """train_state/ of the run in `out` and what it saved, when resuming it; refuses what would clash."""
    state_dir = find_train_state(out)
    if state_dir is not None and not resume:
        raise EvalkitError(
            f"{out} already holds a pre-training run; pass --resume to continue it, or choose another --out."
        )
    saved = torch.load(state_dir / "state.pt", weights_only=True) if state_dir and resume else None
    if resume and saved is None:
        say(f"--resume: no checkpoint in {out} yet; starting afresh")
    if saved is not None:
        was = saved["config"]
        for key in ("method", "encoder", "objective"):
            if was[key] != cfg.to_dict()[key]:
                raise EvalkitError(
                    f"{out}: --resume with a different {key!r} than the run there "
                    f"({was[key]!r} then, {cfg.to_dict()[key]!r} now); use another --out."
                )
    return state_dir, saved


def _data_folder(data_dir: Path | None, saved: dict | None, out: Path, resume: bool) -> Path:
    """--data, else the folder a resumed run trained on."""
    if saved is not None:
        data_dir = data_dir or Path(saved["data"])
    if data_dir is None and resume:
        raise EvalkitError(
            f"--resume: {out} holds no checkpoint yet (the run stopped before its first one), so it does not "
            "say which data it trained on; start it again with --data DIR."
        )
    if data_dir is None:
        raise EvalkitError(
            "evalkit pretrain needs --data DIR: a suite made by `evalkit synth`, "
            "or a folder holding a train.jsonl manifest."
        )
    return data_dir


def _setup(objective: Objective, data: PretrainData, out: Path, procs: Processes, resumed: bool, say) -> dict:
    """The method's one-off setup on rank 0 (the others wait, then load it), or its results on a resume."""
    setup_dir, report_path = out / "setup", out / "setup_report.json"
    if resumed:
        objective.load_setup(setup_dir)
        return json.loads(report_path.read_text()) if report_path.is_file() else {}
    if procs.main:
        setup_dir.mkdir(exist_ok=True)
        report = objective.setup(data, setup_dir, log=say)
        atomic_write_text(report_path, json.dumps(report, indent=1))
        say(f"setup report: {json.dumps(report)}")
    barrier(procs)
    if not procs.main:
        objective.load_setup(setup_dir)
        report = json.loads(report_path.read_text())
    return report


def _parallel(objective: Objective, cfg: PretrainConfig, procs: Processes) -> torch.nn.Module:
    """The objective under DDP when there are several processes."""
    if procs.world == 1:
        return objective
    unused = cfg.encoder["encoder"]["layerdrop"] > 0 or getattr(objective, "find_unused_parameters", False)
    return torch.nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[procs.device.index] if procs.device.type == "cuda" else None,
        find_unused_parameters=unused,
    )


def _restore(
    saved: dict, state_dir: Path, objective: Objective, optimizer, scheduler, procs: Processes, say
) -> Progress:
    """Weights, optimizer, scheduler and this process's RNG as train_state/ saved them."""
    load_model(objective, str(state_dir / "objective.safetensors"), device=str(procs.device))
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    at = Progress(saved["step"], saved["epoch"], saved["batch"], saved["audio_seconds"], saved["wall_time_s"])
    rng_file = state_dir / f"rng-{procs.rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    else:
        say(f"{rng_file} missing (a different number of processes?): random state starts afresh")
    return at


def _describe(
    cfg: PretrainConfig, objective: Objective, data: PretrainData, procs: Processes, step: int
) -> str:
    encoder_params = sum(p.numel() for p in objective.encoder.parameters())
    encoder_trained = sum(p.numel() for p in objective.encoder.parameters() if p.requires_grad)
    trainable = sum(p.numel() for p in objective.parameters() if p.requires_grad)
    o = cfg.optim
    return (
        f"{cfg.method}: encoder {encoder_params / 1e6:.2f} M parameters ({encoder_trained / 1e6:.2f} M trained; "
        f"{trainable / 1e6:.2f} M with the objective's heads); "
        f"{len(data.records)} utterances, {sum(float(r['duration']) for r in data.records) / 3600:.2f} h "
        f"from {data.manifest}; {procs.world} process(es) on {procs.device}; step {step} -> {o.max_steps}, "
        f"{procs.world * o.accumulate} × {cfg.data.batch_seconds:g} s of padded audio per step, "
        f"{'bf16 autocast' if use_bf16(cfg.train.bf16, procs.device) else 'fp32'} (train.bf16: {cfg.train.bf16})"
    )


def _accumulate(
    model, stream, autocast, accumulate: int, procs: Processes, at: Progress, window: Window
) -> None:
    """Forward and backward over `accumulate` micro-batches (DDP syncs gradients on the last)."""
    for micro in range(accumulate):
        at.epoch, at.batch, batch = next(stream)
        batch = dataclasses.replace(
            batch, wavs=batch.wavs.to(procs.device), wav_lens=batch.wav_lens.to(procs.device)
        )
        last = micro == accumulate - 1
        with contextlib.nullcontext() if last or procs.world == 1 else model.no_sync():
            with autocast:
                output = model(batch)
            (output.loss / accumulate).backward()
        seconds = float(batch.wav_lens.sum()) / SAMPLE_RATE
        at.audio_here += seconds
        window.add({"loss": float(output.loss.detach()), **output.stats, "audio": seconds, "n": 1})


def _optimizer_step(objective: Objective, optimizer, scheduler, o: OptimConfig, at: Progress, say) -> float:
    """Clip, step (skipped when the gradient is not finite), advance the schedule; the gradient norm."""
    params = [p for p in objective.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, o.clip_grad if o.clip_grad > 0 else math.inf))
    if math.isfinite(grad_norm):
        optimizer.step()
        at.bad_steps = 0
    else:  # the same decision in every process: gradients were averaged first
        at.bad_steps += 1
        say(f"step {at.step + 1}: gradient norm {grad_norm}; step skipped")
        if at.bad_steps >= 10:
            raise RuntimeError("10 steps in a row with non-finite gradients; lower optim.lr or turn off bf16")
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    at.step += 1
    return grad_norm


def _due(step: int, every: int, max_steps: int) -> bool:
    return step % every == 0 or step == max_steps


def _train_state(
    cfg: PretrainConfig, data_dir: Path, optimizer, scheduler, at: Progress, seen: float
) -> dict:
    """train_state/state.pt: where to resume; `seen` is the audio of this invocation, all processes."""
    return {
        "step": at.step,
        "epoch": at.epoch,
        "batch": at.batch,
        "audio_seconds": at.audio_before + seen,
        "wall_time_s": at.wall_before + time.time() - at.started,
        "data": str(data_dir.resolve()),
        "config": cfg.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }


def _summary(
    cfg: PretrainConfig,
    objective: Objective,
    data: PretrainData,
    procs: Processes,
    at: Progress,
    report: dict,
    seen: float,
) -> dict:
    """config.json: the encoder checkpoint, and how it was pre-trained."""
    return {
        "upstream": "encoder",
        "config": objective.encoder.config,
        "pretraining": {
            "method": cfg.method,
            "objective": objective.config(),
            "config": cfg.to_dict(),
            "data": str(data.manifest),
            "steps": at.step,
            "max_steps": cfg.optim.max_steps,
            "finished": at.step >= cfg.optim.max_steps,
            "processes": procs.world,
            "wall_time_s": round(at.wall_before + time.time() - at.started, 1),
            "audio_seconds": round(at.audio_before + seen, 1),
            "encoder_parameters": sum(p.numel() for p in objective.encoder.parameters()),
            "setup_report": report,
        },
    }


def _finish(cfg: PretrainConfig, out: Path, procs: Processes, at: Progress, saved: dict | None, say) -> None:
    if saved is not None and at.step == saved["step"]:
        say(f"{out} is already trained to step {at.step}; raise --max-steps to train on")
        return
    seen = sum_over_processes(procs, {"audio": at.audio_here})["audio"]
    wall = time.time() - at.started
    say(
        f"pre-trained {cfg.method} to step {at.step} in {out}: {wall:.0f} s this run, {seen:.0f} s of audio "
        f"({seen / max(wall, 1e-9):.1f} audio s/s)"
    )
