"""Front-ends: 16 kHz waveforms [B, S] + lengths -> features [B, T, D] + frame lengths.

Both front-ends are exactly padding-invariant: an utterance yields the same
valid frames alone or zero-padded in a batch. Frames past an utterance's length
are zero.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.compliance import kaldi

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.config import SerialisableConfig, check_choice, check_positive
from upstreams.base import padding_mask

CNN_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CNN_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # product 320 samples = 20 ms

FBANK_WINDOW = 400  # 25 ms at 16 kHz
FBANK_SHIFT = 160  # 10 ms
FBANK_FFT = 512  # Kaldi rounds the window up to a power of two
KALDI_SCALE = 32768.0  # Kaldi reads int16 samples; our waveforms are floats in [-1, 1]


@dataclass
class FrontendConfig(SerialisableConfig):
    """Which front-end and its sizes. Defaults: the HuBERT / wav2vec 2.0 Base CNN."""

    kind: str = "cnn"  # "cnn" (wav2vec 2.0 / HuBERT, 20 ms) | "fbank" (Fast-HuBERT, 40 ms)
    channels: int = 512  # CNN channels, or the fbank subsampling convs' channels (= output dim)
    norm: str = "group_norm"  # cnn only: "group_norm" (first layer) | "layer_norm" (every layer)
    conv_bias: bool = False  # cnn only: Base models have none
    n_mels: int = 80  # fbank only
    subsampling: str = "conv1d"  # fbank only: "conv1d" (cheap) | "conv2d" (ESPnet-style, over time and mel)
    cmvn: bool = True  # fbank only: per-utterance mean/variance normalisation

    def __post_init__(self) -> None:
        check_choice("frontend", "kind", self.kind, ("cnn", "fbank"))
        check_choice("frontend", "norm", self.norm, ("group_norm", "layer_norm"))
        check_choice("frontend", "subsampling", self.subsampling, ("conv1d", "conv2d"))
        check_positive("frontend", channels=self.channels, n_mels=self.n_mels)


def build_frontend(config: FrontendConfig) -> WaveformCNN | FbankFrontend:
    if config.kind == "cnn":
        return WaveformCNN(config.channels, config.norm, config.conv_bias)
    return FbankFrontend(config.channels, config.n_mels, config.subsampling, config.cmvn)


def conv_output_lengths(lens: torch.Tensor, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """Output frames of a convolution over `lens` input frames (0 when the input is shorter than the kernel)."""
    out = torch.div(lens + 2 * padding - kernel, stride, rounding_mode="floor") + 1
    return out.clamp(min=0)


def _lengths_or_full(wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> torch.Tensor:
    if wav_lens is None:
        return torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
    return wav_lens.to(device=wavs.device, dtype=torch.long)


def masked_channel_norm(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-(utterance, channel) normalisation of x [B, C, T] over its valid frames only, in fp32."""
    x = x.float()
    m = valid[:, None, :].float()
    n = m.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (x * m).sum(-1, keepdim=True) / n
    var = ((x - mean).square() * m).sum(-1, keepdim=True) / n
    return (x - mean) * torch.rsqrt(var + eps)


class WaveformCNN(nn.Module):
    """The wav2vec 2.0 / HuBERT convolutional feature extractor: 7 convs, 320-sample hop.

    "group_norm" mode normalises each channel of the first layer over time, as
    fairseq's GroupNorm(channels, channels) does, but over valid frames only, so
    padding cannot change the features (fairseq's includes the padding). A batch
    without padding takes `F.group_norm` (one kernel, the same numbers): the masked
    statistics cost a CNN extraction ~10% (bench/transformers_parity.py).
    """

    frame_rate = 50.0

    def __init__(self, channels: int = 512, norm: str = "group_norm", conv_bias: bool = False) -> None:
        super().__init__()
        check_choice("frontend", "norm", norm, ("group_norm", "layer_norm"))
        self.dim = channels
        self.norm = norm
        self.convs = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else channels, channels, k, s, bias=conv_bias)
            for i, (k, s) in enumerate(zip(CNN_KERNELS, CNN_STRIDES))
        )
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
        n_norms = 1 if norm == "group_norm" else len(self.convs)
        self.norm_weight = nn.Parameter(torch.ones(n_norms, channels))
        self.norm_bias = nn.Parameter(torch.zeros(n_norms, channels))

    def output_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        lens = wav_lens.long()
        for k, s in zip(CNN_KERNELS, CNN_STRIDES):
            lens = conv_output_lengths(lens, k, s)
        return lens

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lens = _lengths_or_full(wavs, wav_lens)
        padded = bool((lens < wavs.shape[1]).any())
        x = wavs[:, None, :]
        for i, (conv, k, s) in enumerate(zip(self.convs, CNN_KERNELS, CNN_STRIDES)):
            x = conv(x)
            lens = conv_output_lengths(lens, k, s)
            if self.norm == "group_norm" and i == 0:
                if padded:
                    x = masked_channel_norm(x, padding_mask(lens, x.shape[-1]))
                    x = x * self.norm_weight[0, :, None] + self.norm_bias[0, :, None]
                else:  # the same numbers in one fused kernel: nothing to exclude
                    x = F.group_norm(x.float(), self.dim, self.norm_weight[0], self.norm_bias[0], eps=1e-5)
            elif self.norm == "layer_norm":
                x = F.layer_norm(
                    x.transpose(1, 2).float(), (self.dim,), self.norm_weight[i], self.norm_bias[i]
                )
                x = x.transpose(1, 2)
            x = F.gelu(x)
        x = x.transpose(1, 2)
        if not padded:
            return x, lens
        return x.masked_fill(~padding_mask(lens, x.shape[1])[..., None], 0.0), lens


@functools.cache
def _mel_banks(n_mels: int) -> torch.Tensor:
    """Kaldi's triangular mel filters [n_mels, FFT/2 + 1] (20 Hz to Nyquist), from torchaudio.

    Made outside inference mode even when first asked for inside it (feature extraction): the
    cached tensor is reused by training, where an inference tensor cannot enter autograd.
    """
    with torch.inference_mode(False):
        banks, _ = kaldi.get_mel_banks(n_mels, FBANK_FFT, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0)
        return F.pad(banks.float(), (0, 1))


def fbank_lengths(wav_lens: torch.Tensor) -> torch.Tensor:
    """Kaldi frame counts (snip_edges): only windows that fit entirely inside the utterance."""
    return conv_output_lengths(wav_lens.long(), FBANK_WINDOW, FBANK_SHIFT)


def kaldi_fbank(
    wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, n_mels: int = 80
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel fbank [B, F, n_mels] equal to torchaudio.compliance.kaldi.fbank per utterance.

    Same recipe as kaldi.fbank with its defaults and dither=0 (per-frame DC removal,
    pre-emphasis 0.97, Povey window, 512-point power spectrum), batched: kaldi.fbank
    takes one utterance at a time. Frames past an utterance's length are zero.
    """
    lens = fbank_lengths(_lengths_or_full(wavs, wav_lens))
    with torch.autocast(wavs.device.type, enabled=False):
        wavs = wavs.float()
        if wavs.shape[1] < FBANK_WINDOW:
            return wavs.new_zeros(wavs.shape[0], 0, n_mels), lens
        frames = wavs.unfold(1, FBANK_WINDOW, FBANK_SHIFT)
        frames = frames - frames.mean(-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - 0.97 * previous
        window = torch.hann_window(FBANK_WINDOW, periodic=False, device=wavs.device).pow(0.85)
        power = torch.fft.rfft(frames * window, n=FBANK_FFT).abs().square()
        mel = power @ _mel_banks(n_mels).to(wavs.device).T
        logmel = mel.clamp(min=torch.finfo(torch.float32).eps).log()
    return logmel.masked_fill(~padding_mask(lens, logmel.shape[1])[..., None], 0.0), lens


class FbankFrontend(nn.Module):
    """Fast-HuBERT's front-end: 80-d log-mel fbank, CMVN, two stride-2 convs -> 40 ms frames.

    Much cheaper than the waveform CNN (which costs ~90% of a CPU training step).
    Each conv has kernel 3, padding 1 and zeroes padded frames after it, so
    T = ceil(ceil(F / 2) / 2) for F fbank frames, and padding never leaks.
    """

    frame_rate = 25.0

    def __init__(
        self, channels: int = 512, n_mels: int = 80, subsampling: str = "conv1d", cmvn: bool = True
    ) -> None:
        super().__init__()
        check_choice("frontend", "subsampling", subsampling, ("conv1d", "conv2d"))
        self.dim = channels
        self.n_mels = n_mels
        self.subsampling = subsampling
        self.cmvn = cmvn
        if subsampling == "conv1d":
            self.convs = nn.ModuleList(
                [nn.Conv1d(n_mels, channels, 3, 2, padding=1), nn.Conv1d(channels, channels, 3, 2, padding=1)]
            )
            self.out = nn.Identity()
        else:
            self.convs = nn.ModuleList(
                [nn.Conv2d(1, channels, 3, 2, padding=1), nn.Conv2d(channels, channels, 3, 2, padding=1)]
            )
            self.out = nn.Linear(channels * math.ceil(math.ceil(n_mels / 2) / 2), channels)

    def output_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        lens = fbank_lengths(wav_lens)
        for _ in self.convs:
            lens = conv_output_lengths(lens, 3, 2, padding=1)
        return lens

    def features(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised fbank [B, F, n_mels] at 100 Hz, before subsampling (BEST-RQ's target input)."""
        feats, lens = kaldi_fbank(wavs * KALDI_SCALE, wav_lens, self.n_mels)
        if self.cmvn:
            valid = padding_mask(lens, feats.shape[1])[..., None]
            n = lens.clamp(min=1)[:, None, None].float()
            mean = feats.sum(1, keepdim=True) / n  # padded frames are already zero
            var = ((feats - mean).square() * valid).sum(1, keepdim=True) / n
            feats = ((feats - mean) * torch.rsqrt(var + 1e-5)).masked_fill(~valid, 0.0)
        return feats, lens

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats, lens = self.features(wavs, wav_lens)
        x = feats.transpose(1, 2) if self.subsampling == "conv1d" else feats[:, None]  # time on dim 2
        for conv in self.convs:
            x = F.gelu(conv(x))
            lens = conv_output_lengths(lens, 3, 2, padding=1)
            valid = padding_mask(lens, x.shape[2])
            x = x * (valid[:, None, :] if x.dim() == 3 else valid[:, None, :, None]).to(x.dtype)
        x = x.transpose(1, 2) if x.dim() == 3 else self.out(x.permute(0, 2, 1, 3).flatten(2))
        return x.masked_fill(~padding_mask(lens, x.shape[1])[..., None], 0.0), lens


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x unchanged forward; its gradient multiplied by `scale` backward.

    The front-end learning slower than the encoder: fairseq's `feature_grad_mult`.
    """
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)
