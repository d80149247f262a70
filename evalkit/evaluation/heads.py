"""Downstream heads of the SUPERB tasks, plus the second heads MP3S argues for.

Every head is an `nn.Module` called as `head(x, lens)`: `x` [B, T, D] is the
featurizer's output, zero-padded, and `lens` [B] the valid frame counts. Every
head masks padding itself (whatever the padded frames hold), so an utterance
alone and the same utterance padded in a batch give the same output in eval
mode; tests/evaluation/test_heads.py checks this for each head. Sizes are constructor
arguments with CPU-sized defaults; task YAMLs name a head by its registry key
(`type: mean_pool_linear`) and pass the rest as keyword arguments.

What each kind returns (the losses are in `losses.py`, the decoders in `decoders.py`, and the
task kinds that use both in `kinds/`):
  classification  logits [B, C], or a list of them when `n_classes` is a list (IC slots)
  CTC             (log_probs [B, T, V], lens); `decoders.greedy_decode` turns them into label ids
  speaker         embeddings [B, E]; `losses.AMSoftmaxLoss` trains them, `decoders.cosine_score`
                  scores trials
  diarization     per-frame speaker-activity logits [B, T, S]; `losses.pit_bce_loss` trains them

Why one module: the heads of all kinds are built from the same masked pieces (`PaddedLSTM`,
`masked_mean`/`masked_stats`, `repeat_frames`, the output layers), which would otherwise become a
public API of their own; one registry and one padding-invariance test cover them all. It is due to
become a package (one module per kind, these pieces in a base module) when it grows further.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.errors import ConfigError
from evalkit.core.registry import Registry
from upstreams.base import padding_mask

HEADS = Registry("head")


def _valid(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """[B, T, 1] float mask of valid frames."""
    return padding_mask(lens, x.shape[1]).unsqueeze(-1).to(x.dtype)


def masked_mean(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean over the valid frames of each utterance: [B, T, D] -> [B, D]."""
    return (x * _valid(x, lens)).sum(1) / lens.clamp(min=1).to(x.dtype).unsqueeze(-1)


def _class_sizes(n_classes: int | Sequence[int]) -> list[int]:
    sizes = [n_classes] if isinstance(n_classes, int) else list(n_classes)
    if not sizes or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise ConfigError(
            f"head n_classes={n_classes!r}: give a positive int, or a list of them (one per output slot)"
        )
    return sizes


class _Outputs(nn.Module):
    """One Linear per output slot; returns one tensor for an int n_classes, a list for a list."""

    def __init__(self, dim: int, n_classes: int | Sequence[int]) -> None:
        super().__init__()
        self.single = isinstance(n_classes, int)
        self.layers = nn.ModuleList(nn.Linear(dim, n) for n in _class_sizes(n_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        logits = [layer(pooled) for layer in self.layers]
        return logits[0] if self.single else logits


def reverse_valid(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `lens[b]` frames in place; padded frames stay where they are."""
    t = torch.arange(x.shape[1], device=x.device)
    lens = lens.to(x.device).unsqueeze(1)
    idx = torch.where(t < lens, lens - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class PaddedLSTM(nn.Module):
    """A (bi)LSTM over zero-padded batches that sees only each utterance's valid frames.

    Exactly what `nn.LSTM` on a `PackedSequence` computes, without packing: the
    forward direction runs on the padded batch (padding only follows the valid
    frames, so it never reaches them), and the backward direction runs forward
    over each utterance reversed within its length. On CPU this is ~10x faster
    than a packed sequence: a BiLSTM 2x128 on [8, 400, 128] took 0.21 s forward
    + backward against 2.2 s packed (bench/lstm.py). Outputs at padded frames are zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_layers, self.bidirectional = num_layers, bidirectional
        dirs = 2 if bidirectional else 1
        self.fwd = nn.ModuleList(
            nn.LSTM(input_size if i == 0 else dirs * hidden, hidden, batch_first=True)
            for i in range(num_layers)
        )
        self.bwd = (
            nn.ModuleList(
                nn.LSTM(input_size if i == 0 else dirs * hidden, hidden, batch_first=True)
                for i in range(num_layers)
            )
            if bidirectional
            else None
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        valid = padding_mask(lens.to(x.device), x.shape[1])
        for i in range(self.num_layers):
            if i:
                x = self.dropout(x)
            out = self.fwd[i](x)[0]
            if self.bwd is not None:
                back = reverse_valid(self.bwd[i](reverse_valid(x, lens))[0], lens)
                out = torch.cat([out, back], dim=-1)
            x = out * valid.unsqueeze(-1)
        return x


@HEADS.register("mean_pool_linear")
class MeanPoolLinear(nn.Module):
    """SUPERB's utterance head: Linear(D -> hidden), mean over valid frames, Linear per slot."""

    def __init__(self, input_dim: int, n_classes: int | Sequence[int], hidden: int = 256) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden)
        self.out = _Outputs(hidden, n_classes)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.out(masked_mean(self.proj(x), lens))


@HEADS.register("bilstm_pool")
class BiLSTMPool(nn.Module):
    """Second utterance head (MP3S): a 1-layer BiLSTM sees frame order before the mean-pool."""

    def __init__(
        self, input_dim: int, n_classes: int | Sequence[int], hidden: int = 256, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.lstm = PaddedLSTM(input_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = _Outputs(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.out(self.dropout(masked_mean(self.lstm(x, lens), lens)))


# --- CTC sequence heads (PR, ASR, SF) ----------------------------------------------------------


def repeat_frames(x: torch.Tensor, lens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame `k` times, [B, T, D] -> [B, kT, D], so that CTC has room for its labels and blanks."""
    if k == 1:
        return x, lens
    return x.repeat_interleave(k, dim=1), lens * k


@HEADS.register("linear_ctc")
class LinearCTC(nn.Module):
    """SUPERB's PR head: a linear probe to the label set, trained with CTC.

    `proj` puts a linear bottleneck of that width first, with no nonlinearity between (s3prl's PR:
    Linear(D, 256) then Linear(256, vocab), downstream/ctc/expert.py:36-44); still a linear map.
    """

    def __init__(self, input_dim: int, vocab_size: int, upsample: int = 1, proj: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, proj) if proj else nn.Identity()
        self.out = nn.Linear(proj or input_dim, vocab_size)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = repeat_frames(x, lens, self.upsample)
        return F.log_softmax(self.out(self.proj(x)), dim=-1), lens


@HEADS.register("bilstm_ctc")
class BiLSTMCTC(nn.Module):
    """SUPERB's ASR/SF head (2-layer BiLSTM + CTC), sized down for CPU by default."""

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        proj: int = 256,
        hidden: int = 256,
        num_layers: int = 2,
        dropout: float = 0.2,
        upsample: int = 1,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.proj = nn.Linear(input_dim, proj)
        self.lstm = PaddedLSTM(
            proj, hidden, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, vocab_size)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = repeat_frames(x, lens, self.upsample)
        h = self.lstm(self.proj(x), lens)
        return F.log_softmax(self.out(self.dropout(h)), dim=-1), lens


def attention_blocks(dim: int, heads: int, layers: int, dropout: float) -> nn.ModuleList:
    """`layers` pre-norm self-attention blocks of width `dim` (no positional encoding: what comes before
    them gives the frames' order); run them with `attend`."""
    return nn.ModuleList(
        nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True, norm_first=True)
        for _ in range(layers)
    )


def attend(blocks: nn.ModuleList, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """`h` [B, T, D] through `blocks`, each frame attending to the valid frames of its utterance only."""
    padded = ~padding_mask(lens.to(h.device), h.shape[1])
    for block in blocks:
        h = block(h, src_key_padding_mask=padded)
    return h


class _ConvBlock(nn.Module):
    """Conv1d -> GELU -> LayerNorm over channels -> dropout, with a residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"conv_ctc kernel_size={kernel_size}: use an odd size so frames stay centred")
        self.conv = nn.Conv1d(
            channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)
        )
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # Zeroing padded frames first makes the conv see exactly what its own zero padding
        # shows an utterance alone: that is what keeps the head padding-invariant.
        h = self.conv((x * valid).transpose(1, 2)).transpose(1, 2)
        return x + self.dropout(self.norm(F.gelu(h)))


@HEADS.register("conv_ctc")
class ConvCTC(nn.Module):
    """Second ASR head (MP3S spirit): a small non-recurrent model, dilated residual convs + CTC."""

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        channels: int = 256,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2, 4),
        dropout: float = 0.1,
        upsample: int = 1,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.proj = nn.Linear(input_dim, channels)
        self.blocks = nn.ModuleList(_ConvBlock(channels, kernel_size, d, dropout) for d in dilations)
        self.out = nn.Linear(channels, vocab_size)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = repeat_frames(x, lens, self.upsample)
        valid = _valid(x, lens)
        h = self.proj(x)
        for block in self.blocks:
            h = block(h, valid)
        return F.log_softmax(self.out(h), dim=-1), lens


@HEADS.register("attention_ctc")
class AttentionCTC(nn.Module):
    """A CTC head with self-attention (SF): optional convs and BiLSTM layers, then Transformer blocks.

    `Linear(D -> hidden)`, then `conv_layers` residual convs (`_ConvBlock`, kernel `kernel_size`), then
    `lstm_layers` BiLSTM layers of `hidden // 2` per direction, then `attention_layers` pre-norm
    Transformer encoder blocks (`attention_heads` heads, feed-forward 2 * hidden, `dropout`) that see
    only valid frames, then `Linear(hidden -> vocab)` and a log-softmax. Attention has no positional
    encoding: the convs or the BiLSTM give it the order of frames, so keep at least one of them.
    """

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        hidden: int = 256,
        conv_layers: int = 0,
        kernel_size: int = 5,
        lstm_layers: int = 1,
        attention_layers: int = 2,
        attention_heads: int = 4,
        dropout: float = 0.1,
        upsample: int = 1,
    ) -> None:
        super().__init__()
        if min(conv_layers, lstm_layers, attention_layers) < 0 or hidden % attention_heads or hidden % 2:
            raise ConfigError(
                f"attention_ctc: conv_layers={conv_layers}, lstm_layers={lstm_layers} and "
                f"attention_layers={attention_layers} must be >= 0, and hidden={hidden} even and a "
                f"multiple of attention_heads={attention_heads}"
            )
        if conv_layers + lstm_layers == 0 and attention_layers:
            raise ConfigError(
                "attention_ctc: self-attention alone does not see the order of frames: give "
                "conv_layers or lstm_layers > 0"
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"attention_ctc: dropout={dropout!r} must be in [0, 1)")
        self.upsample = upsample
        self.proj = nn.Linear(input_dim, hidden)
        self.convs = nn.ModuleList(_ConvBlock(hidden, kernel_size, 1, dropout) for _ in range(conv_layers))
        self.lstm = PaddedLSTM(hidden, hidden // 2, num_layers=lstm_layers) if lstm_layers else None
        self.attention = attention_blocks(hidden, attention_heads, attention_layers, dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = repeat_frames(x, lens, self.upsample)
        valid = _valid(x, lens)
        h = self.proj(x)
        for conv in self.convs:
            h = conv(h, valid)
        if self.lstm is not None:
            h = self.lstm(h, lens)
        h = attend(self.attention, h, lens)
        return F.log_softmax(self.out(h), dim=-1), lens


# --- speaker embeddings (ASV; ECAPA also for ER) -----------------------------------------------


def masked_stats(x: torch.Tensor, lens: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Statistics pooling: [mean, std] over the valid frames only, [B, T, C] -> [B, 2C]."""
    mean = masked_mean(x, lens)
    var = masked_mean((x - mean.unsqueeze(1)) ** 2, lens)
    return torch.cat([mean, var.clamp(min=eps).sqrt()], dim=-1)


class _FrameBatchNorm(nn.Module):
    """BatchNorm over valid frames only, so padding never enters the training statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        keep = valid.squeeze(-1).bool()
        out = torch.zeros_like(x)
        out[keep] = self.bn(x[keep])
        return out


@HEADS.register("xvector")
class XVector(nn.Module):
    """SUPERB's ASV head: 5 TDNN layers, stats pooling over valid frames, two Linear layers.

    By default the TDNN convs use zero "same" padding on masked input, with BatchNorm after each
    ReLU, so utterances shorter than the 15-frame context still work and frame counts stay equal
    to `lens`. s3prl's recipe (downstream/sv_voxceleb1/model.py) differs, and its arguments say
    how: `connector` = Linear(D, connector) first (expert.py:85, 512), `batch_norm=False`,
    `context="valid"` (F.unfold without padding: 14 frames fewer, at least one kept),
    `out_relu=True` (a ReLU after the second Linear, `UtteranceExtractor.forward`) and
    `test_embedding="first"` (scoring uses ReLU of the first Linear only, `.inference`).
    """

    kernels = (5, 3, 3, 1, 1)
    dilations = (1, 2, 3, 1, 1)

    def __init__(
        self,
        input_dim: int,
        channels: int = 256,
        stats_channels: int = 768,
        embed_dim: int = 256,
        connector: int | None = None,
        batch_norm: bool = True,
        context: str = "same",
        out_relu: bool = False,
        test_embedding: str = "last",
    ) -> None:
        super().__init__()
        if context not in ("same", "valid") or test_embedding not in ("last", "first"):
            raise ConfigError(
                f"xvector: context={context!r} must be 'same' or 'valid', test_embedding={test_embedding!r} "
                "'last' or 'first'"
            )
        self.connector = nn.Linear(input_dim, connector) if connector else None
        sizes = [connector or input_dim] + [channels] * 4 + [stats_channels]
        self.valid_context = context == "valid"
        self.convs = nn.ModuleList(
            nn.Conv1d(
                sizes[i], sizes[i + 1], k, dilation=d, padding=0 if self.valid_context else d * (k // 2)
            )
            for i, (k, d) in enumerate(zip(self.kernels, self.dilations))
        )
        self.norms = nn.ModuleList(_FrameBatchNorm(n) for n in sizes[1:]) if batch_norm else None
        self.segment = nn.Linear(2 * stats_channels, embed_dim)
        self.embed = nn.Linear(embed_dim, embed_dim)
        self.embed_dim = embed_dim
        self.out_relu, self.test_embedding = out_relu, test_embedding

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if self.connector is not None:
            x = self.connector(x)
        h = x * _valid(x, lens)
        for k, conv in enumerate(self.convs):
            if self.valid_context:  # each layer's output is shorter by its receptive field less one
                shrink = conv.dilation[0] * (conv.kernel_size[0] - 1)
                if h.shape[1] <= shrink:  # too short: pad with zeros up to one output frame
                    h = F.pad(h, (0, 0, 0, shrink + 1 - h.shape[1]))
                lens = (lens - shrink).clamp(min=1)
            h = F.relu(conv(h.transpose(1, 2)).transpose(1, 2))
            valid = _valid(h, lens)
            h = self.norms[k](h, valid) if self.norms is not None else h * valid
        segment = F.relu(self.segment(masked_stats(h, lens)))
        if self.test_embedding == "first" and not self.training:
            return segment
        out = self.embed(segment)
        return F.relu(out) if self.out_relu else out


class _EcapaEmbedder(nn.Module):
    """speechbrain's ECAPA-TDNN made padding-exact.

    Out of the box its convs reflect-pad at the edges and see padded frames
    inside a batch, so a padded utterance differs from itself alone. Here the
    convs zero-pad, and the output of every TDNN/SE-Res2Net block is re-masked,
    so every conv sees zeros past the last valid frame in both cases; its
    pooling already masks by relative lengths. Exact in eval mode; in training
    BatchNorm statistics still include padded frames (speechbrain's behaviour).
    """

    def __init__(
        self,
        input_dim: int,
        embed_dim: int,
        channels: Sequence[int],
        attention_channels: int,
        se_channels: int,
        res2net_scale: int,
    ) -> None:
        super().__init__()
        # deferred: speechbrain is a heavy import, needed only by the ECAPA heads
        from speechbrain.lobes.models import ECAPA_TDNN as sb
        from speechbrain.nnet.CNN import Conv1d

        channels = list(channels)
        if len(channels) != 5 or any(c % res2net_scale for c in channels[1:4]):
            raise ConfigError(
                f"ecapa channels={channels}: give 5 sizes, the middle three divisible by res2net_scale={res2net_scale}"
            )
        self.ecapa = sb.ECAPA_TDNN(
            input_dim,
            lin_neurons=embed_dim,
            channels=channels,
            attention_channels=attention_channels,
            se_channels=se_channels,
            res2net_scale=res2net_scale,
        )
        self._valid: torch.Tensor | None = None
        for module in self.ecapa.modules():
            if isinstance(module, Conv1d):
                module.padding_mode = "constant"
            if isinstance(module, sb.TDNNBlock | sb.SERes2NetBlock):
                module.register_forward_hook(self._remask)

    def _remask(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return out * self._valid if self._valid is not None else out

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        valid = _valid(x, lens)
        # speechbrain rebuilds the mask as arange(T) < rel_len * T; the half-frame offset keeps
        # float rounding of lens / T from admitting one padded frame.
        rel = (lens.to(torch.float64) - 0.5).clamp(min=0.5) / x.shape[1]
        self._valid = valid.transpose(1, 2)
        try:
            return self.ecapa(x * valid, rel.float()).squeeze(1)
        finally:
            self._valid = None


@HEADS.register("ecapa")
class ECAPA(nn.Module):
    """Second ASV head (MP3S): ECAPA-TDNN speaker embeddings [B, E], CPU-sized channels."""

    def __init__(
        self,
        input_dim: int,
        embed_dim: int = 192,
        channels: Sequence[int] = (256, 256, 256, 256, 768),
        attention_channels: int = 64,
        se_channels: int = 64,
        res2net_scale: int = 8,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedder = _EcapaEmbedder(
            input_dim, embed_dim, channels, attention_channels, se_channels, res2net_scale
        )

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        return self.embedder(x, lens)


@HEADS.register("ecapa_classifier")
class ECAPAClassifier(nn.Module):
    """Second ER head (MP3S): ECAPA embedding -> Linear per output slot."""

    def __init__(
        self,
        input_dim: int,
        n_classes: int | Sequence[int],
        embed_dim: int = 192,
        channels: Sequence[int] = (256, 256, 256, 256, 768),
        attention_channels: int = 64,
        se_channels: int = 64,
        res2net_scale: int = 8,
    ) -> None:
        super().__init__()
        self.embedder = _EcapaEmbedder(
            input_dim, embed_dim, channels, attention_channels, se_channels, res2net_scale
        )
        self.out = _Outputs(embed_dim, n_classes)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.out(self.embedder(x, lens))


# --- diarization (SD) --------------------------------------------------------------------------


@HEADS.register("lstm_diarizer")
class LSTMDiarizer(nn.Module):
    """SUPERB's SD head: an LSTM over frames, then per-frame speaker-activity logits [B, T, S].

    `attention_layers` > 0 adds self-attention blocks (pre-norm Transformer encoder layers, no
    positional encoding; `dropout` inside them) after it, and `num_layers=0` puts a linear projection in the LSTM's place:
    that is SA-EEND (Fujita et al., 2019), which compares every frame with every other one. An LSTM
    must carry the first talker's voice in its state to tell a frame of the other apart; it learned
    the training talkers' voices instead (tasks/sd/task.yaml has the numbers). `rate` (Hz) runs the
    head on frames averaged down from `input_rate` (the upstream's, which the diarization kind
    passes) to about that rate, and repeats each output over the frames it came from, so its
    output keeps the input's frames: attention costs frames squared.
    """

    def __init__(
        self,
        input_dim: int,
        n_speakers: int = 2,
        hidden: int = 256,
        num_layers: int = 1,
        bidirectional: bool = False,
        attention_layers: int = 0,
        attention_heads: int = 4,
        dropout: float = 0.0,
        rate: float | None = None,
        input_rate: float | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 0 or attention_layers < 0 or (attention_layers and hidden % attention_heads):
            raise ConfigError(
                f"lstm_diarizer: num_layers={num_layers} and attention_layers={attention_layers} must be >= 0, "
                f"and hidden={hidden} a multiple of attention_heads={attention_heads}"
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"lstm_diarizer: dropout={dropout!r} must be in [0, 1)")
        if rate is not None and not rate > 0:
            raise ConfigError(f"lstm_diarizer: rate={rate!r} must be a positive number of Hz (or null)")
        self.pool = max(1, round(input_rate / rate)) if rate and input_rate else 1
        dim = hidden * (2 if bidirectional and num_layers else 1)
        self.lstm = (
            PaddedLSTM(input_dim, hidden, num_layers=num_layers, bidirectional=bidirectional)
            if num_layers
            else nn.Linear(input_dim, dim)
        )
        self.attention = attention_blocks(dim, attention_heads, attention_layers, dropout)
        # No last LayerNorm after the pre-norm blocks: measured worse on the default suite (quick, 400
        # steps, test DER oracle 10.8% vs 7.7%, FBANK 45.9% vs 37.5%).
        self.out = nn.Linear(dim, n_speakers)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        frames, k = x.shape[1], self.pool
        if k > 1:  # the mean of each k valid frames; a last partial window averages what it has
            valid = _valid(x, lens)
            pad = (0, 0, 0, -frames % k)
            total = F.pad(x * valid, pad).unflatten(1, (-1, k)).sum(2)
            x = total / F.pad(valid, pad).unflatten(1, (-1, k)).sum(2).clamp(min=1)
            lens = (lens + k - 1) // k
        h = self.lstm(x, lens) if isinstance(self.lstm, PaddedLSTM) else self.lstm(x)
        h = attend(self.attention, h, lens)
        logits = self.out(h)
        return logits.repeat_interleave(k, dim=1)[:, :frames] if k > 1 else logits
