"""The weighted layer sum: how a task reads a frozen upstream (s3prl's featurizer).

Layer weights start at zero, so the softmax starts uniform; they train with
the head, and the learned distribution goes into the result file, showing
which layers a task uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightedLayerSum(nn.Module):
    """softmax(w)-weighted sum of L hidden states [L, B, T, D] -> [B, T, D].

    `layer` picks one layer instead (no weights); `layer_norm` normalises each
    layer over D before weighting (off by default, as in s3prl).
    """

    def __init__(self, num_layers: int, layer: int | None = None, layer_norm: bool = False) -> None:
        super().__init__()
        if layer is not None and not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range for an upstream with {num_layers} hidden states")
        self.num_layers = num_layers
        self.layer = layer
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(num_layers)) if layer is None and num_layers > 1 else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[0] != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers, got {hidden.shape[0]}")
        if self.layer is not None:
            x = hidden[self.layer]
            return F.layer_norm(x, x.shape[-1:]) if self.layer_norm else x
        if self.layer_norm:
            hidden = F.layer_norm(hidden, hidden.shape[-1:])
        if self.weights is None:
            return hidden[0]
        w = F.softmax(self.weights, dim=0)
        return torch.einsum("l,lbtd->btd", w.to(hidden.dtype), hidden)

    def layer_weights(self) -> list[float]:
        """The normalised weights (one-hot for a single layer), for the result file."""
        if self.weights is None:
            w = torch.zeros(self.num_layers)
            w[self.layer if self.layer is not None else 0] = 1.0
            return w.tolist()
        return F.softmax(self.weights.detach(), dim=0).tolist()
