"""`evalkit export --format hf`: our encoder checkpoints against transformers' own implementation.

The reference is transformers' HubertModel / Wav2Vec2Model loaded from the
exported folder with `from_pretrained`, and our `hf:` upstream on the same
folder; both must give every hidden state of the original SSLEncoder.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import save_file

from evalkit.cli import main
from upstreams.checkpoint import load_checkpoint
from upstreams.encoder import SSLEncoder
from upstreams.load import load_upstream

TOL = 1e-4
SMALL_ENCODER = {
    "kind": "transformer",
    "dim": 32,
    "layers": 2,
    "heads": 4,
    "ffn_dim": 64,
    "pos_conv_kernel": 16,
    "pos_conv_groups": 4,
}

# id -> (front-end overrides, encoder overrides)
VARIANTS = {
    "base-post-ln-groupnorm": ({"norm": "group_norm"}, {}),
    "large-pre-ln-layernorm-bias": ({"norm": "layer_norm", "conv_bias": True}, {"norm_first": True}),
    "odd-kernel-no-weight-norm": (
        {"norm": "layer_norm"},
        {"pos_conv_kernel": 15, "pos_conv_weight_norm": False},
    ),
    "no-positional-conv": ({"norm": "group_norm"}, {"pos_conv_kernel": 0}),
}


def save_checkpoint(folder, frontend: dict, encoder: dict, seed: int = 0) -> SSLEncoder:
    """A random-init SSLEncoder saved as an evalkit checkpoint, with norms moved off identity.

    Query/key weights are scaled up so that attention is far from uniform;
    with the 0.02-std init a q/k mix-up would hardly change the output.
    """
    torch.manual_seed(seed)
    config = {
        "frontend": {"kind": "cnn", "channels": 16, **frontend},
        "encoder": {**SMALL_ENCODER, **encoder},
    }
    model = SSLEncoder(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
            if name.endswith("mixer.qkv.weight"):
                p.mul_(10.0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"upstream": "encoder", "config": config}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    return model


def transformers_hidden(model, wavs: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Hidden states in s3prl's order, straight from transformers (final LayerNorm on the last)."""
    with torch.no_grad():
        out = model(wavs, attention_mask=mask, output_hidden_states=True)
    hidden = list(out.hidden_states)
    if model.config.do_stable_layer_norm:
        hidden[-1] = out.last_hidden_state
    return hidden


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("variant", "model_type"),
    [(v, "hubert") for v in VARIANTS] + [(v, "wav2vec2") for v in list(VARIANTS)[:2]],
)
def test_export_reproduces_every_hidden_state(tmp_path, variant, model_type):
    frontend, encoder = VARIANTS[variant]
    ours = save_checkpoint(tmp_path / "ckpt", frontend, encoder)
    assert (
        main(
            [
                "export",
                "--format",
                "hf",
                "--model-type",
                model_type,
                str(tmp_path / "ckpt"),
                str(tmp_path / "hf"),
            ]
        )
        == 0
    )
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (tmp_path / "hf" / name).is_file()

    cls = transformers.HubertModel if model_type == "hubert" else transformers.Wav2Vec2Model
    theirs, info = cls.from_pretrained(tmp_path / "hf", local_files_only=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert theirs.config.do_stable_layer_norm == bool(encoder.get("norm_first", False))

    wav = 0.1 * torch.randn(1, 12_345, generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([wav.shape[1]])
    with torch.no_grad():
        expected, frames = ours(wav, lens)
        via_hf_upstream, hf_frames = load_upstream(f"hf:{tmp_path / 'hf'}")(wav, lens)
    assert len(expected) == 3 and min(float(h.std()) for h in expected) > 0.1
    assert max_diff(expected, transformers_hidden(theirs.eval(), wav)) < TOL
    assert max_diff(expected, via_hf_upstream) < TOL
    assert frames.tolist() == hf_frames.tolist() == [38]


def test_layernorm_frontend_matches_on_a_padded_batch(tmp_path):
    """With a LayerNorm front-end and the attention mask, batching changes nothing on valid frames."""
    ours = save_checkpoint(tmp_path / "ckpt", {"norm": "layer_norm"}, {}, seed=3)
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0
    lens = torch.tensor([16_000, 9_000])
    wavs = 0.1 * torch.randn(2, 16_000, generator=torch.Generator().manual_seed(2))
    wavs[1, 9_000:] = 0.0
    with torch.no_grad():
        expected, frames = ours(wavs, lens)
        got, got_frames = load_upstream(f"hf:{tmp_path / 'hf'}")(wavs, lens)
    assert got_frames.tolist() == frames.tolist() == [49, 27]
    assert max_diff(expected, got) < TOL


def test_a_wrong_weight_is_caught(tmp_path):
    """The comparison can fail: queries and keys of the last layer swapped in the export show up."""
    from safetensors.torch import load_file

    ours = save_checkpoint(tmp_path / "ckpt", {"norm": "group_norm"}, {})
    main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")])
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    q, k = (f"encoder.layers.1.attention.{x}_proj.weight" for x in "qk")
    weights[q], weights[k] = weights[k], weights[q]
    save_file(weights, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
    wav = 0.1 * torch.randn(1, 8_000, generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([8_000])
    with torch.no_grad():
        expected, _ = ours(wav, lens)
        got, _ = load_upstream(f"hf:{tmp_path / 'hf'}")(wav, lens)
    assert max_diff(expected[:2], got[:2]) < TOL
    assert float((expected[2] - got[2]).abs().max()) > 1e-2


@pytest.mark.parametrize(
    ("frontend", "encoder", "reason"),
    [
        ({"kind": "fbank", "channels": 32}, {}, "front-end 'fbank'"),
        ({}, {"kind": "summarymixing"}, "encoder 'summarymixing'"),
        ({}, {"kind": "conformer"}, "encoder 'conformer'"),
    ],
)
def test_architectures_without_a_transformers_twin_exit_2(tmp_path, capsys, frontend, encoder, reason):
    save_checkpoint(tmp_path / "ckpt", frontend, encoder)
    assert main(["export", "--format", "hf", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert reason in err and "cannot be exported to transformers" in err
    assert not (tmp_path / "hf").exists()


def test_not_an_encoder_checkpoint_exits_2(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"upstream": "fbank", "config": {}}))
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 2
    assert "not an evalkit encoder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "hf")]) == 2
    save_checkpoint(tmp_path / "enc", {}, {})
    assert main(["export", str(tmp_path / "enc"), str(tmp_path / "enc")]) == 2
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "architecture"),
    [("wav2vec2", "Wav2Vec2Model"), ("bestrq", "HubertModel"), (None, "HubertModel")],
)
def test_auto_model_type_follows_the_pretraining_method(tmp_path, capsys, method, architecture):
    save_checkpoint(tmp_path / "ckpt", {}, {})
    if method:
        config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
        config["pretraining"] = {"method": method, "steps": 10}
        (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [architecture]
    assert architecture in capsys.readouterr().out


def test_checkpoint_round_trip_is_the_saved_model(tmp_path):
    """The fixture's checkpoint loads back to the same weights (so the comparisons above test export)."""
    ours = save_checkpoint(tmp_path / "ckpt", {}, {})
    loaded = load_checkpoint(tmp_path / "ckpt")
    for (k, a), (_, b) in zip(ours.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
