"""The FBANK baselines: torchaudio's Kaldi fbank frame for frame, context stacking, and an utterance
mean that SUPERB's pooled head can use (per-utterance CMVN would zero it)."""

from __future__ import annotations

import math

import torch
from torchaudio.compliance import kaldi

from evalkit.evaluation.heads import HEADS
from upstreams.baselines import FbankUpstream
from upstreams.load import load_upstream


def _tone(freq: float, seconds: float, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return amp * torch.sin(2 * math.pi * freq * t) + 0.01 * torch.randn(
        len(t), generator=torch.Generator().manual_seed(0)
    )


def _batch(*wavs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(w) for w in wavs])
    out = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        out[i, : len(w)] = w
    return out, lens


def test_fbank_is_kaldi_fbank_per_utterance_and_ignores_padding():
    a, b = _tone(300, 1.0), _tone(1200, 0.6)
    (hidden,), lens = load_upstream("fbank")(*_batch(a, b))
    for i, w in enumerate((a, b)):
        ref = kaldi.fbank(w[None] * 32768, num_mel_bins=80, sample_frequency=16000, dither=0.0)
        assert int(lens[i]) == len(ref)
        torch.testing.assert_close(hidden[i, : len(ref)], ref, atol=1e-4, rtol=1e-4)
        assert hidden[i, len(ref) :].abs().max() == 0 if len(ref) < hidden.shape[1] else True


def test_fbank_context_stacks_neighbours():
    a = _tone(500, 0.5)
    (plain,), _ = load_upstream("fbank")(*_batch(a))
    (ctx,), _ = load_upstream("fbank_context")(*_batch(a))
    assert ctx.shape[-1] == 5 * 80
    window = ctx[0, 10].view(80, 5)  # per mel bin, its values at frames t-2 .. t+2
    for k in range(5):
        torch.testing.assert_close(window[:, k], plain[0, 8 + k])
    torch.testing.assert_close(ctx[0, 0].view(80, 5)[:, 0], plain[0, 0])  # edge frames repeated


def test_the_superb_pooled_head_can_tell_fbank_utterances_apart():
    """With per-utterance CMVN every utterance's mean feature is zero, so linear -> mean-pool -> linear
    outputs one constant for all inputs; the default FBANK must not have that flaw."""
    wavs, lens = _batch(_tone(300, 1.0), _tone(1500, 1.0, amp=0.05))
    torch.manual_seed(0)
    head = HEADS.get("mean_pool_linear")(80, n_classes=4, hidden=16)
    outputs = {}
    for cmvn in (False, True):
        (hidden,), frames = FbankUpstream(cmvn=cmvn)(wavs, lens)
        outputs[cmvn] = head(hidden, frames)
    assert (outputs[False][0] - outputs[False][1]).abs().max() > 1e-2
    torch.testing.assert_close(outputs[True][0], outputs[True][1], atol=1e-4, rtol=0)
