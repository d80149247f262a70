"""Span masking, the corruption shared by HuBERT, wav2vec 2.0 and BEST-RQ.

`mask_prob` follows fairseq's meaning: the fraction of frames that would be
masked if spans never overlapped. An utterance of T valid frames gets
round(mask_prob * T / span) distinct span starts, so HuBERT's mask_prob=0.8,
span=10 makes 8% of the frames start a span (about half the frames end up
masked once overlaps merge) and wav2vec 2.0's 0.65 makes 6.5%.

Unlike fairseq, utterances of one batch are not trimmed to the same number of
masked frames: losses select masked frames with a boolean index, so equal
counts buy nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.errors import ConfigError
from upstreams.base import padding_mask


def compute_span_mask(
    lens: torch.Tensor,
    mask_prob: float,
    span: int,
    *,
    min_masks: int = 0,
    max_len: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[B, T] bool, True where a frame is masked; only valid frames are ever masked.

    Starts are drawn without replacement among the positions where a whole span
    fits inside the valid frames (among all valid frames when the utterance is
    shorter than a span, the span then being clipped). Deterministic given
    `generator` (a CPU generator; the mask is moved to `lens.device`).
    """
    if mask_prob < 0 or span < 1 or min_masks < 0:
        raise ConfigError(
            f"span masking needs mask_prob >= 0, span >= 1 and min_masks >= 0; got mask_prob={mask_prob}, "
            f"span={span}, min_masks={min_masks}. Fix these keys in the pre-training config."
        )
    device = lens.device
    lens = lens.detach().to("cpu", torch.long)
    total = int(lens.max()) if max_len is None else max_len
    if total == 0 or lens.numel() == 0:
        return torch.zeros(lens.numel(), total, dtype=torch.bool, device=device)

    candidates = (lens - span + 1).clamp(min=1)  # positions where a span may start
    wanted = torch.round(mask_prob * lens.double() / span).long().clamp(min=min_masks)
    n_starts = torch.minimum(wanted, candidates) * (lens > 0)

    # A uniformly random subset of k candidates per row: the k smallest of i.i.d. uniform scores.
    scores = torch.rand(lens.numel(), total, generator=generator)
    scores = scores.masked_fill(~padding_mask(candidates, total), 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    starts = rank < n_starts[:, None]

    # Dilate every start into a span: frame t is masked if a start lies in (t - span, t].
    covered = F.max_pool1d(F.pad(starts[:, None].float(), (span - 1, 0)), kernel_size=span, stride=1)[:, 0]
    return (covered.bool() & padding_mask(lens, total)).to(device)


class MaskEmbedding(nn.Module):
    """Replaces masked frames by one learned vector (HuBERT, wav2vec 2.0)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(dim).uniform_())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask[..., None], self.embedding.to(x.dtype), x)


def replace_with_noise(
    x: torch.Tensor, mask: torch.Tensor, std: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replaces masked frames by N(0, std²) noise, as BEST-RQ does to its input features.

    Noise is drawn on the CPU when a generator is given, so a seed reproduces it on any device.
    """
    if generator is None:
        noise = torch.randn_like(x)
    else:
        noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return torch.where(mask[..., None], noise * std, x)


class NoiseReplacement(nn.Module):
    """`replace_with_noise` as a module, interchangeable with `MaskEmbedding` as a masker."""

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return replace_with_noise(x, mask, self.std)
