"""Context encoders (Transformer, Conformer, SummaryMixing) behind one `ContextEncoder`.

Every layer takes `valid` [B, T] bool, True where a frame is real (not
padding) — the same convention as `upstreams.base.padding_mask` — and no
layer lets padded frames change valid ones: attention masks padded keys,
convolutions see padded frames as zeros, SummaryMixing averages valid frames
only. So an utterance gives the same output alone or padded in a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.config import SerialisableConfig, check_choice, check_positive, check_probability
from evalkit.core.errors import ConfigError
from upstreams.modules.summarymixing import SummaryMixing

ENCODER_KINDS = ("transformer", "conformer", "summarymixing")


@dataclass
class EncoderConfig(SerialisableConfig):
    """Context encoder sizes. Defaults: HuBERT / wav2vec 2.0 Base (post-LN, 12 x 768)."""

    kind: str = "transformer"  # "transformer" | "conformer" | "summarymixing"
    dim: int = 768
    layers: int = 12
    heads: int = 12  # attention heads (transformer, conformer)
    ffn_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    input_dropout: float = 0.1  # after the input projection (fairseq's dropout_input)
    layerdrop: float = 0.05  # probability of skipping a layer in training (needs DDP find_unused_parameters)
    norm_first: bool = False  # pre-LN; Base models are post-LN. Conformer blocks ignore it (always pre-LN)
    pos_conv_kernel: int = 128  # 0 disables the convolutional positional embedding
    pos_conv_groups: int = 16
    pos_conv_weight_norm: bool = True
    conv_kernel: int = 31  # conformer depthwise conv, odd
    conv_norm: str = "layer_norm"  # conformer: "layer_norm" | "batch_norm" (padding-safe in eval only)
    summary_dim: int = 0  # SummaryMixing hidden width of f and s; 0 means dim

    def __post_init__(self) -> None:
        check_choice("encoder", "kind", self.kind, ENCODER_KINDS)
        check_choice("encoder", "conv_norm", self.conv_norm, ("layer_norm", "batch_norm"))
        check_positive("encoder", dim=self.dim, layers=self.layers, heads=self.heads, ffn_dim=self.ffn_dim)
        check_probability(
            "encoder",
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
            input_dropout=self.input_dropout,
            layerdrop=self.layerdrop,
        )
        if self.kind != "summarymixing" and self.dim % self.heads:
            raise ConfigError(f"encoder.dim ({self.dim}) must be divisible by encoder.heads ({self.heads}).")
        if self.pos_conv_kernel < 0 or (self.pos_conv_kernel and self.dim % self.pos_conv_groups):
            raise ConfigError(
                f"encoder.pos_conv_kernel ({self.pos_conv_kernel}) must be >= 0 and encoder.dim ({self.dim}) "
                f"divisible by encoder.pos_conv_groups ({self.pos_conv_groups})."
            )
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ConfigError(f"encoder.conv_kernel must be a positive odd number; got {self.conv_kernel}.")
        if self.summary_dim < 0:
            raise ConfigError(f"encoder.summary_dim must be >= 0 (0 means dim); got {self.summary_dim}.")


def zero_padding(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """x [B, T, D] with the padded frames set to zero."""
    return x.masked_fill(~valid[..., None], 0.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention over valid keys, via scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=valid[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


def feed_forward(
    dim: int, hidden: int, dropout: float, activation_dropout: float, act: type
) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, hidden),
        act(),
        nn.Dropout(activation_dropout),
        nn.Linear(hidden, dim),
        nn.Dropout(dropout),
    )


class TransformerLayer(nn.Module):
    """Mixer (self-attention or SummaryMixing) + GELU FFN, each with a residual; pre- or post-LN."""

    def __init__(
        self,
        dim: int,
        mixer: nn.Module,
        ffn_dim: int,
        dropout: float,
        activation_dropout: float,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.mixer = mixer
        self.mixer_norm = nn.LayerNorm(dim)
        self.mixer_dropout = nn.Dropout(dropout)
        self.ffn = feed_forward(dim, ffn_dim, dropout, activation_dropout, nn.GELU)
        self.ffn_norm = nn.LayerNorm(dim)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.mixer_dropout(self.mixer(self.mixer_norm(x), valid))
            return x + self.ffn(self.ffn_norm(x))
        x = self.mixer_norm(x + self.mixer_dropout(self.mixer(x, valid)))
        return self.ffn_norm(x + self.ffn(x))


class ConformerConvModule(nn.Module):
    """LN, pointwise, GLU, depthwise conv over zeroed padding, LN/BN, swish, pointwise, dropout."""

    def __init__(self, dim: int, kernel: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.conv_norm = nn.LayerNorm(dim) if norm == "layer_norm" else nn.BatchNorm1d(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        x = self.depthwise(zero_padding(x, valid).transpose(1, 2))
        if isinstance(self.conv_norm, nn.LayerNorm):
            x = self.conv_norm(x.transpose(1, 2))
        else:
            x = self.conv_norm(x).transpose(1, 2)
        return self.dropout(self.pointwise_out(F.silu(x)))


class ConformerLayer(nn.Module):
    """Macaron block: x + FFN/2, + MHSA, + conv module, + FFN/2, then LayerNorm."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        c = config
        self.ffn1 = nn.Sequential(
            nn.LayerNorm(c.dim), feed_forward(c.dim, c.ffn_dim, c.dropout, c.activation_dropout, nn.SiLU)
        )
        self.attention_norm = nn.LayerNorm(c.dim)
        self.attention = SelfAttention(c.dim, c.heads, c.attention_dropout)
        self.attention_dropout = nn.Dropout(c.dropout)
        self.conv = ConformerConvModule(c.dim, c.conv_kernel, c.conv_norm, c.dropout)
        self.ffn2 = nn.Sequential(
            nn.LayerNorm(c.dim), feed_forward(c.dim, c.ffn_dim, c.dropout, c.activation_dropout, nn.SiLU)
        )
        self.out_norm = nn.LayerNorm(c.dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), valid))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ffn2(x)
        return self.out_norm(x)


class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's relative positional embedding: GELU(grouped Conv1d) over zeroed padding.

    Base uses kernel 128, 16 groups and weight norm; tiny CPU models want a small
    kernel, as this conv is costly there. An even kernel yields one extra frame,
    which is dropped.
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16, weight_norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(self.conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(self.conv.bias)
        if weight_norm:
            self.conv = nn.utils.parametrizations.weight_norm(self.conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.conv(zero_padding(x, valid).transpose(1, 2))
        if self.trim:
            y = y[..., : -self.trim]
        return F.gelu(y).transpose(1, 2)


def build_layer(config: EncoderConfig) -> nn.Module:
    c = config
    if c.kind == "conformer":
        return ConformerLayer(c)
    if c.kind == "summarymixing":
        mixer: nn.Module = SummaryMixing(c.dim, c.summary_dim or c.dim)
    else:
        mixer = SelfAttention(c.dim, c.heads, c.attention_dropout)
    return TransformerLayer(c.dim, mixer, c.ffn_dim, c.dropout, c.activation_dropout, c.norm_first)


class ContextEncoder(nn.Module):
    """Front-end features -> every hidden state, per the upstream contract.

    `project` (LayerNorm on the features, linear to `dim`, dropout) is split from
    `contextualise` (positional conv, layers) so that a method can corrupt the
    projected frames in between; `forward` does both, with an optional masker.
    hidden[0] is the input of the first layer (after the positional conv, and
    the LayerNorm in post-LN mode); hidden[i] is layer i's output. Pre-LN
    transformers apply their final LayerNorm to the last layer's output only.
    """

    def __init__(self, in_dim: int, config: EncoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.feature_norm = nn.LayerNorm(in_dim)
        self.projection = nn.Linear(in_dim, c.dim)
        self.input_dropout = nn.Dropout(c.input_dropout)
        self.positional = (
            ConvPositionalEmbedding(c.dim, c.pos_conv_kernel, c.pos_conv_groups, c.pos_conv_weight_norm)
            if c.pos_conv_kernel
            else None
        )
        pre_ln = c.norm_first or c.kind == "conformer"
        self.input_norm = None if pre_ln else nn.LayerNorm(c.dim)
        self.final_norm = nn.LayerNorm(c.dim) if c.norm_first and c.kind != "conformer" else None
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(build_layer(c) for _ in range(c.layers))
        for module in self.modules():
            if isinstance(module, nn.Linear):  # BERT-style init, as fairseq's encoders
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def num_hidden(self) -> int:
        """How many hidden states a full forward returns (layers + 1)."""
        return self.config.layers + 1

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.input_dropout(self.projection(self.feature_norm(features)))

    def contextualise(
        self, x: torch.Tensor, valid: torch.Tensor, upto: int | None = None
    ) -> list[torch.Tensor]:
        """Hidden states 0..upto (all by default); layers past `upto` are not run."""
        n_layers = self.config.layers if upto is None else upto
        if not 0 <= n_layers <= self.config.layers:
            raise ValueError(f"upto must lie in [0, {self.config.layers}]; got {upto}")
        x = zero_padding(x, valid)
        if self.positional is not None:
            x = x + self.positional(x, valid)
        if self.input_norm is not None:
            x = self.input_norm(x)
        x = zero_padding(self.dropout(x), valid)
        hidden = [x]
        for i, layer in enumerate(self.layers[:n_layers]):
            skip = (
                self.training and self.config.layerdrop > 0 and float(torch.rand(())) < self.config.layerdrop
            )
            if not skip:
                x = layer(x, valid)
            if self.final_norm is not None and i == self.config.layers - 1:
                x = self.final_norm(x)
            x = zero_padding(x, valid)
            hidden.append(x)
        return hidden

    def forward(
        self,
        features: torch.Tensor,
        valid: torch.Tensor,
        mask: torch.Tensor | None = None,
        masker: nn.Module | None = None,
        upto: int | None = None,
    ) -> list[torch.Tensor]:
        """Hidden states for features [B, T, in_dim]; `masker(x, mask)` corrupts projected frames first."""
        x = self.project(features)
        if mask is not None:
            if masker is None:
                raise ValueError("a mask needs a masker (e.g. MaskEmbedding) to replace the masked frames")
            x = masker(x, mask)
        return self.contextualise(x, valid, upto)
