"""What `--resume` needs to continue exactly: every RNG, and train_state/ written as a whole.

Each checkpoint writes the encoder (upstreams.checkpoint: what `evalkit eval` loads), then
train_state/ (objective weights, optimizer, scheduler, data position, one RNG file per
process) into train_state.tmp/, swapped in by renames, so a run killed at any moment
leaves a complete train_state/ (or train_state.old/) behind.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model

from evalkit.core.io import new_file_mode
from evalkit.pretraining.distributed import Processes, barrier
from upstreams.checkpoint import write_checkpoint
from upstreams.objective import Objective


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
        os.chmod(tmp / "objective.safetensors", new_file_mode())  # readable as the umask allows
        torch.save(state, tmp / "state.pt")
        current, old = out / "train_state", out / "train_state.old"
        if old.is_dir() and not current.exists():
            # killed between the renames (this run resumed from .old): that state comes back first, so
            # a kill while the rest of this swap runs still leaves one complete state behind
            old.rename(current)
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            current.rename(old)
        tmp.rename(current)
        shutil.rmtree(old, ignore_errors=True)
    barrier(procs)
