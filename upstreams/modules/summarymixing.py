"""SummaryMixing (Parcollet et al., 2023): the linear-time replacement for self-attention.

Each frame is mixed with one summary of the whole utterance (the mean of a projection over its
valid frames) instead of attending to every other frame, so a layer costs O(T) rather than
O(T^2). `EncoderConfig(kind="summarymixing")` builds Transformer-shaped layers around it
(`upstreams/modules/context.py`), so any pre-training method can use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SummaryMixing(nn.Module):
    """Linear-time replacement for self-attention (Parcollet et al.).

    out_t = GELU(c([f(x_t); mean over valid u of s(x_u)])). The combiner's linear
    map is split into a per-frame part and a per-utterance part (the same
    function as one linear on the concatenation), so the summary is projected
    once per utterance rather than once per frame.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())
        self.summary = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())
        self.combine_local = nn.Linear(hidden, dim)
        self.combine_summary = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        s = self.summary(x)
        weights = valid[..., None].float()
        mean = (s.float() * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
        return F.gelu(self.combine_local(self.local(x)) + self.combine_summary(mean.to(s.dtype)))
