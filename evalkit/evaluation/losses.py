"""Losses with more to them than a call to torch: AM-softmax for speaker embeddings, permutation-invariant BCE for diarization."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from upstreams.base import padding_mask


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax (CosFace): CE on scale * (cos - margin at the true class).

    forward returns (loss, logits) where logits = scale * cos without the
    margin, i.e. what prediction uses.
    """

    def __init__(self, embed_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = F.normalize(embeddings, dim=-1) @ F.normalize(self.weight, dim=-1).T
        margin = self.margin * F.one_hot(labels, cos.shape[-1]).to(cos.dtype)
        loss = F.cross_entropy(self.scale * (cos - margin), labels)
        return loss, self.scale * cos


def pit_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, lens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant BCE: per utterance, the speaker order of `labels` that fits best.

    Returns the loss, a mean over all valid (frame, speaker) entries of the batch
    (so it equals plain masked BCE when labels are already in the best order), and
    `perms` [B, S]: utterance b is scored against `labels[b][:, perms[b]]`.
    """
    n_spk = logits.shape[-1]
    valid = padding_mask(lens, logits.shape[1]).unsqueeze(-1).to(logits.dtype)
    perms = torch.tensor(list(itertools.permutations(range(n_spk))), device=logits.device)
    per_perm = torch.stack(
        [
            (F.binary_cross_entropy_with_logits(logits, labels[..., p], reduction="none") * valid).sum((1, 2))
            for p in perms
        ]
    )
    best_cost, best = per_perm.min(0)
    loss = best_cost.sum() / (valid.sum() * n_spk).clamp(min=1)
    return loss, perms[best]
