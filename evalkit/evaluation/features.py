"""Hidden states of a frozen upstream: computed once per (upstream, split), cached on disk.

The upstream is frozen, so every split's audio goes through it once and all of
its layers are stored; every head, every learning rate of a sweep and every
rerun reads the cache. (s3prl recomputes the upstream at every step; not doing
so is evalkit's main speed advantage.) `OnTheFlyFeatures` is that s3prl-style
path (`--no-cache`), with the same `batch(ids)` interface, so a trainer only
ever calls `features.batch(ids)`.

Layout: `cache_root/<upstream fingerprint>/<manifest fingerprint>/<dtype>[-autocast]/`
    shard_00000.npy   [N_frames, L, D] frames of consecutive utterances; bfloat16
                      is stored as its uint16 bit patterns so numpy can mmap it
    shard_00000.json  that shard's utterances, byte size and blake2b checksum
    index.json        written last: a folder without it is incomplete

Utterances are sorted by duration (padding stays small inside a batch) and cut
into shards of about `shard_bytes`; a crashed extraction resumes at shard
granularity, and a damaged shard is rebuilt by re-running the upstream on just
its utterances.

The manifest fingerprint is a hash of the manifest's bytes only, not of the
audio files' sizes or mtimes: the manifest is the contract (corpus preparers
write a new one when the audio changes), stat-ing every file of a large corpus
is slow on network storage, and copying a corpus (new mtimes) should not throw
its features away. Audio rewritten in place under an unchanged manifest is not
detected; delete the cache folder in that case.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from evalkit.core.audio import AudioFilter
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import atomic_open, atomic_write_text
from evalkit.core.lockfile import exclusive
from evalkit.core.manifest import read_manifest
from evalkit.core.progress import progress_bar
from evalkit.evaluation.fingerprint import file_digest, manifest_fingerprint, upstream_fingerprint
from evalkit.evaluation.runner import UpstreamRunner, Utterance, utterances_of

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_SHARD_BYTES = 256 * 2**20
INDEX_NAME = "index.json"
# Storage dtype name -> (torch dtype it holds, numpy dtype of the .npy file).
STORAGE: dict[str, tuple[torch.dtype, type]] = {
    "bfloat16": (torch.bfloat16, np.uint16),
    "float16": (torch.float16, np.float16),
}
_SHARD_KEYS = ("file", "bytes", "blake2b", "n_frames")
_SHARD_FILE = re.compile(r"shard_(\d{5})\.(npy|json)$")


class Features(Protocol):
    """What a trainer needs from features, cached or computed on the fly."""

    ids: list[str]
    num_layers: int
    hidden_size: int
    frame_rate: float
    lengths: dict[str, int]

    def batch(
        self, ids: Sequence[str], dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def layer(self, utt_id: str, position: int, dtype: torch.dtype = torch.float32) -> torch.Tensor: ...


def cache_dir(
    cache_root: str | os.PathLike,
    upstream: nn.Module,
    manifest_path: str | os.PathLike,
    dtype: str = "bfloat16",
    autocast: bool = False,
    layers: Sequence[int] | None = None,
    audio: AudioFilter | None = None,
) -> Path:
    """The folder holding (or about to hold) this upstream's features of this manifest (of `layers` only,
    where given; of its audio through the filter `audio`, where given)."""
    variant = dtype + ("-autocast" if autocast else "")
    if layers is not None:
        variant += "-layers" + "_".join(map(str, layers))
    if audio is not None and audio.name is not None:
        variant += f"-{audio.name}"
    return Path(cache_root) / upstream_fingerprint(upstream) / manifest_fingerprint(manifest_path) / variant


def extract(
    upstream: nn.Module,
    manifest_path: str | os.PathLike,
    cache_root: str | os.PathLike,
    *,
    batch_seconds: float = 60.0,
    dtype: str = "bfloat16",
    device: str | torch.device = "cpu",
    autocast: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    verify: bool = True,
    progress: bool = True,
    on_shard: Callable[[int, int], None] | None = None,
    layers: Sequence[int] | None = None,
    audio: AudioFilter | None = None,
) -> CachedFeatures:
    """Cache the hidden layers (all, or `layers`) of every record of a manifest (its audio through the
    filter `audio` first, where given); return them, ready to read.

    An existing complete cache is checked (sizes always, checksums if `verify`)
    and returned without running the upstream; damaged shards are rebuilt,
    missing ones of an interrupted run computed. Batches hold at most
    `batch_seconds` of padded audio; `autocast` runs the upstream under bf16
    autocast. The upstream runs in eval mode on `device` and is put back as it
    was afterwards. `on_shard(k, n_shards)` is called after shard k is written.
    """
    if dtype not in STORAGE:
        raise ConfigError(f"feature cache dtype {dtype!r} is not one of {', '.join(STORAGE)}.")
    if not batch_seconds > 0 or shard_bytes <= 0:
        raise ConfigError(
            f"batch_seconds ({batch_seconds}) and shard_bytes ({shard_bytes}) must be positive."
        )
    records = read_manifest(manifest_path)
    if not records:
        raise ConfigError(f"{manifest_path}: the manifest holds no records; there is nothing to extract.")
    utts = utterances_of(manifest_path, records)
    runner = UpstreamRunner(upstream, device, autocast, STORAGE[dtype][0], batch_seconds, layers, audio)
    folder = cache_dir(cache_root, upstream, manifest_path, dtype, autocast, layers, audio)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        index = _read_index(folder)
        if index is not None:
            damaged = _damaged_shards(folder, index, checksum=verify)
            if damaged:
                _rebuild(folder, index, damaged, utts, runner, manifest_path, progress)
            return CachedFeatures(folder, index)
        return _extract_all(folder, utts, runner, manifest_path, shard_bytes, progress, on_shard)


class CachedFeatures:
    """Read-only view of a complete cache folder; shards are memory-mapped on first use.

    `get(id)` gives [L, T, D], `batch(ids)` [L, B, T, D] zero-padded plus frame
    counts; float32 by default, or `dtype=torch.bfloat16`/`float16` to skip
    the upcast. Picklable (DataLoader workers re-map the shards themselves).
    """

    def __init__(self, folder: str | os.PathLike, index: dict) -> None:
        self.folder = Path(folder)
        self.index = index
        self.num_layers: int = index["num_layers"]
        # the upstream's hidden states these are, by index (a cache of every layer has no "layers")
        self.layers: list[int] = index.get("layers") or list(range(self.num_layers))
        self.hidden_size: int = index["hidden_size"]
        self.frame_rate: float = index["frame_rate"]
        self.dtype: str = index["dtype"]
        self.ids: list[str] = list(index["utterances"])
        self.lengths: dict[str, int] = {u: entry[2] for u, entry in index["utterances"].items()}
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, folder: str | os.PathLike, *, verify: bool = True) -> CachedFeatures:
        """Open a finished cache without an upstream; damage is an error here, not rebuilt."""
        folder = Path(folder)
        index = _read_index(folder)
        if index is None:
            raise EvalkitError(
                f"{folder}: not a complete feature cache (no readable {INDEX_NAME} of format "
                f"{FORMAT_VERSION}). Run the extraction (e.g. `evalkit eval`) to create or finish it."
            )
        damaged = _damaged_shards(folder, index, checksum=verify)
        if damaged:
            reasons = "; ".join(f"{index['shards'][k]['file']}: {why}" for k, why in damaged.items())
            raise EvalkitError(
                f"{folder}: damaged feature shards ({reasons}). Re-run the extraction with the same "
                "upstream to rebuild them, or delete the folder."
            )
        return cls(folder, index)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self.lengths

    def get(self, utt_id: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One utterance's hidden states, [L, T, D]."""
        return self._frames(utt_id).permute(1, 0, 2).to(dtype).contiguous()

    def layer(self, utt_id: str, position: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One hidden state of one utterance, [T, D], copying only that layer out of the memory map (what
        QbE reads: a whole split, one layer at a time)."""
        return self._frames(utt_id, position).to(dtype)

    def batch(
        self, ids: Sequence[str], dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[L, B, T, D] zero-padded to the longest utterance, and frame counts [B] (int64)."""
        frames = [self._frames(u) for u in ids]
        lens = torch.tensor([f.shape[0] for f in frames], dtype=torch.int64)
        out = torch.zeros(
            self.num_layers, len(ids), int(lens.max()) if len(lens) else 0, self.hidden_size, dtype=dtype
        )
        for i, f in enumerate(frames):
            out[:, i, : f.shape[0]] = f.permute(1, 0, 2)
        return out, lens

    def _frames(self, utt_id: str, position: int | None = None) -> torch.Tensor:
        """[T, L, D] in the storage dtype, copied out of the memory map ([T, D] of one layer with
        `position`)."""
        entry = self.index["utterances"].get(utt_id)
        if entry is None:
            raise EvalkitError(
                f"{self.folder}: utterance {utt_id!r} is not in this feature cache; it was built from a "
                "different manifest. Extract features for the manifest you are training on."
            )
        shard, offset, n = entry
        if shard not in self._maps:
            self._maps[shard] = np.load(self.folder / self.index["shards"][shard]["file"], mmap_mode="r")
        rows = self._maps[shard][offset : offset + n]
        t = torch.from_numpy(np.array(rows if position is None else rows[:, position]))
        return t.view(torch.bfloat16) if self.dtype == "bfloat16" else t

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}


def _extract_all(
    folder: Path,
    utts: list[Utterance],
    runner: UpstreamRunner,
    manifest_path: str | os.PathLike,
    shard_bytes: int,
    progress: bool,
    on_shard: Callable[[int, int], None] | None,
) -> CachedFeatures:
    bytes_per_frame = runner.num_layers * runner.hidden_size * 2
    sizes = {u.id: n * bytes_per_frame for u, n in zip(utts, runner.estimate_frames(utts))}
    plan = _plan(utts, sizes, shard_bytes)
    shape_tail = (runner.num_layers, runner.hidden_size)
    kept: dict[int, dict] = {}
    for k, shard in enumerate(plan):
        info = _read_json(folder / _shard_name(k, "json"))
        if info and _planned_ids(info) == [u.id for u in shard]:
            if _check_shard(folder, info, shape_tail, runner.storage, checksum=True) is None:
                kept[k] = info
    if kept:
        logger.info(
            "%s: resuming: %d of %d shards already extracted and verified", folder, len(kept), len(plan)
        )
    for stale in folder.glob(".shard_*.tmp"):  # left by a crashed writer; we hold the lock
        stale.unlink()
    todo = [k for k in range(len(plan)) if k not in kept]
    runner.check_audio(manifest_path, [u for k in todo for u in plan[k]])
    infos = dict(kept)
    with _progress(sum(u.duration for k in todo for u in plan[k]), progress, folder) as bar, runner.active():
        for k in todo:
            infos[k] = _write_shard(folder, k, plan[k], runner.run(plan[k], bar))
            if on_shard is not None:
                on_shard(k, len(plan))
    index = {
        "format_version": FORMAT_VERSION,
        "upstream": {
            "class": f"{type(runner.upstream).__module__}.{type(runner.upstream).__qualname__}",
            "fingerprint": folder.parent.parent.name,
        },
        "manifest": {"path": str(Path(manifest_path).resolve()), "fingerprint": folder.parent.name},
        "num_layers": runner.num_layers,
        **({"layers": runner.layers} if runner.layers is not None else {}),
        "hidden_size": runner.hidden_size,
        "frame_rate": runner.frame_rate,
        "dtype": "bfloat16" if runner.storage == torch.bfloat16 else "float16",
        "autocast": runner.autocast,
        "shards": [{key: infos[k][key] for key in _SHARD_KEYS} for k in range(len(plan))],
        "utterances": {},
    }
    where = {u: (k, offset, n) for k in range(len(plan)) for u, offset, n in infos[k]["utts"]}
    index["utterances"] = {u.id: list(where[u.id]) for u in utts}
    atomic_write_text(folder / INDEX_NAME, json.dumps(index))
    for path in folder.iterdir():
        m = _SHARD_FILE.match(path.name)
        if m and int(m.group(1)) >= len(plan):  # left by an earlier plan with more shards
            path.unlink()
    return CachedFeatures(folder, index)


def _rebuild(
    folder: Path,
    index: dict,
    damaged: dict[int, str],
    utts: list[Utterance],
    runner: UpstreamRunner,
    manifest_path: str | os.PathLike,
    progress: bool,
) -> None:
    """Re-run the upstream on just the damaged shards' utterances; rewrite those shards and the index."""
    by_id = {u.id: u for u in utts}
    members: dict[int, list[str]] = {k: [] for k in damaged}
    for u, (k, _, _) in sorted(index["utterances"].items(), key=lambda item: item[1][:2]):
        if k in members:
            members[k].append(u)
    for k, why in damaged.items():
        logger.warning(
            "%s: %s; rebuilding it by re-running the upstream on its %d utterances",
            folder / index["shards"][k]["file"],
            why,
            len(members[k]),
        )
    runner.check_audio(manifest_path, [by_id[u] for ids in members.values() for u in ids])
    seconds = sum(by_id[u].duration for ids in members.values() for u in ids)
    with _progress(seconds, progress, folder) as bar, runner.active():
        for k, ids in members.items():
            shard = [by_id[u] for u in ids]
            info = _write_shard(folder, k, shard, runner.run(shard, bar))
            index["shards"][k] = {key: info[key] for key in _SHARD_KEYS}
            for u, offset, n in info["utts"]:
                index["utterances"][u] = [k, offset, n]
    atomic_write_text(folder / INDEX_NAME, json.dumps(index))


def _planned_ids(info: dict) -> list[str] | None:
    """The utterance ids a shard sidecar lists, or None if it is malformed."""
    try:
        return [u for u, _, _ in info["utts"]] if all(k in info for k in _SHARD_KEYS) else None
    except (KeyError, TypeError, ValueError):
        return None


def _plan(utts: list[Utterance], sizes: dict[str, int], shard_bytes: int) -> list[list[Utterance]]:
    """Utterances sorted by duration, cut into consecutive shards of about shard_bytes."""
    shards: list[list[Utterance]] = [[]]
    size = 0
    for u in sorted(utts, key=lambda u: (u.duration, u.position)):
        if shards[-1] and size + sizes[u.id] > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(u)
        size += sizes[u.id]
    return shards


def _write_shard(folder: Path, k: int, shard: list[Utterance], arrays: list[np.ndarray]) -> dict:
    """Write one .npy shard (temp + rename, hashed while written), then its sidecar JSON."""
    path = folder / _shard_name(k, "npy")
    n_total = sum(a.shape[0] for a in arrays)
    header = {
        "descr": np.lib.format.dtype_to_descr(arrays[0].dtype),
        "fortran_order": False,
        "shape": (n_total, *arrays[0].shape[1:]),
    }
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header)
    digest = hashlib.blake2b(head.getvalue())  # hashed while written, so a shard is read only once
    with atomic_open(path, "wb") as f:
        f.write(head.getvalue())
        for a in arrays:
            data = np.ascontiguousarray(a).data
            digest.update(data)
            f.write(data)
    offsets = np.cumsum([0] + [a.shape[0] for a in arrays]).tolist()
    info = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "blake2b": digest.hexdigest(),
        "n_frames": n_total,
        "utts": [[u.id, offsets[i], arrays[i].shape[0]] for i, u in enumerate(shard)],
    }
    atomic_write_text(folder / _shard_name(k, "json"), json.dumps(info))
    return info


def _damaged_shards(folder: Path, index: dict, checksum: bool) -> dict[int, str]:
    """Shard number -> what is wrong with it, for every shard that fails the checks."""
    tail = (index["num_layers"], index["hidden_size"])
    storage = STORAGE[index["dtype"]][0]
    reasons = {
        k: _check_shard(folder, info, tail, storage, checksum) for k, info in enumerate(index["shards"])
    }
    return {k: why for k, why in reasons.items() if why is not None}


def _check_shard(
    folder: Path, info: dict, tail: tuple[int, int], storage: torch.dtype, checksum: bool
) -> str | None:
    """Why a shard cannot be trusted, or None: size and header always, the checksum if asked."""
    path = folder / info["file"]
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != info["bytes"]:
        return f"holds {size} bytes, expected {info['bytes']} (truncated or overwritten)"
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        return f"unreadable as .npy ({e})"
    expected_dtype = np.dtype(np.uint16 if storage == torch.bfloat16 else np.float16)
    if array.shape != (info["n_frames"], *tail) or array.dtype != expected_dtype:
        return f"holds {array.dtype}{list(array.shape)}, expected {expected_dtype}{[info['n_frames'], *tail]}"
    if checksum and file_digest(path, digest_size=64) != info["blake2b"]:
        return "checksum mismatch (the bytes changed on disk)"
    return None


def _read_index(folder: Path) -> dict | None:
    """The index of a complete cache of this format, or None (absent, unreadable, other format)."""
    index = _read_json(folder / INDEX_NAME)
    keys = ("num_layers", "hidden_size", "frame_rate", "dtype", "shards", "utterances")
    if not index or index.get("format_version") != FORMAT_VERSION or any(k not in index for k in keys):
        return None
    return index


def _read_json(path: Path) -> dict | None:
    """A JSON object, or None if absent or unreadable (an unfinished cache, to redo)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _shard_name(k: int, ext: str) -> str:
    return f"shard_{k:05d}.{ext}"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on a cache folder: parallel jobs wait for one writer, then read its cache. A lock file
    (evalkit.core.lockfile), not fcntl, so that it also holds where a cluster's jobs share the cache over NFS."""
    with exclusive(folder / ".lock"):
        yield


@contextmanager
def _progress(seconds: float, enabled: bool, folder: Path) -> Iterator[tqdm]:
    """A tqdm bar in seconds of audio, and a log line with the throughput at the end."""
    start = time.perf_counter()
    # rounded up: a total below the summed durations makes tqdm warn about clamping
    with progress_bar(
        total=math.ceil(seconds * 100) / 100, unit="s audio", disable=not enabled, desc="features"
    ) as bar:
        yield bar
    if seconds > 0:
        wall = time.perf_counter() - start
        logger.info(
            "%s: extracted %.1f s of audio in %.1f s (%.1f s of audio per second)",
            folder,
            seconds,
            wall,
            seconds / max(wall, 1e-9),
        )
