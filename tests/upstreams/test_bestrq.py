"""BEST-RQ: targets against a per-utterance reference, the loss on masked frames only, code statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchaudio.compliance import kaldi

import upstreams.bestrq as bestrq
from evalkit.core.errors import ConfigError
from upstreams.bestrq import BestRQ, code_perplexity
from upstreams.objective import Batch, PretrainData

ENCODER = {
    "kind": "transformer",
    "dim": 32,
    "layers": 2,
    "heads": 2,
    "ffn_dim": 64,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "input_dropout": 0.0,
    "layerdrop": 0.0,
    "pos_conv_kernel": 8,
    "pos_conv_groups": 4,
}


def make(kind: str = "fbank", **objective) -> BestRQ:
    torch.manual_seed(0)
    settings = {"codebook_size": 32, "codebook_dim": 8, **objective}
    return BestRQ({"frontend": {"kind": kind, "channels": 32}, "encoder": ENCODER}, **settings)


def speechlike(n: int, seed: int) -> torch.Tensor:
    """Noise through a slowly varying gain and a few tones: fbank frames that differ over time."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tones = sum(
        torch.sin(2 * math.pi * f * t * (1 + 0.3 * torch.sin(2 * math.pi * 3 * t))) for f in (220, 700, 1900)
    )
    gain = 0.5 + 0.5 * torch.sin(2 * math.pi * 2.5 * t + seed)
    return 0.05 * gain * (tones + torch.randn(n, generator=g))


def batch_of(wavs: list[torch.Tensor]) -> Batch:
    lens = torch.tensor([w.numel() for w in wavs])
    padded = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        padded[i, : w.numel()] = w
    return Batch(padded, lens, [str(i) for i in range(len(wavs))], torch.zeros(len(wavs), dtype=torch.long))


def reference_codes(model: BestRQ, wav: torch.Tensor, stats=None) -> torch.Tensor:
    """One utterance alone: torchaudio's Kaldi fbank, CMVN (or the given global mean and std), stacking,
    projection, nearest code by distance."""
    feats = kaldi.fbank(wav[None] * 32768.0, num_mel_bins=80, dither=0.0).double()
    if stats is None:
        feats = (feats - feats.mean(0)) / torch.sqrt(feats.var(0, unbiased=False) + 1e-5)
    else:
        feats = (feats - stats[0].double()) / stats[1].double()
    feats = torch.cat([torch.zeros(model.pad, 80, dtype=torch.float64), feats])
    n = feats.shape[0] // model.stack
    stacked = feats[: n * model.stack].reshape(n, -1)
    z = F.normalize(stacked @ model.projection[0].double(), dim=-1)
    return torch.cdist(z, model.codebook[0].double()).argmin(-1)


@pytest.mark.parametrize(("kind", "stack"), [("fbank", 4), ("cnn", 2)])
def test_targets_equal_a_per_utterance_reference(kind, stack):
    model = make(kind)
    assert model.stack == stack
    wavs = [speechlike(24000, 1), speechlike(13000, 2)]
    batch = batch_of(wavs)
    n_frames = int(model.encoder.frames_for(batch.wav_lens).max())
    codes, has_target = model.targets(batch.wavs, batch.wav_lens, n_frames)
    assert codes.shape == (2, n_frames, 1) and has_target.shape == (2, n_frames)
    for i, wav in enumerate(wavs):
        expected = reference_codes(model, wav)
        assert int(has_target[i].sum()) == len(expected)
        assert torch.equal(codes[i, has_target[i], 0], expected)
    assert len(set(codes[has_target][:, 0].tolist())) > 4  # the quantizer does not collapse to a few codes


def test_loss_reads_the_targets_of_masked_frames_only(monkeypatch):
    model = make().eval()
    batch = batch_of([speechlike(32000, 3), speechlike(20000, 4)])
    masks = []
    span_mask = bestrq.compute_span_mask
    monkeypatch.setattr(
        bestrq, "compute_span_mask", lambda *a, **k: masks.append(span_mask(*a, **k)) or masks[-1]
    )
    true_targets = model.targets

    def loss_with(change) -> float:
        def targets(wavs, lens, n_frames):
            codes, has_target = true_targets(wavs, lens, n_frames)
            return change(codes), has_target

        monkeypatch.setattr(model, "targets", targets)
        torch.manual_seed(7)  # the same mask and noise every time
        with torch.no_grad():
            return float(model(batch).loss)

    base = loss_with(lambda codes: codes)
    mask = masks[-1]
    assert 0 < mask.float().mean() < 1
    scrambled_unmasked = loss_with(lambda codes: torch.where(mask[..., None], codes, (codes + 5) % 32))
    scrambled_masked = loss_with(lambda codes: torch.where(mask[..., None], (codes + 5) % 32, codes))
    assert scrambled_unmasked == pytest.approx(base, abs=1e-6)
    assert scrambled_masked != pytest.approx(base, abs=1e-3)


def test_frozen_quantizer_gets_no_gradient_and_stats_are_sane():
    model = make(codebooks=2).train()
    output = model(batch_of([speechlike(32000, 5), speechlike(24000, 6)]))
    output.loss.backward()
    assert {n for n, _ in model.named_buffers()} == {"projection", "codebook"}
    assert model.projection.grad is None and model.codebook.grad is None
    assert model.head.weight.grad is not None and model.head.out_features == 64
    assert torch.allclose(model.codebook.norm(dim=-1), torch.ones(2, 32))
    assert 0 <= output.stats["accuracy"] <= 1 and 1 <= output.stats["code_perplexity"] <= 32
    assert 0.1 < output.stats["masked_fraction"] < 0.8
    assert output.loss.item() == pytest.approx(math.log(32), rel=0.2)  # an untrained head is near chance


def test_frontend_grad_scale_slows_the_front_end_only():
    batch = batch_of([speechlike(32000, 5), speechlike(24000, 6)])
    grads = []
    for scale in (1.0, 0.1):
        model = make(frontend_grad_scale=scale).train()
        torch.manual_seed(1)  # the same mask both times
        model(batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    full, slow = grads
    frontend = [n for n in full if n.startswith("encoder.frontend.")]
    rest = [n for n in full if not n.startswith("encoder.frontend.")]
    assert frontend and rest and set(full) == set(slow)
    for name in frontend:
        torch.testing.assert_close(slow[name], 0.1 * full[name], rtol=1e-4, atol=1e-7)
    for name in rest:
        torch.testing.assert_close(slow[name], full[name])
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="frontend_grad_scale"):
            make(frontend_grad_scale=bad)


def test_frontend_grad_scale_zero_keeps_the_random_front_end():
    model = make(frontend_grad_scale=0.0).train()
    model(batch_of([speechlike(32000, 5), speechlike(24000, 6)])).loss.backward()
    frontend = {n: p for n, p in model.named_parameters() if n.startswith("encoder.frontend.")}
    rest = {n: p for n, p in model.named_parameters() if not n.startswith("encoder.frontend.")}
    assert frontend and all(not p.requires_grad and p.grad is None for p in frontend.values())
    assert all(p.requires_grad for p in rest.values()) and any(p.grad is not None for p in rest.values())


def test_code_perplexity_by_hand():
    assert code_perplexity(torch.tensor([0, 0, 1, 1]), 8) == pytest.approx(2.0)
    assert code_perplexity(torch.tensor([3, 3, 3]), 8) == pytest.approx(1.0)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert code_perplexity(torch.tensor([0, 0, 0, 1]), 8) == pytest.approx(math.exp(entropy))
    assert code_perplexity(torch.tensor([[0, 1], [1, 1]]), 8) == pytest.approx((2.0 + 1.0) / 2)
    assert code_perplexity(torch.arange(16), 16) == pytest.approx(16.0)


def test_setup_scores_targets_against_alignments_once(tmp_path, monkeypatch):
    from evalkit.core.audio import save_wav

    model = make()
    wav = speechlike(16000, 8)
    save_wav(tmp_path / "a.wav", wav.numpy())
    records = [
        {
            "id": "a",
            "path": "a.wav",
            "duration": 1.0,
            "speaker": "",
            "alignment": [[0.0, 0.5, "a"], [0.5, 1.0, "b"]],
        }
    ]
    report = model.setup(PretrainData(tmp_path / "train.jsonl", records), tmp_path / "setup")
    assert report["utterances"] == 1 and 0 <= report["pnmi"] <= 1 and report["phones"] == 2
    monkeypatch.setattr(BestRQ, "target_quality", lambda *_: pytest.fail("recomputed"))
    assert model.setup(PretrainData(tmp_path / "train.jsonl", records), tmp_path / "setup") == report


def test_global_target_norm_keeps_the_level_that_per_utterance_norm_removes(tmp_path):
    """target_norm 'global': setup estimates the corpus mean/std per mel bin (saved, reloaded by a resumed
    run); the codes then follow a reference with those statistics, and a louder copy of an utterance gets
    other codes, where per-utterance normalisation gives it the same ones (it erases the level)."""
    from evalkit.core.audio import load_audio, save_wav

    wavs = [speechlike(16000, 3), 0.3 * speechlike(20000, 4)]
    records = []
    for i, wav in enumerate(wavs):
        save_wav(tmp_path / f"{i}.wav", wav.numpy())
        records.append({"id": str(i), "path": f"{i}.wav", "duration": wav.numel() / 16000, "speaker": ""})
    data = PretrainData(tmp_path / "train.jsonl", records)
    model = make(target_norm="global")
    model.setup(data, tmp_path / "setup")
    frames = torch.cat(
        [
            kaldi.fbank(
                torch.from_numpy(load_audio(tmp_path / f"{i}.wav"))[None] * 32768.0,
                num_mel_bins=80,
                dither=0.0,
            ).double()
            for i in range(2)
        ]
    )
    torch.testing.assert_close(model.fbank_mean.double(), frames.mean(0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.fbank_std.double(), frames.std(0, unbiased=False), rtol=1e-4, atol=1e-4)

    resumed = make(target_norm="global")  # a resumed run: no setup, only load_setup
    resumed.load_setup(tmp_path / "setup")
    assert torch.equal(resumed.fbank_mean, model.fbank_mean) and "fbank_std" in resumed.state_dict()

    quiet = speechlike(24000, 1)
    loud = 4.0 * quiet
    stats = (model.fbank_mean, model.fbank_std)
    for wav in (quiet, loud):
        batch = batch_of([wav])
        n_frames = int(model.encoder.frames_for(batch.wav_lens)[0])
        codes, has_target = model.targets(batch.wavs, batch.wav_lens, n_frames)
        assert torch.equal(codes[0, has_target[0], 0], reference_codes(model, wav, stats))
    per_utterance = make()
    assert torch.equal(reference_codes(per_utterance, quiet), reference_codes(per_utterance, loud))
    assert not torch.equal(reference_codes(model, quiet, stats), reference_codes(model, loud, stats))

    with pytest.raises(Exception, match="fbank_stats.json"):
        make(target_norm="global").load_setup(tmp_path / "elsewhere")


def test_unmasked_weight_adds_the_cross_entropy_of_the_unmasked_frames():
    batch = batch_of([speechlike(32000, 5), speechlike(24000, 6)])
    model = make(unmasked_weight=0.0).eval()  # eval: no dropout, so the two passes see the same network
    torch.manual_seed(1)
    masked_only = model(batch).loss
    model.settings.unmasked_weight = 0.5
    torch.manual_seed(1)  # the same mask
    both = model(batch).loss
    # the unmasked frames' cross-entropy, computed here from the same encoder pass
    torch.manual_seed(1)
    features, lens = model.encoder.frontend(batch.wavs, batch.wav_lens)
    valid = bestrq.padding_mask(lens, features.shape[1])
    codes, has_target = model.targets(batch.wavs, batch.wav_lens, features.shape[1])
    mask = bestrq.compute_span_mask(
        lens,
        model.settings.mask_prob,
        model.settings.mask_span,
        min_masks=model.settings.mask_min_spans,
        max_len=features.shape[1],
    )
    hidden = model.encoder.encoder(features, valid, mask=mask, masker=model.masker)[-1]
    unmasked = ~mask & has_target & valid
    logits = model.head(hidden[unmasked]).float().view(-1, 1, model.settings.codebook_size)
    expected = F.cross_entropy(logits.transpose(1, 2), codes[unmasked])
    torch.testing.assert_close(both - masked_only, 0.5 * expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="unmasked_weight"):
        make(unmasked_weight=-1.0)


def test_mix_prob_overlaps_what_the_encoder_hears_but_not_the_targets(monkeypatch):
    model = make(mix_prob=1.0)
    batch = batch_of([speechlike(16000, 0), speechlike(12000, 1), speechlike(14000, 2)])
    heard, targeted = [], []
    frontend, targets = model.encoder.frontend.forward, model.targets
    monkeypatch.setattr(model.encoder.frontend, "forward", lambda w, n: heard.append(w) or frontend(w, n))
    monkeypatch.setattr(model, "targets", lambda w, n, f: targeted.append(w) or targets(w, n, f))
    model.train()(batch)
    assert targeted[0] is batch.wavs and not torch.equal(heard[0], batch.wavs)
    model.eval()(batch)  # mixing is a training augmentation only
    assert heard[1] is batch.wavs
    with pytest.raises(ConfigError, match="mix_prob"):
        make(mix_prob=1.5)
