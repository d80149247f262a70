"""The one pre-training loop for every method: `evalkit pretrain CONFIG --data DIR --out OUT`.

Read it top to bottom, as nanoGPT's train.py: load the recipe, join the
torchrun group if there is one (gloo on CPU, NCCL on GPU), build the method's
`Objective` (`upstreams.methods.METHODS`), run its one-off setup, then train with
AdamW, linear warm-up + cosine (or linear) decay, bf16 autocast, gradient
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
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.config import SerialisableConfig, check_choice
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import atomic_open, atomic_write_text
from evalkit.core.registry import suggest
from evalkit.core.resources import pretrain_recipe
from evalkit.pretraining.data import DataConfig, batch_stream, read_data
from upstreams.checkpoint import write_checkpoint
from upstreams.methods import METHODS
from upstreams.modules import FrontendConfig
from upstreams.modules.context import EncoderConfig
from upstreams.objective import Objective
from upstreams.work import work_dir

# ---- the recipe ---------------------------------------------------------------------------------


@dataclass
class OptimConfig(SerialisableConfig):
    lr: float = 5.0e-4
    warmup_steps: int = 1000
    max_steps: int = 10000
    schedule: str = "cosine"  # decay after warm-up: "cosine" | "linear", down to min_lr_ratio × lr
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01  # matrices only; biases, norms and embeddings are not decayed
    clip_grad: float = 1.0  # max gradient norm; 0 turns clipping off (the norm is still logged)
    accumulate: int = 1  # micro-batches per optimizer step
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-6


@dataclass
class TrainConfig(SerialisableConfig):
    bf16: bool = True  # bf16 autocast (fp16 is unusably slow on CPU)
    log_every: int = 20
    checkpoint_every: int = 500
    seed: int = 0


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
TOP_KEYS = ("method", "encoder", "objective", *SECTIONS)
ZERO_ALLOWED = (
    "min_seconds",
    "workers",
    "warmup_steps",
    "min_lr_ratio",
    "weight_decay",
    "clip_grad",
    "eps",
    "seed",
)


@dataclass
class PretrainConfig:
    """A validated recipe: `configs/pretrain/<method>-<size>.yaml`."""

    method: str
    encoder: dict  # SSLEncoder kwargs: {"frontend": {...}, "encoder": {...}}
    objective: dict  # the method's keyword arguments
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    source: str = "<dict>"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "encoder": self.encoder,
            "objective": self.objective,
            **{name: getattr(self, name).to_dict() for name in SECTIONS},
        }


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Reads and validates a recipe; errors name the file and the key, with a "did you mean"."""
    path = pretrain_recipe(path)  # a file, or the name of a shipped recipe (`hubert-tiny`)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}.")
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, source: str = "<dict>") -> PretrainConfig:
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r}.{suggest(str(key), TOP_KEYS)} "
                f"Known keys: {', '.join(TOP_KEYS)}."
            )
    method = raw.get("method")
    if method not in METHODS:
        raise ConfigError(
            f"{source}: method {method!r} is not one of {', '.join(METHODS.names())}."
            f"{suggest(str(method), METHODS.names())}"
        )
    encoder = raw.get("encoder") or {}
    if not isinstance(encoder, dict):
        raise ConfigError(f"{source}: encoder must be a mapping with keys frontend and encoder.")
    for key in encoder:
        if key not in ("frontend", "encoder"):
            raise ConfigError(
                f"{source}: unknown key encoder.{key}.{suggest(str(key), ('frontend', 'encoder'))} "
                "Known keys: frontend, encoder."
            )
    with _in_file(source):
        encoder = {
            "frontend": FrontendConfig.from_dict(encoder.get("frontend") or {}, "encoder.frontend").to_dict(),
            "encoder": EncoderConfig.from_dict(encoder.get("encoder") or {}, "encoder.encoder").to_dict(),
        }
        sections = {
            name: _typed(cls.from_dict(raw.get(name) or {}, name), name) for name, cls in SECTIONS.items()
        }
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict):
        raise ConfigError(f"{source}: objective must be a mapping of {method}'s settings.")
    cfg = PretrainConfig(method, encoder, objective, source=source, **sections)
    with _in_file(source):
        check_choice("optim", "schedule", cfg.optim.schedule, ("cosine", "linear"))
    return cfg


@contextlib.contextmanager
def _in_file(source: str) -> Iterator[None]:
    """Prefixes ConfigErrors raised inside with the recipe's file name."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _typed(section: SerialisableConfig, name: str) -> SerialisableConfig:
    """Checks every value against its field's type (YAML reads `5e-4` as text: it needs `5.0e-4`)."""
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        kind = str(f.type)
        ok = {
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(kind, isinstance(value, list) and all(isinstance(v, int | float) for v in value))
        if not ok:
            hint = (
                " (YAML reads 5e-4 as text; write 5.0e-4)"
                if isinstance(value, str) and kind == "float"
                else ""
            )
            raise ConfigError(f"{name}.{f.name} must be {kind}; got {value!r}{hint}.")
        if kind == "float":
            setattr(section, f.name, float(value))
        if kind in ("int", "float") and (value < 0 or (value == 0 and f.name not in ZERO_ALLOWED)):
            raise ConfigError(
                f"{name}.{f.name} must be {'>= 0' if f.name in ZERO_ALLOWED else '> 0'}; got {value!r}."
            )
    return section


def build_objective(cfg: PretrainConfig) -> Objective:
    """The method's objective; a method checks its own `objective:` settings, and errors name the recipe."""
    with _in_file(cfg.source):
        return METHODS.get(cfg.method)(cfg.encoder, **cfg.objective)


# ---- distributed -------------------------------------------------------------------------------


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed() -> Iterator[Processes]:
    """Joins torchrun's process group (from RANK / WORLD_SIZE) or runs as one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    joined = world > 1 and not dist.is_initialized()
    if joined:
        if cuda:
            torch.cuda.set_device(device)
        # Generous timeout: the other processes wait at a barrier while rank 0 runs setup (k-means).
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=3))
    try:
        yield Processes(dist.get_rank() if world > 1 else 0, world, device)
        if joined:  # no process tears the group down while another still talks to it
            dist.barrier()
    finally:
        if joined:
            dist.destroy_process_group()


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()


def sum_over_processes(procs: Processes, values: dict[str, float]) -> dict[str, float]:
    if procs.world == 1:
        return values
    gathered: list[Any] = [None] * procs.world
    dist.all_gather_object(gathered, values)
    return {k: sum(g.get(k, 0.0) for g in gathered) for k in set().union(*gathered)}


# ---- optimizer, schedule, checkpoints ------------------------------------------------------------


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


def rng_state() -> dict:
    """Every RNG the step touches, as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_rest": [np_state["state"]["pos"], np_state["has_gauss"], np_state["gauss"]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "has_gauss": has_gauss,
            "gauss": gauss,
            "state": {"key": state["numpy_key"].numpy().astype(np.uint32), "pos": pos},
        }
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def find_train_state(out: Path) -> Path | None:
    """train_state/, or train_state.old/ when a run died while swapping them."""
    for name in ("train_state", "train_state.old"):
        if (out / name / "state.pt").is_file():
            return out / name
    return None


def save_checkpoint(out: Path, procs: Processes, objective: Objective, summary: dict, state: dict) -> None:
    """The encoder (atomically) for `evalkit eval`, then train_state/ as a whole via a directory swap."""
    if procs.main:
        write_checkpoint(out, objective.encoder.state_dict(), summary)
        tmp = out / "train_state.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier(procs)
    torch.save(rng_state(), out / "train_state.tmp" / f"rng-{procs.rank}.pt")
    barrier(procs)
    if procs.main:
        save_model(objective, str(tmp / "objective.safetensors"))
        torch.save(state, tmp / "state.pt")
        current, old = out / "train_state", out / "train_state.old"
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            current.rename(old)
        tmp.rename(current)
        shutil.rmtree(old, ignore_errors=True)
    barrier(procs)


# ---- logs --------------------------------------------------------------------------------------


class TrainLog:
    """OUT/log.csv and TensorBoard; rows past the resumed step (a killed run's last ones) are dropped."""

    def __init__(self, out: Path, step: int) -> None:
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


def pretrain(
    config: str | os.PathLike | PretrainConfig,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Pre-trains the recipe's encoder into `out`; returns `out`.

    The default `out` is <work>/<recipe name>, <work> being $EVALKIT_WORK or `exp`: where
    recipes that build on another run (HuBERT iteration 2, DistilHuBERT) look for it as `${work}/NAME`.
    """
    cfg = config if isinstance(config, PretrainConfig) else load_config(config)
    if max_steps is not None:
        if max_steps <= 0:
            raise EvalkitError(f"--max-steps must be a positive number of steps; got {max_steps}.")
        cfg.optim.max_steps = max_steps
    out = Path(out) if out is not None else Path(work_dir()) / Path(cfg.source).stem
    with distributed() as procs:
        return _train(cfg, Path(data) if data is not None else None, out, resume, progress, procs)


def _train(
    cfg: PretrainConfig, data_dir: Path | None, out: Path, resume: bool, progress: bool, procs: Processes
) -> Path:
    say = tqdm.write if procs.main else (lambda *_: None)
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
        data_dir = data_dir or Path(saved["data"])
    if data_dir is None:
        raise EvalkitError(
            "evalkit pretrain needs --data DIR: a suite made by `evalkit synth`, "
            "or a folder holding a train.jsonl manifest."
        )
    data = read_data(data_dir, cfg.data.min_seconds)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(procs)

    # The model: the same initial weights in every process; then the method's one-off setup.
    seed_everything(cfg.train.seed)
    objective = build_objective(cfg).to(procs.device)
    setup_dir, report_path = out / "setup", out / "setup_report.json"
    if saved is not None:
        objective.load_setup(setup_dir)
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    else:
        if procs.main:
            setup_dir.mkdir(exist_ok=True)
            report = objective.setup(data, setup_dir, log=say)
            atomic_write_text(report_path, json.dumps(report, indent=1))
            say(f"setup report: {json.dumps(report)}")
        barrier(procs)
        if not procs.main:
            objective.load_setup(setup_dir)
            report = json.loads(report_path.read_text())
    objective.to(procs.device).train()
    encoder_params = sum(p.numel() for p in objective.encoder.parameters())
    encoder_trained = sum(p.numel() for p in objective.encoder.parameters() if p.requires_grad)
    trainable = sum(p.numel() for p in objective.parameters() if p.requires_grad)

    model: torch.nn.Module = objective
    if procs.world > 1:
        unused = cfg.encoder["encoder"]["layerdrop"] > 0 or getattr(
            objective, "find_unused_parameters", False
        )
        model = torch.nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[procs.device.index] if procs.device.type == "cuda" else None,
            find_unused_parameters=unused,
        )
    optimizer = build_optimizer(objective, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.optim))
    step, epoch, index, audio_before, wall_before = 0, 0, 0, 0.0, 0.0
    seed_everything(cfg.train.seed * 1000 + procs.rank)  # masks and dropout differ between processes
    if saved is not None:
        load_model(objective, str(state_dir / "objective.safetensors"), device=str(procs.device))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, epoch, index = saved["step"], saved["epoch"], saved["batch"]
        audio_before, wall_before = saved["audio_seconds"], saved["wall_time_s"]
        rng_file = state_dir / f"rng-{procs.rank}.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=True))
        else:
            say(f"{rng_file} missing (a different number of processes?): random state starts afresh")
        say(f"resuming {out} at step {step} (epoch {epoch}, batch {index})")

    o = cfg.optim
    say(
        f"{cfg.method}: encoder {encoder_params / 1e6:.2f} M parameters ({encoder_trained / 1e6:.2f} M trained; "
        f"{trainable / 1e6:.2f} M with the objective's heads); "
        f"{len(data.records)} utterances, {sum(float(r['duration']) for r in data.records) / 3600:.2f} h "
        f"from {data.manifest}; {procs.world} process(es) on {procs.device}; step {step} -> {o.max_steps}, "
        f"{procs.world * o.accumulate} × {cfg.data.batch_seconds:g} s of padded audio per step"
    )
    log = TrainLog(out, step) if procs.main else None
    bar = tqdm(
        total=o.max_steps,
        initial=step,
        unit="step",
        disable=not (progress and procs.main),
        dynamic_ncols=True,
    )
    stream = batch_stream(data, cfg.data, cfg.train.seed, procs.rank, procs.world, epoch, index)
    autocast = torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=cfg.train.bf16)
    window: dict[str, float] = {}
    audio_here, started, window_start, bad_steps = 0.0, time.time(), time.time(), 0

    def summary(seen: float) -> dict:
        """config.json: the encoder checkpoint, and how it was pre-trained."""
        return {
            "upstream": "encoder",
            "config": objective.encoder.config,
            "pretraining": {
                "method": cfg.method,
                "objective": objective.config(),
                "config": cfg.to_dict(),
                "data": str(data.manifest),
                "steps": step,
                "max_steps": o.max_steps,
                "finished": step >= o.max_steps,
                "processes": procs.world,
                "wall_time_s": round(wall_before + time.time() - started, 1),
                "audio_seconds": round(audio_before + seen, 1),
                "encoder_parameters": encoder_params,
                "setup_report": report,
            },
        }

    while step < o.max_steps:
        for micro in range(o.accumulate):
            epoch, index, batch = next(stream)
            batch = dataclasses.replace(
                batch, wavs=batch.wavs.to(procs.device), wav_lens=batch.wav_lens.to(procs.device)
            )
            last = micro == o.accumulate - 1
            with contextlib.nullcontext() if last or procs.world == 1 else model.no_sync():
                with autocast:
                    output = model(batch)
                (output.loss / o.accumulate).backward()
            seconds = float(batch.wav_lens.sum()) / SAMPLE_RATE
            audio_here += seconds
            for key, value in {
                "loss": float(output.loss.detach()),
                **output.stats,
                "audio": seconds,
                "n": 1,
            }.items():
                window[key] = window.get(key, 0.0) + float(value)
        lr = optimizer.param_groups[0]["lr"]
        params = [p for p in objective.parameters() if p.requires_grad]
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(params, o.clip_grad if o.clip_grad > 0 else math.inf)
        )
        if math.isfinite(grad_norm):
            optimizer.step()
            bad_steps = 0
        else:  # the same decision in every process: gradients were averaged first
            bad_steps += 1
            say(f"step {step + 1}: gradient norm {grad_norm}; step skipped")
            if bad_steps >= 10:
                raise RuntimeError(
                    "10 steps in a row with non-finite gradients; lower optim.lr or turn off bf16"
                )
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        bar.update()

        if step % cfg.train.log_every == 0 or step == o.max_steps:
            total = sum_over_processes(procs, window)
            now = time.time()
            n = total.pop("n")
            row = {
                "step": step,
                "epoch": epoch,
                "loss": total.pop("loss") / n,
                **{k: v / n for k, v in sorted(total.items()) if k != "audio"},
                "lr": lr,
                "grad_norm": grad_norm,
                "audio_per_second": total["audio"] / max(now - window_start, 1e-9),
            }
            window, window_start = {}, now
            if log is not None:
                log.write(row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "epoch", "lr")})
                if not progress and procs.main:  # no bar (e.g. a pipeline worker): a line per log step
                    print(
                        f"[pretrain {out.name}] step {step}/{o.max_steps} loss {row['loss']:.3f} "
                        f"{row['audio_per_second']:.0f} audio-s/s",
                        flush=True,
                    )
        if step % cfg.train.checkpoint_every == 0 or step == o.max_steps:
            seen = sum_over_processes(procs, {"audio": audio_here})["audio"]
            state = {
                "step": step,
                "epoch": epoch,
                "batch": index,
                "audio_seconds": audio_before + seen,
                "wall_time_s": wall_before + time.time() - started,
                "data": str(data_dir.resolve()),
                "config": cfg.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            save_checkpoint(out, procs, objective, summary(seen), state)
    bar.close()
    if log is not None:
        log.close()
    if saved is not None and step == saved["step"]:
        say(f"{out} is already trained to step {step}; raise --max-steps to train on")
        return out
    seen = sum_over_processes(procs, {"audio": audio_here})["audio"]
    wall = time.time() - started
    say(
        f"pre-trained {cfg.method} to step {step} in {out}: {wall:.0f} s this run, {seen:.0f} s of audio "
        f"({seen / max(wall, 1e-9):.1f} audio s/s)"
    )
    return out
