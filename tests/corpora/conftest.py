"""Helpers for building miniature copies of real corpora in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evalkit.core.audio import SAMPLE_RATE


def write_audio(path: Path, seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> Path:
    """A tiny noise file (WAV or FLAC by suffix) of exactly `seconds`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sample_rate))
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, n).astype(np.float32)
    sf.write(path, samples, sample_rate, subtype="PCM_16")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def audio() -> Callable[..., Path]:
    return write_audio


@pytest.fixture
def text() -> Callable[[Path, str], Path]:
    return write_text


def check_idempotent(prepare: Callable[[], dict[str, Path]]) -> dict[str, Path]:
    """Run `prepare` three times: fresh, as a no-op re-run, and after a manifest lost a line."""
    paths = prepare()
    before = {p: (p.stat().st_mtime_ns, p.read_text(encoding="utf-8")) for p in paths.values()}
    assert prepare() == paths
    assert {p: (p.stat().st_mtime_ns, p.read_text(encoding="utf-8")) for p in paths.values()} == before
    victim = next(iter(paths.values()))
    victim.write_text(
        "".join(victim.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8"
    )
    assert prepare() == paths
    assert {p: p.read_text(encoding="utf-8") for p in paths.values()} == {
        p: t for p, (_, t) in before.items()
    }
    return paths


@pytest.fixture
def idempotent() -> Callable[[Callable[[], dict[str, Path]]], dict[str, Path]]:
    return check_idempotent
