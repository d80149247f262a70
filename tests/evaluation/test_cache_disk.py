"""The feature cache's size, estimated from a manifest's durations before any extraction, and the check
that stops an evaluation whose features would not fit the free disk (before any work, nothing written)."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from evalkit.cli import main
from evalkit.core.errors import ConfigError
from evalkit.evaluation import cache_size
from evalkit.evaluation.cache_size import cache_bytes
from evalkit.evaluation.features import extract
from upstreams.load import load_upstream


class BaseShaped(nn.Module):
    """The contract attributes of a HuBERT Base (13 hidden states of 768 at 50 Hz); never run."""

    frame_rate, num_layers, hidden_size = 50.0, 13, 768


def test_the_estimate_of_several_hundred_hours_needs_no_audio(tmp_path):
    """A manifest of 300 h of declared durations whose audio does not exist: the estimate is exact arithmetic."""
    durations = np.random.default_rng(0).uniform(2.0, 16.0, 120_000)
    scale = 300 * 3600 / durations.sum()
    records = [
        {"id": f"u{i}", "path": f"missing/u{i}.wav", "speaker": "s", "duration": round(float(d * scale), 3)}
        for i, d in enumerate(durations)
    ]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    frames = sum(int(r["duration"] * 50.0) for r in records)
    assert cache_bytes(BaseShaped(), manifest) == frames * 13 * 768 * 2
    # ~1 MB per second of audio for a Base model's every layer in bf16
    assert 1.0e12 < cache_bytes(BaseShaped(), manifest) < 1.1e12
    assert not (tmp_path / "missing").exists()


def test_the_estimate_is_what_extraction_writes(smoke_suite, tmp_path):
    upstream = load_upstream("fbank")
    manifest = smoke_suite / "ks" / "train.jsonl"
    cached = extract(upstream, manifest, tmp_path / "cache", progress=False)
    written = sum(cached.lengths.values()) * upstream.num_layers * upstream.hidden_size * 2
    assert cache_bytes(upstream, manifest) == written
    shards = sum(p.stat().st_size for p in Path(cached.folder).glob("shard_*.npy"))
    assert written <= shards < written + 4096 * len(list(Path(cached.folder).glob("shard_*.npy")))


def test_an_evaluation_that_would_fill_the_disk_stops_before_any_work(
    smoke_suite, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    real = shutil.disk_usage
    usage = namedtuple("usage", "total used free")

    def small_disk(path):
        # the reserve and 1 KiB: far less than the smoke suite's KS and ASV features
        return usage(real(path).total, real(path).used, cache_size.DISK_RESERVE_BYTES + 1024)

    monkeypatch.setattr(cache_size.shutil, "disk_usage", small_disk)
    args = [
        "eval",
        "--upstream",
        "fbank",
        "--data",
        str(smoke_suite),
        "--output",
        str(out),
        "--tasks",
        "ks,asv",
    ]
    assert main([*args, "--steps", "2", "--protocol", "quick"]) == 2
    err = capsys.readouterr().err
    assert "the features still to extract need" in err and "MiB free" in err, err
    assert "ks/train" in err and "--no-cache" in err
    assert not list(out.rglob("*.npy")) and not list(out.rglob("*.json"))  # nothing extracted, no result
    # with the disk as it is, the same command runs; a second run needs no space (all cached)
    monkeypatch.setattr(cache_size.shutil, "disk_usage", real)
    assert main([*args, "--steps", "2", "--protocol", "quick"]) == 0
    monkeypatch.setattr(cache_size.shutil, "disk_usage", small_disk)
    assert main([*args, "--steps", "2", "--protocol", "quick", "--overwrite"]) == 0


def test_the_message_names_the_layer_subset_that_would_fit(tmp_path, monkeypatch):
    """13 layers needing 13 GiB on a disk with 4 GiB free: every 4th layer (0, 4, 8, 12) fits."""
    usage = namedtuple("usage", "total used free")
    free = 4 * 2**30 + cache_size.DISK_RESERVE_BYTES
    monkeypatch.setattr(cache_size.shutil, "disk_usage", lambda p: usage(2**40, 0, free))
    with pytest.raises(ConfigError) as e:
        cache_size.check_cache_fits(tmp_path, {"asr/train": 13 * 2**30}, 13, 13)
    assert "`--cache-layers every:4` keeps 4 of 13: 4.00 GiB" in str(e.value)
    cache_size.check_cache_fits(tmp_path, {"asr/train": 4 * 2**30}, 13, 13)  # fits: no error
