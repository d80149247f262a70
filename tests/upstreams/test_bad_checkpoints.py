"""A broken or mismatched checkpoint is a clear error (exit 2) naming the file, never a traceback.

Each case goes through `evalkit eval` as a user runs it: an evalkit checkpoint folder
(config.json + model.safetensors) or an `hf:` transformers folder, damaged one way.
A checkpoint whose weights would load as other numbers (integers cast to floats, another
shape) must be refused too: the evaluation would report a wrong number silently.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Wav2Vec2Config, Wav2Vec2Model

from evalkit.cli import main
from upstreams.checkpoint import write_checkpoint
from upstreams.encoder import random_transformer

HF_TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32, 32, 32),
    conv_kernel=(10, 3, 3),
    conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    feat_extract_norm="group",
)


def evaluate_cli(upstream: str, suite: Path, out: Path) -> int:
    args = ["eval", "--upstream", upstream, "--tasks", "ks", "--data", str(suite), "--output", str(out)]
    return main([*args, "--protocol", "quick", "--steps", "2"])


def checkpoint(folder: Path, **overrides) -> Path:
    model = random_transformer(0, **overrides)
    write_checkpoint(folder, model.state_dict(), {"upstream": "encoder", "config": model.config})
    return folder


def hf_checkpoint(folder: Path, **overrides) -> Path:
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**{**HF_TINY, **overrides})).eval().save_pretrained(folder)
    return folder


def rewrite_weights(path: Path, change) -> None:
    """Save the safetensors file at `path` again with `change(name, tensor)` applied to each tensor."""
    weights = {k: change(k, v).contiguous() for k, v in load_file(path).items()}
    save_file(weights, path, metadata={"format": "pt"})


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


def as_integers(path: Path) -> None:
    rewrite_weights(path, lambda k, v: (v * 100).to(torch.int64) if v.is_floating_point() else v)


def one_wrong_shape(path: Path) -> None:
    first = next(k for k, v in load_file(path).items() if v.dim() == 2)
    rewrite_weights(path, lambda k, v: torch.zeros(3, 3) if k == first else v)


def assert_refused(upstream: str, suite: Path, out: Path, capsys, *expected: str) -> str:
    assert evaluate_cli(upstream, suite, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    assert not list(out.rglob("*.json"))  # nothing was evaluated
    return err


@pytest.mark.parametrize(
    "damage, expected",
    [
        (truncate, "not a readable safetensors file"),
        (random_bytes, "not a readable safetensors file"),
        (as_integers, "int64"),
        (one_wrong_shape, "[3, 3]"),
    ],
    ids=["truncated", "random-bytes", "integer-dtype", "wrong-shape"],
)
def test_damaged_evalkit_weights(smoke_suite, tmp_path, capsys, damage, expected):
    ckpt = checkpoint(tmp_path / "ckpt")
    damage(ckpt / "model.safetensors")
    assert_refused(
        str(ckpt), smoke_suite, tmp_path / "out", capsys, str(ckpt / "model.safetensors"), expected
    )


def test_weights_of_another_architecture(smoke_suite, tmp_path, capsys):
    """A valid model.safetensors, but of a wider encoder than config.json describes."""
    ckpt = checkpoint(tmp_path / "ckpt")
    other = checkpoint(tmp_path / "other", encoder={"dim": 64})
    (ckpt / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    err = assert_refused(str(ckpt), smoke_suite, tmp_path / "out", capsys, str(ckpt / "model.safetensors"))
    assert "config.json" in err and "shape" in err


@pytest.mark.parametrize(
    "config_text, expected",
    [
        (b'{"upstream": "encoder", "config": {"caf\xe9": 1}}', "not valid JSON"),
        (b'{"upstream": "encoder", "config": [1, 2]}', "'config'"),
        (b'{"upstream": "encoder", "config": {"no_such_setting": 1}}', "no_such_setting"),
    ],
    ids=["latin-1", "config-not-an-object", "unknown-setting"],
)
def test_bad_evalkit_config(smoke_suite, tmp_path, capsys, config_text, expected):
    ckpt = checkpoint(tmp_path / "ckpt")
    (ckpt / "config.json").write_bytes(config_text)
    assert_refused(str(ckpt), smoke_suite, tmp_path / "out", capsys, str(ckpt / "config.json"), expected)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (truncate, "not a readable safetensors file"),
        (random_bytes, "not a readable safetensors file"),
        (as_integers, "I64 (not a float type)"),
        (one_wrong_shape, "[3, 3]"),
    ],
    ids=["truncated", "random-bytes", "integer-dtype", "wrong-shape"],
)
def test_damaged_hf_weights(smoke_suite, tmp_path, capsys, damage, expected):
    folder = hf_checkpoint(tmp_path / "hf")
    damage(folder / "model.safetensors")
    assert_refused(f"hf:{folder}", smoke_suite, tmp_path / "out", capsys, str(folder), expected)


def test_hf_weights_of_another_size(smoke_suite, tmp_path, capsys):
    folder = hf_checkpoint(tmp_path / "hf")
    other = hf_checkpoint(tmp_path / "other", hidden_size=64, intermediate_size=128)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    err = assert_refused(f"hf:{folder}", smoke_suite, tmp_path / "out", capsys, str(folder))
    assert "config.json" in err and "shape" in err


@pytest.mark.parametrize(
    "config_text, expected",
    [
        (b"{not json", "not valid JSON"),
        (b'{"model_type": "wav2vec2", "name": "caf\xe9"}', "not valid JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"model_type": "wav2vec3"}', "model_type 'wav2vec3'"),
        (json.dumps({**HF_TINY, "model_type": "wav2vec2", "hidden_size": "big"}).encode(), "hidden_size"),
    ],
    ids=["not-json", "latin-1", "not-an-object", "unknown-model-type", "bad-value"],
)
def test_bad_hf_config(smoke_suite, tmp_path, capsys, config_text, expected):
    folder = hf_checkpoint(tmp_path / "hf")
    (folder / "config.json").write_bytes(config_text)
    assert_refused(
        f"hf:{folder}", smoke_suite, tmp_path / "out", capsys, str(folder / "config.json"), expected
    )


class RunsCode:
    """Unpickling this creates `marker`: what a malicious checkpoint could do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(path: Path, marker: Path, state: dict) -> Path:
    """A torch checkpoint of `state` plus an object whose unpickling would run code; checks that it
    really would (an unrestricted torch.load creates the marker), then removes the marker."""
    torch.save({**state, "extra": RunsCode(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path


def test_hf_pickle_that_runs_code_is_refused_and_runs_nothing(smoke_suite, tmp_path, capsys):
    folder = hf_checkpoint(tmp_path / "hf")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "MARKER"
    weights = malicious_pickle(folder / "pytorch_model.bin", marker, state)
    err = assert_refused(
        f"hf:{folder}",
        smoke_suite,
        tmp_path / "out",
        capsys,
        str(weights),
        "only weights",
        "safe_serialization=True",
    )
    assert "weights_only=False" not in err and not marker.exists()


def test_hf_pickle_of_random_bytes(smoke_suite, tmp_path, capsys):
    folder = hf_checkpoint(tmp_path / "hf")
    (folder / "model.safetensors").unlink()
    random_bytes(folder / "pytorch_model.bin")
    assert_refused(f"hf:{folder}", smoke_suite, tmp_path / "out", capsys, str(folder / "pytorch_model.bin"))


def test_s3prl_pickle_that_runs_code_is_refused_and_runs_nothing(smoke_suite, tmp_path, capsys, monkeypatch):
    """s3prl is optional: a stand-in hub loads its checkpoint as s3prl's do, with torch.load."""
    import upstreams.s3prl

    marker = tmp_path / "MARKER"
    weights = malicious_pickle(tmp_path / "evil.ckpt", marker, {"w": torch.zeros(2)})

    class Hub:
        @staticmethod
        def available_names() -> list[str]:
            return ["evil"]

        def __init__(self, name: str) -> None:
            torch.load(weights, map_location="cpu", weights_only=True)  # torch's default, which s3prl gets

    monkeypatch.setattr(upstreams.s3prl, "import_s3prl_upstream", lambda: Hub)
    err = assert_refused("s3prl:evil", smoke_suite, tmp_path / "out", capsys, str(weights), "only weights")
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in err and not marker.exists()
