"""Building blocks shared by the pre-training methods, so any objective runs on any encoder.

frontends         waveform CNN (20 ms) and Fast-HuBERT fbank + subsampling (40 ms)
context           Transformer / Conformer / SummaryMixing layers and `ContextEncoder`
summarymixing     SummaryMixing, the linear-time replacement for self-attention
masking           span masks, learned mask embedding, BEST-RQ noise replacement
utterance_mixing  WavLM's utterance mixing (overlapped speech, clean targets)

Config dataclasses round-trip through config.json with `evalkit.core.config.SerialisableConfig`.
"""

from __future__ import annotations

from torch import nn

from upstreams.modules.context import (
    ENCODER_KINDS,
    ConformerLayer,
    ContextEncoder,
    ConvPositionalEmbedding,
    EncoderConfig,
    SelfAttention,
    TransformerLayer,
    build_layer,
)
from upstreams.modules.frontends import (
    FbankFrontend,
    FrontendConfig,
    WaveformCNN,
    build_frontend,
    fbank_lengths,
    kaldi_fbank,
    scale_gradient,
)
from upstreams.modules.masking import MaskEmbedding, NoiseReplacement, compute_span_mask, replace_with_noise
from upstreams.modules.summarymixing import SummaryMixing
from upstreams.modules.utterance_mixing import mix_utterances


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (e.g. for the model card and the 'X% smaller' claims)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ENCODER_KINDS",
    "ConformerLayer",
    "ContextEncoder",
    "ConvPositionalEmbedding",
    "EncoderConfig",
    "FbankFrontend",
    "FrontendConfig",
    "MaskEmbedding",
    "NoiseReplacement",
    "SelfAttention",
    "SummaryMixing",
    "TransformerLayer",
    "WaveformCNN",
    "build_frontend",
    "build_layer",
    "compute_span_mask",
    "count_parameters",
    "fbank_lengths",
    "kaldi_fbank",
    "replace_with_noise",
    "scale_gradient",
    "mix_utterances",
]
