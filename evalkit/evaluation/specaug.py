"""SpecAugment on the featurizer's output, as s3prl's ASR and SF recipes train (`specaug:` in a task).

s3prl applies it in training only, to the weighted sum of the upstream's layers,
before the task's head (s3prl/downstream/runner.py:303-304; the module is
s3prl/downstream/specaug.py, after ESPnet's): per utterance a time warp inside
its valid frames, then `freq_masks` bands of feature dimensions and
`time_masks` spans of frames set to zero. Widths are drawn from [low, high);
a mask's start is drawn over the batch's padded length (or the feature
dimension) less the widest mask of the batch, so a time mask may fall on
padding, as in s3prl.

The one-pass trainer trains several runs (heads, learning rates) on each batch;
`draw` makes one set of random choices that every run's features then get, so
the runs of a grid differ by their learning rate only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from evalkit.evaluation.task import SpecAugConfig


@dataclass
class Augmentation:
    """One batch's random choices: each utterance's time warp (or None) and its masks."""

    warps: list[tuple[int, int, int] | None]  # (valid frames, centre, warped centre)
    time_mask: torch.Tensor  # [B, T] bool
    freq_mask: torch.Tensor  # [B, D] bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] features -> augmented features (a new tensor; gradients flow through)."""
        rows = []
        for i, warp in enumerate(self.warps):
            if warp is None:
                rows.append(x[i])
                continue
            valid, centre, warped = warp
            y = x[i, :valid][None, None]  # [1, 1, valid, D]: interpolate along time only
            left = F.interpolate(y[:, :, :centre], (warped, y.shape[-1]), mode="bicubic", align_corners=False)
            right = F.interpolate(
                y[:, :, centre:], (valid - warped, y.shape[-1]), mode="bicubic", align_corners=False
            )
            rows.append(torch.cat([left[0, 0], right[0, 0], x[i, valid:]], dim=0))
        out = torch.stack(rows)
        mask = self.time_mask[:, :, None] | self.freq_mask[:, None, :]
        return out.masked_fill(mask.to(out.device), 0.0)


def draw(cfg: SpecAugConfig, lens: torch.Tensor, frames: int, dim: int) -> Augmentation:
    """Random choices for a batch of `frames` padded frames of `dim` features (torch's global RNG)."""
    warps: list[tuple[int, int, int] | None] = []
    window = cfg.time_warp
    for n in lens.tolist():
        if not window or n - window <= window:  # too short to warp (s3prl leaves it as it is)
            warps.append(None)
            continue
        centre = int(torch.randint(window, n - window, (1,)))
        warped = int(torch.randint(centre - window, centre + window, (1,))) + 1
        warps.append((n, centre, warped))
    batch = len(warps)
    # drawn in s3prl's order (warp, frequency, time), so that one seed makes the same choices
    freq_mask = _spans(batch, dim, cfg.freq_mask_width, cfg.freq_masks)
    time_mask = _spans(batch, frames, cfg.time_mask_width, cfg.time_masks)
    return Augmentation(warps, time_mask, freq_mask)


def _spans(batch: int, size: int, width: list[int], count: int) -> torch.Tensor:
    """[batch, size] bool: `count` spans per row, widths in [low, high), starts below size - widest."""
    if not count:
        return torch.zeros(batch, size, dtype=torch.bool)
    widths = torch.randint(width[0], width[1], (batch, count))[:, :, None]
    starts = torch.randint(0, max(1, size - int(widths.max())), (batch, count))[:, :, None]
    at = torch.arange(size)[None, None, :]
    return ((starts <= at) & (at < starts + widths)).any(dim=1)
