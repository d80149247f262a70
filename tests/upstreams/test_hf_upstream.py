"""HFUpstream against transformers itself, on tiny random-init checkpoints saved to tmp_path.

The reference for every comparison is transformers' own pipeline: inputs made
by Wav2Vec2FeatureExtractor (built locally, nothing downloaded) and the model
called directly, with an attention mask only where the model expects one.

Padded batches: for wav2vec 2.0 / HuBERT / WavLM with LayerNorm feature
extractors (attention mask passed) a batch is mathematically equal to each
utterance run alone, so that is checked too. data2vec-audio's stacked
positional convolutions let padded frames reach the last valid ones even with
a mask, in transformers as in fairseq, so it is only compared batch to batch.
GroupNorm extractors normalise each channel over the whole padded length: in
the default `exact` padding mode each utterance of a batch must equal
transformers' output for it alone; in `s3prl` mode the batch must equal
transformers' output for the zero-padded batch with the attention mask.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from evalkit.core.errors import AudioError, EvalkitError
from upstreams.hf import HFUpstream, load_hf_upstream

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32, 32, 32),
    conv_kernel=(10, 3, 3),
    conv_stride=(5, 2, 2),  # 20 samples per frame: 800 Hz
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
LENGTHS = (1600, 1030)
TOL = 1e-5

# id -> (model class, config class, config overrides, preprocessor_config.json to save or None)
VARIANTS = {
    # wav2vec2-base style: GroupNorm extractor, normalise, no attention mask.
    "wav2vec2-group": (
        Wav2Vec2Model,
        Wav2Vec2Config,
        dict(feat_extract_norm="group"),
        dict(do_normalize=True, return_attention_mask=False),
    ),
    # wav2vec2-large-lv60 style: LayerNorm extractor, pre-LN transformer.
    "wav2vec2-layer-stable": (
        Wav2Vec2Model,
        Wav2Vec2Config,
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
        dict(do_normalize=True, return_attention_mask=True),
    ),
    # No preprocessor_config.json: no normalisation, no mask (derived from "group").
    "hubert-group-noprep": (HubertModel, HubertConfig, dict(feat_extract_norm="group"), None),
    # The preprocessor config asks for a mask even though the extractor is GroupNorm.
    "hubert-group-maskedprep": (
        HubertModel,
        HubertConfig,
        dict(feat_extract_norm="group"),
        dict(do_normalize=False, return_attention_mask=True),
    ),
    "hubert-layer-stable": (
        HubertModel,
        HubertConfig,
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
        dict(do_normalize=True, return_attention_mask=True),
    ),
    "wavlm-group": (
        WavLMModel,
        WavLMConfig,
        dict(feat_extract_norm="group"),
        dict(do_normalize=False, return_attention_mask=False),
    ),
    "wavlm-layer-stable": (
        WavLMModel,
        WavLMConfig,
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
        dict(do_normalize=True, return_attention_mask=True),
    ),
    # data2vec-audio always has a LayerNorm extractor; no preprocessor file: normalise + mask.
    "data2vec-noprep": (
        Data2VecAudioModel,
        Data2VecAudioConfig,
        dict(num_conv_pos_embeddings=2, conv_pos_kernel_size=5),
        None,
    ),
}


def make_checkpoint(tmp_path, variant: str, seed: int = 0):
    """Save a tiny random-init model; return it (eval) and the feature extractor that describes it."""
    model_cls, config_cls, overrides, prep = VARIANTS[variant]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**TINY, **overrides})).eval()
    model.save_pretrained(tmp_path)
    layer = getattr(model.config, "feat_extract_norm", "layer") == "layer"
    if prep is None:
        prep = dict(do_normalize=layer, return_attention_mask=layer)
    else:
        Wav2Vec2FeatureExtractor(**prep).save_pretrained(tmp_path)
    return model, prep


def waves(lengths, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.3 * torch.randn(n, generator=g) + 0.05 for n in lengths]


def pad(wav_list) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(w) for w in wav_list])
    out = torch.zeros(len(wav_list), int(lens.max()))
    for i, w in enumerate(wav_list):
        out[i, : len(w)] = w
    return out, lens


@torch.no_grad()
def reference(model, prep: dict, wav_list, with_mask: bool):
    """transformers' hidden states (s3prl order) and per-utterance frame counts.

    The extractor always computes the mask so that normalisation uses only valid
    samples; the mask reaches the model only when `with_mask`.
    """
    fe = Wav2Vec2FeatureExtractor(do_normalize=prep["do_normalize"])
    inputs = fe(
        [w.numpy() for w in wav_list],
        sampling_rate=16_000,
        padding=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    out = model(
        inputs.input_values,
        attention_mask=inputs.attention_mask if with_mask else None,
        output_hidden_states=True,
    )
    hidden = list(out.hidden_states)
    if getattr(model.config, "do_stable_layer_norm", False):
        # s3prl takes the encoder's output, after the final LayerNorm of pre-LN models.
        hidden[-1] = out.last_hidden_state
    else:
        assert torch.equal(hidden[-1], out.last_hidden_state)
    frames = model._get_feature_vector_attention_mask(hidden[0].shape[1], inputs.attention_mask).sum(-1)
    return hidden, frames


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_transformers(tmp_path, variant):
    model, prep = make_checkpoint(tmp_path, variant)
    up = load_hf_upstream(str(tmp_path))
    cfg = model.config
    assert isinstance(up, HFUpstream)
    assert (up.num_layers, up.hidden_size, up.frame_rate) == (cfg.num_hidden_layers + 1, 32, 800.0)
    with_mask = prep["return_attention_mask"]

    # (a) one utterance: every layer, every frame.
    single = waves(LENGTHS[:1])
    hidden, lens = up(*pad(single))
    ref, ref_frames = reference(model, prep, single, with_mask)
    assert len(hidden) == len(ref) == up.num_layers
    assert lens.tolist() == ref_frames.tolist() == [hidden[0].shape[1]]
    for h, r in zip(hidden, ref):
        assert h.shape == r.shape == (1, lens[0], 32)
        assert (h - r).abs().max() < TOL

    # (b) a padded batch of two lengths, against transformers called the way the model expects
    # (GroupNorm extractors: each utterance as transformers gives it alone, the `exact` padding mode).
    batch = waves(LENGTHS)
    hidden, lens = up(*pad(batch))
    group = getattr(cfg, "feat_extract_norm", None) == "group"
    ref, ref_frames = reference(model, prep, batch, with_mask)
    assert lens.tolist() == ref_frames.tolist()
    for b, n in enumerate(lens.tolist()):
        expected = reference(model, prep, [batch[b]], with_mask)[0] if group else [r[b : b + 1] for r in ref]
        for h, r in zip(hidden, expected):
            assert (h[b, :n] - r[0, :n]).abs().max() < TOL
            assert not h[b, n:].any(), "frames beyond the valid length must be zero"

    if with_mask and getattr(cfg, "feat_extract_norm", None) == "layer":
        # LayerNorm extractor + attention mask: padding changes nothing, batch == each utterance alone.
        # (Not data2vec-audio: its stacked positional convs carry padded frames into valid ones.)
        for b, w in enumerate(batch):
            alone, n = up(*pad([w]))
            assert n.item() == lens[b].item()
            for h, a in zip(hidden, alone):
                assert (h[b, : n.item()] - a[0]).abs().max() < TOL


def random_group_config(rng: random.Random) -> dict:
    """A GroupNorm (Base-style) config drawn at random: conv stack, widths, depth; none is fixed here."""
    n_conv = rng.randint(2, 4)
    heads = rng.choice([2, 4])
    return dict(
        hidden_size=heads * rng.choice([8, 12, 16]),
        num_hidden_layers=rng.randint(1, 3),
        num_attention_heads=heads,
        intermediate_size=rng.choice([32, 48, 64]),
        conv_dim=tuple(rng.choice([16, 24, 32]) for _ in range(n_conv)),
        conv_kernel=(rng.choice([8, 10]), *(rng.choice([2, 3]) for _ in range(n_conv - 1))),
        conv_stride=(rng.choice([4, 5]), *(2 for _ in range(n_conv - 1))),
        conv_bias=rng.random() < 0.5,
        num_conv_pos_embeddings=rng.choice([8, 16]),
        num_conv_pos_embedding_groups=rng.choice([2, 4]),
        feat_extract_norm="group",
    )


@pytest.mark.parametrize("draw", range(3))
@pytest.mark.parametrize(
    "model_cls, config_cls",
    [(HubertModel, HubertConfig), (Wav2Vec2Model, Wav2Vec2Config), (WavLMModel, WavLMConfig)],
    ids=["hubert", "wav2vec2", "wavlm"],
)
def test_group_norm_padding_exact_equals_each_utterance_alone(tmp_path, model_cls, config_cls, draw):
    """Issue 21: on GroupNorm models a padded utterance gave other features than alone (max abs difference
    0.75-1.0 here, as s3prl's way still does); `exact` (the default) gives the same within 1e-4."""
    torch.manual_seed(draw)
    model_cls(
        config_cls(**random_group_config(random.Random(f"{model_cls.__name__}{draw}")))
    ).save_pretrained(tmp_path)
    batch = waves((2400, 1630, 1010), seed=draw)
    wavs, lens = pad(batch)
    worst = {}
    for mode in ("exact", "s3prl"):
        up = HFUpstream.from_pretrained(str(tmp_path), padding=mode)
        hidden, frames = up(wavs, lens)
        worst[mode] = 0.0
        for b, w in enumerate(batch):
            alone, n = up(*pad([w]))
            assert n.item() == frames[b].item()
            for h, a in zip(hidden, alone):
                worst[mode] = max(worst[mode], (h[b, : n.item()] - a[0]).abs().max().item())
    assert worst["exact"] < 1e-4
    assert worst["s3prl"] > 1e-2, "the check above must be able to fail"


def test_s3prl_padding_is_transformers_batch_with_the_mask(tmp_path):
    """`s3prl` mode, for numbers comparable with published ones: the attention mask passed, GroupNorm over
    the padded batch, as s3prl's HuBERT and wav2vec 2.0 experts run a batch."""
    model, prep = make_checkpoint(tmp_path, "wav2vec2-group")
    batch = waves(LENGTHS)
    masked, _ = reference(model, prep, batch, with_mask=True)
    hidden, lens = HFUpstream.from_pretrained(str(tmp_path), padding="s3prl")(*pad(batch))
    for h, r in zip(hidden, masked):
        for b, n in enumerate(lens.tolist()):
            assert (h[b, :n] - r[b, :n]).abs().max() < TOL
    with pytest.raises(EvalkitError, match="padding 'fairseq'; choose from exact, s3prl"):
        HFUpstream.from_pretrained(str(tmp_path), padding="fairseq")


def test_normalisation_matches_feature_extractor(tmp_path):
    """The waveform normalisation matters (it changes the output) and follows the extractor's."""
    model, prep = make_checkpoint(tmp_path, "wav2vec2-layer-stable")
    up = load_hf_upstream(str(tmp_path))
    batch = waves(LENGTHS)
    hidden, lens = up(*pad(batch))
    unnormalised, _ = reference(model, dict(prep, do_normalize=False), batch, with_mask=True)
    assert (hidden[1][0] - unnormalised[1][0]).abs().max() > 1e-3


def test_padding_content_and_extra_padding_are_ignored(tmp_path):
    make_checkpoint(tmp_path, "wav2vec2-group")
    up = load_hf_upstream(str(tmp_path))
    wavs, lens = pad(waves(LENGTHS))
    clean, clean_lens = up(wavs, lens)
    noisy = torch.cat([wavs, torch.zeros(2, 300)], dim=1)
    noisy[1, lens[1] :] = torch.randn(noisy.shape[1] - lens[1].item())
    junk, junk_lens = up(noisy, lens)
    assert torch.equal(clean_lens, junk_lens)
    for c, j in zip(clean, junk):
        assert c.shape == j.shape and (c - j).abs().max() < TOL


def test_frozen_and_stays_in_eval(tmp_path):
    make_checkpoint(tmp_path, "hubert-layer-stable")  # default dropouts are 0.1
    up = load_hf_upstream(str(tmp_path)).train()
    assert not up.model.training
    assert not any(p.requires_grad for p in up.parameters())
    wavs, lens = pad(waves(LENGTHS))
    first, _ = up(wavs, lens)
    second, _ = up(wavs, lens)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not first[-1].requires_grad
    assert all(h.dtype == torch.float32 for h in first)


def test_too_short_utterance(tmp_path):
    make_checkpoint(tmp_path, "hubert-group-noprep")
    up = load_hf_upstream(str(tmp_path))
    # Backwards through kernels (10, 3, 3) and strides (5, 2, 2): 3 -> (3 - 1) * 2 + 3 = 7 -> (7 - 1) * 5 + 10.
    assert up.min_samples == 40
    assert up.frames_for(torch.tensor([40, 39])).tolist() == [1, 0]
    with pytest.raises(AudioError, match="at least 40"):
        up(torch.zeros(2, 100), torch.tensor([100, 20]))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(EvalkitError, match="no config.json") as e:
        load_hf_upstream(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "model.safetensors" in str(e.value)

    with pytest.raises(EvalkitError, match="not a folder"):
        load_hf_upstream(str(tmp_path / "missing"))

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    with pytest.raises(EvalkitError, match="model_type 'bert'") as e:
        load_hf_upstream(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "wavlm" in str(e.value)

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EvalkitError, match="not valid JSON"):
        load_hf_upstream(str(tmp_path))


def test_config_without_weights(tmp_path):
    model, _ = make_checkpoint(tmp_path, "wavlm-group")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(EvalkitError, match="could not load") as e:
        load_hf_upstream(str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_partial_checkpoint_is_refused(tmp_path):
    """Weights missing from the file must not be silently random-initialised."""
    make_checkpoint(tmp_path, "wav2vec2-group")
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [k for k in weights if ".layers.1." in k]
    save_file(
        {k: v for k, v in weights.items() if k not in dropped},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(EvalkitError, match=f"lacks {len(dropped)} weight"):
        load_hf_upstream(str(tmp_path))


def test_bad_preprocessor_config(tmp_path):
    make_checkpoint(tmp_path, "wav2vec2-group")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 8000}))
    with pytest.raises(EvalkitError, match="sampling_rate is 8000"):
        load_hf_upstream(str(tmp_path))


def test_checkpoint_with_a_head_loads_its_encoder(tmp_path):
    """Public checkpoints are often *ForCTC / *ForPreTraining: the encoder inside is what is evaluated."""
    torch.manual_seed(0)
    full = Wav2Vec2ForPreTraining(
        Wav2Vec2Config(**TINY, feat_extract_norm="group", codevector_dim=16, proj_codevector_dim=16)
    ).eval()
    full.save_pretrained(tmp_path)
    up = load_hf_upstream(str(tmp_path))
    single = waves(LENGTHS[:1])
    hidden, _ = up(*pad(single))
    ref, _ = reference(full.wav2vec2, dict(do_normalize=False), single, with_mask=False)
    assert all((h - r).abs().max() < TOL for h, r in zip(hidden, ref))


def test_eval_keeps_the_padding_modes_apart(tmp_path, smoke_suite, capsys):
    """`evalkit eval --hf-padding`: the mode is in the result, and a result of the other mode is not resumed
    (the features differ), whereas `--name` keeps both."""
    from evalkit.cli import main

    make_checkpoint(tmp_path / "ckpt", "hubert-group-noprep")
    out = tmp_path / "out"
    args = ["eval", "--upstream", f"hf:{tmp_path / 'ckpt'}", "--data", str(smoke_suite), "--output", str(out)]
    args += ["--tasks", "ks", "--steps", "2", "--protocol", "quick"]
    assert main(args) == 0
    result = json.loads((out / "hf-ckpt" / "ks.json").read_text())
    assert result["upstream_info"]["padding"] == "exact" and result["upstream_info"]["group_norm"] is True
    assert main([*args, "--hf-padding", "s3prl"]) == 2
    assert "this result was made differently: upstream weights (fingerprint)" in capsys.readouterr().err
    assert main([*args, "--hf-padding", "s3prl", "--name", "ckpt-s3prl"]) == 0
    other = json.loads((out / "ckpt-s3prl" / "ks.json").read_text())
    assert other["upstream_info"]["padding"] == "s3prl"
    assert other["upstream_info"]["fingerprint"] != result["upstream_info"]["fingerprint"]
    assert main([*args, "--hf-padding", "fairseq"]) == 2
    assert "--hf-padding" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variant", "padding", "task", "warned"),
    [
        ("hubert-group-noprep", "exact", "ks_superb", True),
        ("hubert-group-noprep", "s3prl", "ks_superb", False),
        ("hubert-group-noprep", "exact", "ks", False),  # evalkit's own recipe: nothing to compare with
        ("hubert-layer-stable", "exact", "ks_superb", False),  # LayerNorm: the same features either way
    ],
)
def test_faithful_tasks_on_padding_exact_groupnorm_features_are_warned_of(
    tmp_path, variant, padding, task, warned
):
    from evalkit.evaluation.preflight import warn_if_not_s3prls_features
    from evalkit.evaluation.task import load_task
    from upstreams.load import load_upstream

    make_checkpoint(tmp_path / "ckpt", variant)
    upstream = load_upstream(f"hf:{tmp_path / 'ckpt'}", hf_padding=padding)
    lines = []
    warn_if_not_s3prls_features(upstream, [load_task(task)], padding, lines.append)
    assert bool(lines) == warned
    assert not lines or ("--hf-padding s3prl" in lines[0] and task in lines[0])
