"""Fingerprints that key the feature cache and trace results: an upstream's weights and settings, a manifest's bytes."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalkit.core.errors import ConfigError


def upstream_fingerprint(upstream: nn.Module) -> str:
    """A hash of what determines the upstream's outputs; the same in every process.

    It covers the class, its `config` (dataclass, dict or anything with
    `to_dict()`), the dataclass-valued settings held on the module itself (e.g.
    preprocessing), frame_rate/num_layers/hidden_size, and the name, shape,
    dtype and bytes of every parameter and buffer. A change to the forward
    code that leaves all of these alone is not seen: delete the cache then.
    """
    cls = type(upstream)
    described = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": _canonical(getattr(upstream, "config", None)),
        "settings": {
            name: _canonical(value)
            for name, value in sorted(vars(upstream).items())
            if dataclasses.is_dataclass(value) and not isinstance(value, type)
        },
        "attributes": {
            k: _canonical(getattr(upstream, k, None)) for k in ("frame_rate", "num_layers", "hidden_size")
        },
    }
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(described, sort_keys=True).encode())
    tensors = dict(upstream.named_parameters()) | dict(upstream.named_buffers())
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(json.dumps([name, list(t.shape), str(t.dtype)]).encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def manifest_fingerprint(path: str | os.PathLike) -> str:
    """A hash of the manifest file's bytes (see the module docstring for why only those)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: manifest not found. Run `evalkit synth` or `evalkit prepare` to create it."
        )
    return file_digest(path)


def _canonical(obj: Any) -> Any:
    """A JSON-able form of a config that does not depend on the process (no memory addresses)."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, enum.Enum):
        return _canonical(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__class__": type(obj).__qualname__, **fields}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_canonical(v) for v in obj), key=json.dumps)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _canonical(to_dict())
    text = repr(obj)
    return type(obj).__qualname__ if " at 0x" in text else text


def file_digest(path: Path, digest_size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=digest_size)
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_READ_CHUNK = 8 * 2**20


# A folder's fingerprint is cached beside the weights, so that checking a resumed evaluation's
# results against the checkpoint does not hash the weights again. The cache is valid while every
# file of the folder keeps its size and modification time, under the same fingerprint code.
FINGERPRINT_CACHE = ".evalkit-fingerprint.json"
_CACHE_FORMAT = 1


def _folder_stamp(folder: Path) -> dict[str, list[int]]:
    return {
        p.name: [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != FINGERPRINT_CACHE
    }


def cached_fingerprint(folder: Path, variant: str = "") -> str | None:
    """The fingerprint cached in `folder` for its files as they are now (and loaded as `variant` says,
    e.g. an `hf:` model's padding mode), or None."""
    try:
        cache = json.loads((folder / FINGERPRINT_CACHE).read_text(encoding="utf-8"))
        stamp = _folder_stamp(folder)
    except (OSError, ValueError):
        return None
    if not isinstance(cache, dict) or cache.get("format") != _CACHE_FORMAT or cache.get("files") != stamp:
        return None
    if cache.get("variant", "") != variant:
        return None
    return cache.get("fingerprint") if isinstance(cache.get("fingerprint"), str) else None


def store_fingerprint(folder: Path, fingerprint: str, variant: str = "") -> None:
    """Cache `fingerprint` beside the files it was computed from; a read-only folder is left alone."""
    try:
        stamp = _folder_stamp(folder)
        record = {"format": _CACHE_FORMAT, "fingerprint": fingerprint, "files": stamp}
        text = json.dumps(record | ({"variant": variant} if variant else {}))
        (folder / FINGERPRINT_CACHE).write_text(text, encoding="utf-8")
    except OSError:
        pass
