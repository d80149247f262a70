"""torchrun's process group for the pre-training loop, or one process without it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed(device: str | None = None) -> Iterator[Processes]:
    """Joins torchrun's process group (from RANK / WORLD_SIZE) or runs as one process; on CUDA where torch
    sees a GPU, or as `device` says ("cpu", "cuda" or, for one process, "cuda:N")."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None and ":" in device and world == 1:
        local = int(device.partition(":")[2])
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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or AMX.

    Elsewhere bf16 is emulated and far slower than fp32 (bench/precision.py)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """A recipe's `train.bf16` (true, false or "auto") resolved for `device`."""
    return native_bf16(device) if setting == "auto" else bool(setting)


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()


def sum_over_processes(procs: Processes, values: dict[str, float]) -> dict[str, float]:
    if procs.world == 1:
        return values
    gathered: list[Any] = [None] * procs.world
    dist.all_gather_object(gathered, values)
    return {k: sum(g.get(k, 0.0) for g in gathered) for k in set().union(*gathered)}
