"""Shared pre-training building blocks: front-ends, encoders, masking, configs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchaudio.compliance import kaldi

from evalkit.core.errors import ConfigError
from upstreams.base import padding_mask
from upstreams.modules import (
    ENCODER_KINDS,
    ContextEncoder,
    ConvPositionalEmbedding,
    EncoderConfig,
    FbankFrontend,
    FrontendConfig,
    MaskEmbedding,
    NoiseReplacement,
    SelfAttention,
    SummaryMixing,
    TransformerLayer,
    WaveformCNN,
    build_frontend,
    compute_span_mask,
    count_parameters,
    kaldi_fbank,
    replace_with_noise,
)

ODD_LENGTHS = [16000, 12345, 4001, 801, 401, 400, 399, 7]


def tiny_encoder_config(kind: str, **overrides) -> EncoderConfig:
    settings = dict(
        kind=kind, dim=32, layers=3, heads=4, ffn_dim=64, layerdrop=0.0, pos_conv_kernel=8, pos_conv_groups=4
    )
    settings.update(overrides)
    return EncoderConfig(**settings)


def batch_of(wavs: list[torch.Tensor], pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(w) for w in wavs])
    batch = torch.full((len(wavs), int(lens.max())), pad_value)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    return batch, lens


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# ---- front-ends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["group_norm", "layer_norm"])
def test_waveform_cnn_lengths_match_closed_form_and_shapes(norm):
    cnn = WaveformCNN(channels=16, norm=norm)
    lens = torch.tensor(ODD_LENGTHS)
    # The 7 convs compose to a 400-sample receptive field with a 320-sample hop.
    expected = ((lens - 400).div(320, rounding_mode="floor") + 1).clamp(min=0)
    assert torch.equal(cnn.output_lengths(lens), expected)
    assert cnn.frame_rate == 50.0 and int(cnn.output_lengths(torch.tensor([16000]))) == 49
    for n in [16000, 12345, 4001, 401]:
        x, out_lens = cnn(torch.randn(1, n), torch.tensor([n]))
        assert x.shape == (1, int(expected[ODD_LENGTHS.index(n)]), 16) and int(out_lens) == x.shape[1]


@pytest.mark.parametrize("norm", ["group_norm", "layer_norm"])
def test_waveform_cnn_is_padding_invariant(norm):
    cnn = WaveformCNN(channels=16, norm=norm)
    short, long = torch.randn(4001), torch.randn(12345)
    batch, lens = batch_of([short, long])
    x, out_lens = cnn(batch, lens)
    alone, _ = cnn(short[None], torch.tensor([4001]))
    n = int(out_lens[0])
    assert n == alone.shape[1]
    assert (x[0, :n] - alone[0]).abs().max() < 1e-5
    assert (x[0, n:] == 0).all()


def test_waveform_cnn_fast_path_without_padding_equals_the_masked_path():
    """A batch with no padding takes F.group_norm; the same rows inside a padded batch take the masked norm."""
    torch.manual_seed(0)
    cnn = WaveformCNN(channels=16, norm="group_norm")
    with torch.no_grad():
        cnn.norm_weight.normal_()
        cnn.norm_bias.normal_()
    equal = torch.randn(2, 8000)
    fast, fast_lens = cnn(equal, torch.tensor([8000, 8000]))
    padded, lens = batch_of([equal[0], equal[1], torch.randn(12000)])
    masked, _ = cnn(padded, lens)
    n = int(fast_lens[0])
    assert (fast - masked[:2, :n]).abs().max() < 1e-5
    assert (masked[:2, n:] == 0).all()


def test_batched_fbank_equals_kaldi_fbank_per_utterance():
    wavs = [torch.randn(n) * 0.3 for n in [16000, 12345, 4001, 401, 399]]
    batch, lens = batch_of(wavs)
    feats, frame_lens = kaldi_fbank(batch * 32768, lens, n_mels=80)
    for i, w in enumerate(wavs):
        if len(w) < 400:  # kaldi.fbank refuses an utterance shorter than one window
            assert int(frame_lens[i]) == 0
            continue
        reference = kaldi.fbank(w[None] * 32768, num_mel_bins=80, dither=0.0)
        n = reference.shape[0]
        assert int(frame_lens[i]) == n
        assert (feats[i, :n] - reference).abs().max() < 1e-4
        assert (feats[i, n:] == 0).all()


@pytest.mark.parametrize("subsampling", ["conv1d", "conv2d"])
def test_fbank_frontend_lengths_shapes_and_padding_invariance(subsampling):
    frontend = FbankFrontend(channels=24, subsampling=subsampling)
    assert frontend.frame_rate == 25.0
    lens = torch.tensor(ODD_LENGTHS)
    fbank_frames = ((lens - 400).div(160, rounding_mode="floor") + 1).clamp(min=0)
    expected = torch.tensor([math.ceil(int(f) / 4) for f in fbank_frames])
    assert torch.equal(frontend.output_lengths(lens), expected)
    assert int(frontend.output_lengths(torch.tensor([16000]))) == 25

    # 3601 samples: 21 fbank frames, then 11 and 6, so each conv's last window reaches into the padding.
    short, long = torch.randn(3601) * 0.1, torch.randn(12345) * 0.1
    batch, blens = batch_of([short, long])
    x, out_lens = frontend(batch, blens)
    assert (
        x.shape == (2, int(out_lens.max()), 24)
        and out_lens.tolist() == frontend.output_lengths(blens).tolist()
    )
    alone, alone_lens = frontend(short[None], torch.tensor([3601]))
    n = int(out_lens[0])
    assert alone.shape[1] == n == int(alone_lens[0])
    assert (x[0, :n] - alone[0]).abs().max() < 1e-5
    assert (x[0, n:] == 0).all()


def test_fbank_cmvn_normalises_valid_frames_only():
    batch, lens = batch_of([torch.randn(8000) * 0.5, torch.randn(16000) * 0.01])
    feats, frame_lens = FbankFrontend(channels=8).features(batch, lens)
    n = int(frame_lens[0])
    assert torch.allclose(feats[0, :n].mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats[0, :n].std(0, unbiased=False), torch.ones(80), atol=1e-3)
    assert (feats[0, n:] == 0).all()


# ---- encoders -----------------------------------------------------------------------------------

ENCODER_VARIANTS = [
    ("transformer", {}),
    ("transformer", {"norm_first": True}),
    ("conformer", {}),
    ("conformer", {"conv_norm": "batch_norm"}),  # eval mode: running statistics, so still invariant
    ("summarymixing", {}),
    ("summarymixing", {"norm_first": True, "pos_conv_kernel": 0}),
]


@pytest.mark.parametrize("kind,overrides", ENCODER_VARIANTS)
def test_encoder_output_is_the_same_alone_and_padded_in_a_batch(kind, overrides):
    encoder = ContextEncoder(12, tiny_encoder_config(kind, **overrides)).eval()
    short, long = torch.randn(1, 17, 12), torch.randn(1, 40, 12)
    batch = torch.randn(2, 40, 12) * 100  # garbage, not zeros, in the padding
    batch[0, :17], batch[1] = short[0], long[0]
    valid = padding_mask(torch.tensor([17, 40]), 40)
    with torch.no_grad():
        batched = encoder(batch, valid)
        alone = encoder(short, torch.ones(1, 17, dtype=torch.bool))
        alone_long = encoder(long, torch.ones(1, 40, dtype=torch.bool))
    assert len(batched) == len(alone) == encoder.num_hidden == 4
    for b, a, al in zip(batched, alone, alone_long):
        assert (b[0, :17] - a[0]).abs().max() < 1e-5
        assert (b[1] - al[0]).abs().max() < 1e-5
        assert (b[0, 17:] == 0).all()


@pytest.mark.parametrize("kernel", [4, 5])
def test_positional_conv_ignores_padding_and_keeps_length(kernel):
    positional = ConvPositionalEmbedding(8, kernel=kernel, groups=2)
    x = torch.randn(1, 11, 8)
    padded = torch.cat([x, torch.randn(1, 6, 8) * 100], dim=1)
    alone = positional(x, torch.ones(1, 11, dtype=torch.bool))
    batched = positional(padded, padding_mask(torch.tensor([11]), 17))
    assert alone.shape == x.shape and batched.shape == padded.shape
    assert (batched[:, :11] - alone).abs().max() < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_upto_returns_the_same_leading_hidden_states(norm_first):
    encoder = ContextEncoder(12, tiny_encoder_config("transformer", norm_first=norm_first)).eval()
    x, valid = torch.randn(2, 10, 12), torch.ones(2, 10, dtype=torch.bool)
    with torch.no_grad():
        full, part = encoder(x, valid), encoder(x, valid, upto=2)
    assert len(part) == 3
    for f, p in zip(full, part):
        assert torch.equal(f, p)
    with pytest.raises(ValueError):
        encoder(x, valid, upto=4)


def test_self_attention_matches_torch_multihead_attention():
    attention = SelfAttention(16, 4).eval()
    reference = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.out.weight)
        reference.out_proj.bias.copy_(attention.out.bias)
    x, valid = torch.randn(2, 9, 16), padding_mask(torch.tensor([9, 5]), 9)
    expected, _ = reference(x, x, x, key_padding_mask=~valid, need_weights=False)
    assert (attention(x, valid) - expected).abs().max() < 1e-5


def test_summary_mixing_equals_the_concatenated_formula():
    mixer = SummaryMixing(8, 12)
    x, valid = torch.randn(2, 7, 8), padding_mask(torch.tensor([7, 3]), 7)
    f, s = mixer.local(x), mixer.summary(x)
    mean = torch.stack([s[0, :7].mean(0), s[1, :3].mean(0)])[:, None].expand(-1, 7, -1)
    weight = torch.cat([mixer.combine_local.weight, mixer.combine_summary.weight], dim=1)
    expected = F.gelu(torch.cat([f, mean], dim=-1) @ weight.T + mixer.combine_local.bias)
    assert (mixer(x, valid) - expected).abs().max() < 1e-5


def test_summary_mixing_cost_is_linear_in_time():
    layer = TransformerLayer(16, SummaryMixing(16, 16), 32, 0.0, 0.0, norm_first=True)

    def flops(t: int) -> int:
        x = torch.randn(1, t, 16, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            layer(x, torch.ones(1, t, dtype=torch.bool)).sum().backward()
        return counter.get_total_flops()

    # Affine in T: only the once-per-utterance summary projection does not scale with T.
    f1, f2, f4 = flops(1000), flops(2000), flops(4000)
    assert f4 - f2 == 2 * (f2 - f1) > 0 and f1 < 1.01 * (f2 - f1)
    with torch.no_grad():  # a T x T attention matrix here would need 1.6 GB
        out = layer(torch.randn(1, 20000, 16), torch.ones(1, 20000, dtype=torch.bool))
    assert out.shape == (1, 20000, 16) and torch.isfinite(out).all()


FRONTEND_VARIANTS = [
    {"kind": "cnn"},
    {"kind": "cnn", "norm": "layer_norm", "conv_bias": True},
    {"kind": "fbank"},
    {"kind": "fbank", "subsampling": "conv2d"},
]


@pytest.mark.parametrize("kind", ENCODER_KINDS)
@pytest.mark.parametrize("frontend_settings", FRONTEND_VARIANTS)
def test_gradients_reach_every_parameter(kind, frontend_settings):
    frontend = build_frontend(FrontendConfig(channels=16, **frontend_settings))
    encoder = ContextEncoder(16, tiny_encoder_config(kind, layers=2))
    mask_embedding = MaskEmbedding(32)
    wavs, lens = batch_of([torch.randn(6000) * 0.1, torch.randn(4000) * 0.1])
    feats, frame_lens = frontend(wavs, lens)
    valid = padding_mask(frame_lens, feats.shape[1])
    mask = compute_span_mask(frame_lens, 0.5, 2, min_masks=1, generator=torch.Generator().manual_seed(0))
    hidden = encoder(feats, valid, mask=mask, masker=mask_embedding)
    hidden[-1][valid].square().mean().backward()
    for module in (frontend, encoder, mask_embedding):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ENCODER_KINDS)
@pytest.mark.parametrize("frontend_settings", FRONTEND_VARIANTS)
def test_bf16_autocast_forward_on_cpu(kind, frontend_settings):
    frontend = build_frontend(FrontendConfig(channels=16, **frontend_settings))
    encoder = ContextEncoder(16, tiny_encoder_config(kind)).eval()
    wavs, lens = batch_of([torch.randn(8000) * 0.1, torch.randn(5000) * 0.1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats, frame_lens = frontend(wavs, lens)
        hidden = encoder(feats, padding_mask(frame_lens, feats.shape[1]))
    assert all(torch.isfinite(h.float()).all() for h in hidden)
    assert hidden[-1].dtype in (torch.bfloat16, torch.float32) and hidden[-1].shape == (2, feats.shape[1], 32)


# ---- masking ------------------------------------------------------------------------------------


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True."""
    lengths, current = [], 0
    for value in row.tolist() + [False]:
        if value:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    return lengths


def test_span_mask_proportion_matches_the_exact_expectation():
    t, span, mask_prob, rows = 300, 10, 0.8, 400
    masks = compute_span_mask(
        torch.full((rows,), t), mask_prob, span, generator=torch.Generator().manual_seed(1)
    )
    k, n = round(mask_prob * t / span), t - span + 1
    # Frame i is unmasked iff none of the c_i starts covering it is among the k chosen of n.
    expected = sum(
        1 - math.comb(n - (min(i, n - 1) - max(0, i - span + 1) + 1), k) / math.comb(n, k) for i in range(t)
    )
    counts = masks.sum(1).double()
    assert abs(counts.mean() - expected) < 4 * counts.std() / math.sqrt(rows)
    assert 0.5 < expected / t < 0.6  # HuBERT's setting masks about half of the frames


def test_span_mask_structure_and_padding():
    lens = torch.tensor([200, 137, 9, 0, 3])
    mask = compute_span_mask(
        lens, 0.3, 5, min_masks=1, max_len=210, generator=torch.Generator().manual_seed(2)
    )
    assert mask.shape == (5, 210) and mask.dtype == torch.bool
    assert not (mask & ~padding_mask(lens, 210)).any()
    for row, length in zip(mask, lens.tolist()):
        k = max(round(0.3 * length / 5), 1) if length else 0
        lengths = runs(row)
        assert len(lengths) <= k and sum(lengths) <= k * 5
        assert all(r >= min(5, length) for r in lengths)
    assert mask[2].sum() == 5 and mask[3].sum() == 0  # 9 frames: one span; empty: none
    assert mask[4].sum() == 3  # shorter than a span: the span is clipped to the valid frames
    single = compute_span_mask(torch.tensor([100]), 0.1, 10)  # exactly one start
    assert runs(single[0]) == [10]


def test_span_mask_is_deterministic_given_a_generator():
    lens = torch.tensor([500, 321])
    a = compute_span_mask(lens, 0.65, 10, generator=torch.Generator().manual_seed(3))
    b = compute_span_mask(lens, 0.65, 10, generator=torch.Generator().manual_seed(3))
    c = compute_span_mask(lens, 0.65, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ConfigError):
        compute_span_mask(lens, -0.1, 10)


def test_maskers_replace_only_masked_frames():
    x = torch.randn(2, 50, 8)
    mask = compute_span_mask(torch.tensor([50, 30]), 0.8, 5, generator=torch.Generator().manual_seed(5))
    mask_embedding = MaskEmbedding(8)
    embedded = mask_embedding(x, mask)
    assert torch.equal(embedded[~mask], x[~mask])
    assert torch.equal(embedded[mask], mask_embedding.embedding.expand(int(mask.sum()), 8))
    noisy = replace_with_noise(torch.randn(4, 2000, 8), torch.ones(4, 2000, dtype=torch.bool), std=0.1)
    assert abs(noisy.std() - 0.1) < 0.005 and abs(noisy.mean()) < 0.005
    kept = NoiseReplacement(0.1)(x, mask)
    assert torch.equal(kept[~mask], x[~mask]) and not torch.equal(kept[mask], x[mask])
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    assert torch.equal(replace_with_noise(x, mask, generator=g1), replace_with_noise(x, mask, generator=g2))


# ---- configs and parameter counts ---------------------------------------------------------------


def test_configs_round_trip_through_json():
    encoder = tiny_encoder_config("conformer", conv_kernel=15)
    frontend = FrontendConfig(kind="fbank", channels=64, subsampling="conv2d")
    assert EncoderConfig.from_dict(json.loads(json.dumps(encoder.to_dict()))) == encoder
    assert FrontendConfig.from_dict(json.loads(json.dumps(frontend.to_dict()))) == frontend
    with pytest.raises(ConfigError, match="heds.*Did you mean 'heads'"):
        EncoderConfig.from_dict({"heds": 4}, where="config.json")
    with pytest.raises(ConfigError, match="summarymixing"):
        EncoderConfig(kind="summary_mixing")
    with pytest.raises(ConfigError, match="divisible"):
        EncoderConfig(dim=30, heads=4)
    with pytest.raises(ConfigError, match="odd"):
        EncoderConfig(conv_kernel=4)


def test_count_parameters():
    attention = SelfAttention(8, 2)
    assert count_parameters(attention) == (8 * 24 + 24) + (8 * 8 + 8)
    attention.out.requires_grad_(False)
    assert count_parameters(attention, trainable_only=True) == 8 * 24 + 24
    # HuBERT Base is ~94.7M parameters, ~0.3M of them in its prediction head.
    base = count_parameters(WaveformCNN()) + count_parameters(ContextEncoder(512, EncoderConfig()))
    assert 94.0e6 < base < 94.7e6


def test_utterance_mixing_adds_a_scaled_crop_of_another_utterance_inside_the_valid_samples():
    from upstreams.modules import mix_utterances

    torch.manual_seed(0)
    lens = torch.tensor([16000, 12000, 8000, 16000])
    wavs = torch.zeros(4, 16000)
    for i, n in enumerate(lens.tolist()):
        wavs[i, :n] = torch.randn(n) * (i + 1)
    assert mix_utterances(wavs, lens, 0.0) is wavs
    torch.manual_seed(1)
    mixed = mix_utterances(wavs, lens, 1.0)
    assert not torch.equal(mixed, wavs) and torch.equal(wavs[1, 12000:], torch.zeros(4000))  # input untouched
    for i, n in enumerate(lens.tolist()):
        added = mixed[i] - wavs[i]
        assert torch.all(added[n:] == 0)  # padding stays zero
        changed = torch.nonzero(added).flatten()
        assert 0 < len(changed) <= n // 2  # at most half the utterance is overlapped
        span = added[changed.min() : changed.max() + 1]
        ratio_db = 10 * torch.log10(wavs[i, :n].pow(2).mean() / span.pow(2).mean())
        assert -5.01 <= float(ratio_db) <= 5.01  # WavLM's energy ratio range
        # the added span is a (scaled) crop of one other utterance of the batch
        assert any(_is_scaled_crop(span, wavs[j, : lens[j]]) for j in range(4) if j != i)
    torch.manual_seed(1)
    assert torch.equal(mix_utterances(wavs, lens, 1.0), mixed)  # drawn from torch's global generator


def _is_scaled_crop(span: torch.Tensor, source: torch.Tensor) -> bool:
    windows = source.unfold(0, len(span), 1)
    scale = (windows @ span) / windows.pow(2).sum(1).clamp(min=1e-9)
    best = int(torch.argmax(scale.abs()))
    return torch.allclose(windows[best] * scale[best], span, atol=1e-4)


def test_fbank_first_computed_in_inference_mode_still_trains():
    """The mel filters are cached: made first under inference_mode (extraction), they must still
    serve a training step's backward pass afterwards."""
    from upstreams.modules import frontends

    frontends._mel_banks.cache_clear()
    with torch.inference_mode():
        frontends.kaldi_fbank(torch.randn(1, 4000))
    wav = torch.randn(1, 4000, requires_grad=True)
    frontends.kaldi_fbank(wav)[0].sum().backward()
    assert wav.grad is not None
