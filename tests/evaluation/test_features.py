"""The hidden-state cache: equal to computing on the fly, hit on re-run, keyed, self-healing, resumable."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.manifest import write_manifest
from evalkit.evaluation.features import CachedFeatures, cache_dir, extract
from evalkit.evaluation.featurizer import WeightedLayerSum
from evalkit.evaluation.fingerprint import manifest_fingerprint, upstream_fingerprint
from evalkit.evaluation.runner import OnTheFlyFeatures

SHARD_BYTES = 12_000  # ~3 utterances of the tiny upstream per shard: several shards
BF16_TOL = {"rtol": 2**-8, "atol": 1e-6}


@dataclasses.dataclass
class TinyConfig:
    hidden_size: int = 8
    hop: int = 160


class TinyUpstream(nn.Module):
    """A real upstream under the contract: non-overlapping conv frames, then two per-frame layers.

    Each frame sees only its own 160 samples, so outputs do not depend on
    padding or on the other utterances of a batch. Dropout makes the outputs
    random unless the upstream runs in eval mode.
    """

    frame_rate = 100.0
    num_layers = 3
    hidden_size = 8

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.config = TinyConfig()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.frontend = nn.Conv1d(1, 8, kernel_size=160, stride=160)
            self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.dropout = nn.Dropout(0.5)
        self.register_buffer("gain", torch.tensor(20.0))
        self.calls = 0
        self.utterances = 0
        self.batch_shapes: list[tuple[int, int]] = []

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.calls += 1
        self.utterances += wavs.shape[0]
        self.batch_shapes.append(tuple(wavs.shape))
        x = self.frontend(wavs[:, None] * self.gain).transpose(1, 2)
        hidden = [x]
        for layer in self.layers:
            x = self.dropout(torch.tanh(layer(x)))
            hidden.append(x)
        return hidden, torch.div(wav_lens, 160, rounding_mode="floor")


def make_manifest(folder: Path, n: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        samples = int(rng.integers(1_600, 16_000))
        t = np.arange(samples) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.05 * rng.standard_normal(samples)
        sf.write(folder / f"u{i:02d}.wav", wav.astype(np.float32), 16_000, subtype="PCM_16")
        records.append(
            {"id": f"u{i:02d}", "path": f"u{i:02d}.wav", "duration": samples / 16_000, "speaker": ""}
        )
    path = folder / "train.jsonl"
    write_manifest(path, records)
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return make_manifest(folder)


def run_extract(upstream: nn.Module, manifest: Path, root: Path, **kwargs) -> CachedFeatures:
    kwargs = {"shard_bytes": SHARD_BYTES, "batch_seconds": 2.0, "progress": False, **kwargs}
    return extract(upstream, manifest, root, **kwargs)


def all_frames(feats) -> dict[str, torch.Tensor]:
    return {u: feats.get(u) for u in feats.ids}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cached_equals_on_the_fly(manifest: Path, tmp_path: Path, dtype: str) -> None:
    up = TinyUpstream()
    cached = run_extract(up, manifest, tmp_path / "cache", dtype=dtype)
    assert len(cached.index["shards"]) >= 3
    assert cached.num_layers == 3 and cached.hidden_size == 8 and cached.frame_rate == 100.0
    fly = OnTheFlyFeatures(TinyUpstream(), manifest)
    assert cached.ids == fly.ids == [f"u{i:02d}" for i in range(12)]
    ids = ["u03", "u00", "u07", "u11", "u05"]
    c_hidden, c_lens = cached.batch(ids)
    f_hidden, f_lens = fly.batch(ids)
    assert c_hidden.dtype == torch.float32 and c_hidden.shape == f_hidden.shape
    assert c_hidden.shape[:2] == (3, 5)
    assert torch.equal(c_lens, f_lens)
    assert c_lens.tolist() == [cached.lengths[u] for u in ids] == [fly.lengths[u] for u in ids]
    torch.testing.assert_close(c_hidden, f_hidden, **BF16_TOL)
    for i, n in enumerate(c_lens.tolist()):
        assert not c_hidden[:, i, n:].any() and not f_hidden[:, i, n:].any()
    torch.testing.assert_close(cached.get("u07"), fly.get("u07"), **BF16_TOL)
    native = cached.get("u07", dtype=getattr(torch, dtype))
    assert native.dtype == getattr(torch, dtype)
    assert torch.equal(native.float(), cached.get("u07"))
    for k in range(3):  # one layer alone (QbE's read) is that layer of the whole
        assert torch.equal(cached.layer("u07", k), cached.get("u07")[k])
        torch.testing.assert_close(fly.layer("u07", k), fly.get("u07")[k])
    # on the fly with a layer subset (a cropped train split beside a `--cache-layers` cache): those layers
    subset = OnTheFlyFeatures(TinyUpstream(), manifest, layers=[0, 2])
    hidden, _ = subset.batch(ids)
    assert subset.num_layers == 2 and hidden.shape[0] == 2
    torch.testing.assert_close(hidden, f_hidden[[0, 2]])


def test_autocast_is_its_own_cache_entry(manifest: Path, tmp_path: Path) -> None:
    exact = run_extract(TinyUpstream(), manifest, tmp_path / "cache")
    up = TinyUpstream()
    mixed = run_extract(up, manifest, tmp_path / "cache", autocast=True)
    assert up.calls > 0 and mixed.folder.name == "bfloat16-autocast" and exact.folder.name == "bfloat16"
    assert mixed.index["autocast"] is True
    hidden, _ = mixed.batch(mixed.ids)
    torch.testing.assert_close(hidden, exact.batch(exact.ids)[0], rtol=0.05, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_extraction_on_cuda_matches_cpu(manifest: Path, tmp_path: Path) -> None:
    on_cpu = run_extract(TinyUpstream(), manifest, tmp_path / "cpu")
    up = TinyUpstream()
    on_gpu = run_extract(up, manifest, tmp_path / "gpu", device="cuda")
    assert next(up.parameters()).device.type == "cpu"  # handed back where it was
    # TF32 convolutions on the GPU may move a value across a bf16 rounding boundary.
    torch.testing.assert_close(
        on_gpu.batch(on_gpu.ids)[0], on_cpu.batch(on_cpu.ids)[0], rtol=2**-6, atol=1e-3
    )


def test_shards_are_mmappable_npy_of_all_layers(manifest: Path, tmp_path: Path) -> None:
    cached = run_extract(TinyUpstream(), manifest, tmp_path / "cache")
    index = json.loads((cached.folder / "index.json").read_text())
    assert index["dtype"] == "bfloat16" and index["format_version"] == 1
    shard, offset, n = index["utterances"]["u04"]
    array = np.load(cached.folder / index["shards"][shard]["file"], mmap_mode="r")
    assert array.dtype == np.uint16 and array.shape[1:] == (3, 8)
    bits = torch.from_numpy(np.array(array[offset : offset + n])).view(torch.bfloat16)
    assert torch.equal(bits.permute(1, 0, 2).float(), cached.get("u04"))
    assert sum(s["n_frames"] for s in index["shards"]) == sum(cached.lengths.values())


def test_batches_are_bounded_by_seconds_and_the_upstream_state_is_restored(
    manifest: Path, tmp_path: Path
) -> None:
    up = TinyUpstream().train()
    cached = run_extract(up, manifest, tmp_path / "cache", batch_seconds=2.0, shard_bytes=10**9)
    assert up.training  # evaluated in eval mode (dropout off), handed back in train mode
    assert up.utterances == 12 and 2 < up.calls < 12
    for batch, samples in up.batch_shapes:
        assert batch == 1 or batch * samples <= 2.0 * 16_000
    fly = OnTheFlyFeatures(TinyUpstream(), manifest)
    torch.testing.assert_close(cached.batch(cached.ids)[0], fly.batch(fly.ids)[0], **BF16_TOL)


def test_second_extract_hits_the_cache(manifest: Path, tmp_path: Path) -> None:
    first = all_frames(run_extract(TinyUpstream(), manifest, tmp_path / "cache"))
    up = TinyUpstream()
    again = run_extract(up, manifest, tmp_path / "cache")
    assert up.calls == 0
    for u, frames in first.items():
        assert torch.equal(again.get(u), frames)
    reopened = CachedFeatures.open(again.folder)
    assert reopened.ids == again.ids


def test_padding_does_not_leak_between_utterances(manifest: Path, tmp_path: Path) -> None:
    up = TinyUpstream()
    cached = run_extract(up, manifest, tmp_path / "cache", batch_seconds=30.0, shard_bytes=10**9)
    assert up.calls == 1 and up.utterances == 12  # one padded batch of all twelve
    fly = OnTheFlyFeatures(TinyUpstream(), manifest)
    for u in cached.ids:
        alone = fly.get(u)  # a batch of one: no padding at all
        assert alone.shape == cached.get(u).shape
        torch.testing.assert_close(cached.get(u), alone, **BF16_TOL)


def test_fingerprint_sees_weights_buffers_and_config() -> None:
    base = upstream_fingerprint(TinyUpstream(seed=0))
    assert upstream_fingerprint(TinyUpstream(seed=0)) == base
    assert upstream_fingerprint(TinyUpstream(seed=1)) != base
    one_weight = TinyUpstream(seed=0)
    with torch.no_grad():
        one_weight.layers[1].weight[3, 4] += 1e-3
    assert upstream_fingerprint(one_weight) != base
    buffer = TinyUpstream(seed=0)
    buffer.gain.fill_(21.0)
    assert upstream_fingerprint(buffer) != base
    config = TinyUpstream(seed=0)
    config.config = TinyConfig(hop=320)
    assert upstream_fingerprint(config) != base
    as_bf16 = TinyUpstream(seed=0).to(torch.bfloat16)
    assert upstream_fingerprint(as_bf16) != base


def test_fingerprint_is_stable_across_processes() -> None:
    script = (
        "import dataclasses, torch\n"
        "from torch import nn\n"
        "from evalkit.evaluation.fingerprint import upstream_fingerprint\n"
        "@dataclasses.dataclass\n"
        "class Cfg:\n    width: int = 4\n"
        "torch.manual_seed(3)\n"
        "m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))\n"
        "m.config = Cfg()\n"
        "fp = upstream_fingerprint(m)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-c", script + "print(fp)"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    scope: dict = {}
    exec(compile(script, "<fp>", "exec"), scope)
    assert out.stdout.strip() == scope["fp"]


def test_changed_manifest_or_weight_gets_a_new_folder(manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = run_extract(TinyUpstream(), manifest, root)
    fp = manifest_fingerprint(manifest)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    write_manifest(manifest, records)
    assert manifest_fingerprint(manifest) == fp  # same bytes, same key
    records[2]["duration"] += 0.001
    write_manifest(manifest, records)
    assert manifest_fingerprint(manifest) != fp
    up = TinyUpstream()
    moved = run_extract(up, manifest, root)
    assert moved.folder != first.folder and up.calls > 0
    assert moved.folder.parent.parent == first.folder.parent.parent  # same upstream
    changed = TinyUpstream()
    with torch.no_grad():
        changed.frontend.bias[0] += 0.5
    assert cache_dir(root, changed, manifest) != moved.folder
    rerun = run_extract(changed, manifest, root)
    assert changed.calls > 0 and rerun.folder.parent.parent != moved.folder.parent.parent
    assert not torch.allclose(rerun.get("u00"), moved.get("u00"))
    assert (first.folder / "index.json").is_file()  # the old cache stays, harmless


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 100)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-37] ^= 0x40
    path.write_bytes(bytes(data))


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:6] = b"NOTNPY"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _garble_header, Path.unlink])
def test_damaged_shard_is_detected_and_rebuilt(manifest: Path, tmp_path: Path, caplog, damage) -> None:
    root = tmp_path / "cache"
    original = run_extract(TinyUpstream(), manifest, root)
    shard_path = original.folder / "shard_00001.npy"
    in_shard = [u for u, (k, _, _) in original.index["utterances"].items() if k == 1]
    assert in_shard
    reference = all_frames(original)
    damage(shard_path)
    with pytest.raises(EvalkitError, match="shard_00001.npy"):
        CachedFeatures.open(original.folder)
    up = TinyUpstream()
    with caplog.at_level(logging.WARNING, logger="evalkit.evaluation.features"):
        healed = run_extract(up, manifest, root)
    assert up.utterances == len(in_shard)  # only that shard's utterances went through again
    assert any("shard_00001.npy" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert healed.folder == original.folder
    for u, frames in reference.items():
        torch.testing.assert_close(healed.get(u), frames, **BF16_TOL)
    CachedFeatures.open(healed.folder)  # consistent again, checksums included


def test_verify_false_checks_sizes_but_not_checksums(manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    original = run_extract(TinyUpstream(), manifest, root)
    _flip_a_byte(original.folder / "shard_00000.npy")
    up = TinyUpstream()
    run_extract(up, manifest, root, verify=False)
    assert up.calls == 0
    CachedFeatures.open(original.folder, verify=False)
    _truncate(original.folder / "shard_00000.npy")
    run_extract(up, manifest, root, verify=False)
    assert up.calls > 0


class Crash(Exception):
    pass


def test_interrupted_extraction_resumes_and_keeps_finished_shards(manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"

    def crash_after_first(k: int, n_shards: int) -> None:
        assert n_shards >= 3
        if k == 0:
            raise Crash

    with pytest.raises(Crash):
        run_extract(TinyUpstream(), manifest, root, on_shard=crash_after_first)
    folder = cache_dir(root, TinyUpstream(), manifest)
    assert not (folder / "index.json").exists()
    with pytest.raises(EvalkitError, match="not a complete feature cache"):
        CachedFeatures.open(folder)
    kept = folder / "shard_00000.npy"
    before = kept.stat()
    done = [u for u, _, _ in json.loads((folder / "shard_00000.json").read_text())["utts"]]
    up = TinyUpstream()
    resumed = run_extract(up, manifest, root)
    assert up.utterances == 12 - len(done)
    after = kept.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    clean = run_extract(TinyUpstream(), manifest, tmp_path / "clean")
    for u in clean.ids:
        assert torch.equal(resumed.get(u), clean.get(u))


def test_lost_index_and_shard_recomputes_only_that_shard(manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = run_extract(TinyUpstream(), manifest, root)
    reference = all_frames(first)
    in_shard = [u for u, (k, _, _) in first.index["utterances"].items() if k == 2]
    (first.folder / "index.json").unlink()
    (first.folder / "shard_00002.npy").unlink()
    up = TinyUpstream()
    again = run_extract(up, manifest, root)
    assert up.utterances == len(in_shard)
    for u, frames in reference.items():
        assert torch.equal(again.get(u), frames)


def test_on_the_fly_features_train_a_featurizer(manifest: Path) -> None:
    fly = OnTheFlyFeatures(TinyUpstream(), manifest)
    hidden, lens = fly.batch(["u01", "u02"])
    featurizer = WeightedLayerSum(fly.num_layers)
    featurizer(hidden).pow(2).mean().backward()
    assert all(p.grad is not None for p in featurizer.parameters())


def test_cached_features_pickle_without_their_memory_maps(manifest: Path, tmp_path: Path) -> None:
    cached = run_extract(TinyUpstream(), manifest, tmp_path / "cache")
    expected = cached.get("u05")
    blob = pickle.dumps(cached)
    assert len(blob) < 20_000
    assert torch.equal(pickle.loads(blob).get("u05"), expected)


def test_bad_inputs_raise_clear_errors(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        run_extract(TinyUpstream(), manifest, tmp_path / "cache", dtype="float32")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no records"):
        run_extract(TinyUpstream(), empty, tmp_path / "cache")
    liar = TinyUpstream()
    liar.num_layers = 5
    with pytest.raises(EvalkitError, match="num_layers=5"):
        run_extract(liar, manifest, tmp_path / "cache")
    cached = run_extract(TinyUpstream(), manifest, tmp_path / "cache")
    with pytest.raises(EvalkitError, match="not in this feature cache"):
        cached.get("nope")


def test_atomic_open_leaves_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    from evalkit.core.io import atomic_open

    target = tmp_path / "shard.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as f:
        f.write(b"half of a new")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["shard.npy"]  # no temporary file left behind
    with atomic_open(target, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
