"""What the feature cache will take on disk, known before any extraction: which hidden states it keeps
(`--cache-layers`), how many bytes a manifest's features need (from its declared durations: no audio is
read), whether they are cached already, and the check that stops an evaluation whose features would not
fit the free disk. `evalkit eval` and `--plan` (evalkit.evaluation.cost) read it; `features` writes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from evalkit.core.audio import AudioFilter
from evalkit.core.errors import ConfigError
from evalkit.core.manifest import read_manifest
from evalkit.evaluation.features import INDEX_NAME, STORAGE, cache_dir
from evalkit.evaluation.runner import UpstreamRunner, utterances_of

LAYER_SPEC = re.compile(r"all|every:[1-9][0-9]*|[0-9]+(,[0-9]+)*")


def cache_layers(spec: str, num_layers: int | None) -> list[int] | None:
    """The hidden states `--cache-layers` keeps of an upstream with `num_layers`: None for `all` (or a
    list of every layer), the listed indices (`0,4,8,12`), or every k-th from 0 with the last always kept
    (`every:2`). `num_layers` None checks the spec alone (before the upstream is loaded)."""
    if not LAYER_SPEC.fullmatch(spec):
        raise ConfigError(
            f"--cache-layers {spec!r}: give all, layer indices (e.g. 0,4,8,12) or every:K (e.g. every:2)."
        )
    listed = [int(x) for x in spec.split(",")] if spec[0].isdigit() else None
    if listed is not None and (len(set(listed)) != len(listed) or listed != sorted(listed)):
        raise ConfigError(f"--cache-layers {spec}: give each layer once, in increasing order.")
    if spec == "all" or num_layers is None:
        return None
    if listed is None:  # every:K
        layers = list(range(0, num_layers, int(spec[6:])))
        return layers + ([num_layers - 1] if layers[-1] != num_layers - 1 else [])
    if bad := [i for i in listed if i >= num_layers]:
        raise ConfigError(
            f"--cache-layers {spec}: layer {bad[0]} does not exist; this upstream has {num_layers} hidden "
            f"states (0..{num_layers - 1})."
        )
    return None if listed == list(range(num_layers)) else listed


def cache_bytes(
    upstream: nn.Module,
    manifest_path: str | os.PathLike,
    dtype: str = "bfloat16",
    layers: Sequence[int] | None = None,
) -> int:
    """The bytes that caching this manifest's features writes, from its declared durations alone (no audio
    is read): frames (by the upstream's own arithmetic where it has `frames_for`) x layers x width x the
    storage dtype's size. What `extract` writes is this plus the shards' small headers and index files."""
    utts = utterances_of(manifest_path, read_manifest(manifest_path))
    runner = UpstreamRunner(upstream, "cpu", False, STORAGE[dtype][0], 60.0, layers)
    itemsize = torch.finfo(STORAGE[dtype][0]).bits // 8
    return sum(runner.estimate_frames(utts)) * runner.num_layers * runner.hidden_size * itemsize


def is_cached(
    upstream: nn.Module,
    manifest_path: str | os.PathLike,
    cache_root: str | os.PathLike,
    dtype: str = "bfloat16",
    autocast: bool = False,
    layers: Sequence[int] | None = None,
    audio: AudioFilter | None = None,
) -> bool:
    """Whether this upstream's features of this manifest are cached complete (extract writes nothing)."""
    folder = cache_dir(cache_root, upstream, manifest_path, dtype, autocast, layers, audio)
    return (folder / INDEX_NAME).is_file()


# Left free beside the cache: result files, logs and the index files the estimate does not count.
DISK_RESERVE_BYTES = 256 * 2**20


def check_cache_fits(
    cache_root: str | os.PathLike,
    needs: dict[str, int],
    upstream_layers: int | None = None,
    kept: int | None = None,
) -> None:
    """Stop, before any extraction, when the features still to cache (`needs`: {what: bytes}) would not fit
    the free disk under `cache_root`; the message names the largest parts and the ways out, among them the
    `--cache-layers every:K` that would fit (given the upstream's `upstream_layers` and the `kept` now)."""
    total = sum(needs.values())
    where = next(q for q in (Path(cache_root).absolute(), *Path(cache_root).absolute().parents) if q.exists())
    free = shutil.disk_usage(where).free
    if total + DISK_RESERVE_BYTES <= free:
        return
    largest = sorted(needs.items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{what} {_gib(n)}" for what, n in largest)
    fewer = ""
    if upstream_layers and kept and total:
        for k in range(2, upstream_layers):
            layers = cache_layers(f"every:{k}", upstream_layers) or []
            size = total * len(layers) // kept
            if len(layers) < kept and size + DISK_RESERVE_BYTES <= free:
                fewer = f", cache fewer layers (`--cache-layers every:{k}` keeps {len(layers)} of {upstream_layers}: {_gib(size)})"
                break
    raise ConfigError(
        f"feature cache {cache_root}: the features still to extract need {_gib(total)} ({parts}"
        f"{', ...' if len(needs) > 3 else ''}), but {where} has {_gib(free)} free (and "
        f"{_gib(DISK_RESERVE_BYTES)} is kept for the rest). Free some space, put the cache on a bigger disk "
        f"(`evalkit eval --cache DIR`; `evalkit run` keeps it in WORKDIR/<profile>/cache){fewer}, or run without "
        "one (`evalkit eval --no-cache`: the upstream runs at every training step, nothing is written)."
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
