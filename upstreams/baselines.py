"""Baselines with no pre-training: log-mel fbank (SUPERB's FBANK), fbank with context, random init.

FBANK is the zero point of the SUPERB score. FBANK with ±2 frames of context
is a fairer control that s3prl lacks: a linear probe on single fbank frames
cannot see co-articulation, while every SSL encoder can.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio

from evalkit.core.audio import SAMPLE_RATE
from upstreams.base import Upstream

WIN, HOP = 400, 160  # 25 ms / 10 ms at 16 kHz


def kaldi_frames(wav_lens: torch.Tensor) -> torch.Tensor:
    """Frame counts of kaldi fbank with snip_edges=True, and one frame for a clip shorter than a window.

    Such a clip (real corpora have a few under 25 ms) is zero-padded to one window: kaldi's own
    count would give it no frame, which a head cannot pool and torchaudio refuses to compute.
    """
    full = torch.div(wav_lens - WIN, HOP, rounding_mode="floor") + 1
    return torch.where(wav_lens > 0, full.clamp(min=1), 0).long()


class FbankUpstream(Upstream):
    """80-d kaldi log-mel fbank; one layer at 100 Hz.

    No per-utterance mean/variance normalisation by default (`cmvn=True` adds it, as
    s3prl's fbank.yaml): with it every utterance's features average to exactly zero,
    so the SUPERB utterance head (linear -> mean-pool -> linear) is affine in that
    mean and outputs a constant. On the default suite that held FBANK's linear ER
    head at exactly chance (25.0% at every dev evaluation, both learning rates).
    """

    frame_rate = 100.0
    num_layers = 1

    def __init__(self, num_mel_bins: int = 80, context: int = 0, cmvn: bool = False) -> None:
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.context = context
        self.cmvn = cmvn
        self.hidden_size = num_mel_bins * (2 * context + 1)
        self.config = {"num_mel_bins": num_mel_bins, "context": context, "cmvn": cmvn}

    def frames_for(self, wav_lens: torch.Tensor) -> torch.Tensor:
        return kaldi_frames(wav_lens)

    def _fbank(self, wav: torch.Tensor) -> torch.Tensor:
        if len(wav) < WIN:  # one window, zero-padded: see kaldi_frames
            wav = F.pad(wav, (0, WIN - len(wav)))
        feats = torchaudio.compliance.kaldi.fbank(
            wav[None] * 32768, num_mel_bins=self.num_mel_bins, sample_frequency=SAMPLE_RATE, dither=0.0
        )
        if not self.cmvn:
            return feats
        return (feats - feats.mean(0)) / (feats.std(0) + 1e-5) if len(feats) > 1 else feats - feats.mean(0)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        lens = self.frames_for(wav_lens)
        out = wavs.new_zeros(len(wavs), int(lens.max()), self.hidden_size)
        for i, (wav, n) in enumerate(zip(wavs, wav_lens)):
            if n == 0:
                continue
            feats = self._fbank(wav[: int(n)].float())
            if self.context:
                # Stack ±context neighbours (edge frames repeated): [T, D * (2c+1)].
                padded = F.pad(feats.T[None], (self.context, self.context), mode="replicate")[0].T
                feats = padded.unfold(0, 2 * self.context + 1, 1).reshape(len(feats), -1)
            out[i, : len(feats)] = feats
        return [out], lens


class FbankContextUpstream(FbankUpstream):
    """FBANK with ±2 neighbouring frames stacked (400-d): a control that sees co-articulation."""

    def __init__(self, num_mel_bins: int = 80, context: int = 2, cmvn: bool = False) -> None:
        super().__init__(num_mel_bins, context, cmvn)
