"""BEST-RQ (Chiu et al., 2022): masked prediction of a frozen random-projection quantizer's codes.

The targets need no training and no k-means. The log-mel fbank, normalised per
utterance or with corpus statistics (`target_norm`), is stacked to the encoder's
frame rate (4 × 10 ms frames for the 40 ms fbank front-end, 2 for the 20 ms
CNN), projected by a frozen random matrix (Xavier init) and L2-normalised; a
frame's target is the nearest vector of a frozen random codebook of
L2-normalised vectors (the largest cosine). The encoder sees
span-masked frames replaced by N(0, 0.1²) noise, and a linear head predicts the
codes of the masked frames (cross-entropy on those frames only).

Only the encoder and the head learn. The projection and codebook are buffers:
not trained, but saved with the training state, so a resumed run keeps its
targets. Defaults are the paper's (one 8192 × 16 codebook, 400 ms spans);
`configs/pretrain/bestrq-*.yaml` hold the recipes. The small recipe departs
from the paper in one way that matters here: its front-end stays at its random
initialisation (`frontend_grad_scale: 0`). Learned, the front-end dropped the
speaker information that the random one keeps, and the upstream scored below
its own random-init twin (the trials are in the recipe's header).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.audio import SAMPLE_RATE, load_audio
from evalkit.core.config import SerialisableConfig, check_positive
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.manifest import audio_path
from upstreams.base import padding_mask
from upstreams.encoder import SSLEncoder
from upstreams.kmeans_targets import aligned_phones, cluster_quality
from upstreams.modules import NoiseReplacement, compute_span_mask, kaldi_fbank, mix_utterances, scale_gradient
from upstreams.modules.frontends import KALDI_SCALE
from upstreams.objective import Batch, Objective, Output, PretrainData

FBANK_RATE = 100.0  # Kaldi fbank frames per second
QUALITY_FILE = "target_quality.json"
STATS_FILE = "fbank_stats.json"  # target_norm "global": the corpus mean and std per mel bin


@dataclass
class BestRQConfig(SerialisableConfig):
    """The objective's settings (the `objective:` section of a recipe). Defaults: the paper's."""

    codebook_size: int = 8192
    codebook_dim: int = 16
    codebooks: int = 1  # independent quantizers, each with its own projection and head
    n_mels: int = 80  # of the target fbank, whatever the front-end uses
    mask_prob: float = 0.4  # fairseq's meaning: 4% of frames start a span (the paper: 1% of 10 ms frames)
    mask_span: int = 10  # frames: 400 ms at 40 ms
    mask_min_spans: int = 1  # per utterance, so that every utterance has a loss
    noise_std: float = 0.1
    # < 1: the front-end learns that much slower (wav2vec 2.0's feature_grad_mult); 0: it keeps its
    # random initialisation (frozen: no gradient, no weight decay), as the frozen target projection does.
    frontend_grad_scale: float = 1.0
    unmasked_weight: float = 0.0  # loss = L_masked + w * L_unmasked, as HuBERT's objective.unmasked_weight
    # WavLM's utterance mixing (upstreams/modules/utterance_mixing.py): the share of utterances the encoder hears
    # overlapped by another one of the batch; targets stay those of the clean utterance
    mix_prob: float = 0.0
    # How the target fbank is normalised: "utterance" (each utterance's own mean and variance, which
    # removes the speaker's and channel's average spectrum from the targets) or "global" (one mean
    # and variance per mel bin, estimated in `setup` on `norm_utterances` pre-training utterances,
    # so the targets, like HuBERT's MFCC k-means ones, still depend on who speaks).
    target_norm: str = "utterance"
    norm_utterances: int = 500
    quality_utterances: int = 200  # utterances scored against phone alignments in `setup`

    def __post_init__(self) -> None:
        check_positive(
            "objective",
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            codebooks=self.codebooks,
            n_mels=self.n_mels,
            mask_span=self.mask_span,
        )
        if not 0.0 < self.mask_prob <= 1.0:
            raise ConfigError(f"objective.mask_prob must lie in (0, 1]; got {self.mask_prob!r}.")
        if self.target_norm not in ("utterance", "global"):
            raise ConfigError(
                f"objective.target_norm must be 'utterance' or 'global'; got {self.target_norm!r}."
            )
        check_positive("objective", norm_utterances=self.norm_utterances)
        if not 0.0 <= self.frontend_grad_scale <= 1.0:
            raise ConfigError(
                f"objective.frontend_grad_scale must lie in [0, 1]; got {self.frontend_grad_scale!r}."
            )
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ConfigError(f"objective.mix_prob must lie in [0, 1]; got {self.mix_prob!r}.")
        if (
            self.noise_std < 0
            or self.mask_min_spans < 0
            or self.quality_utterances < 0
            or self.unmasked_weight < 0
        ):
            raise ConfigError(
                "objective.noise_std, objective.mask_min_spans, objective.quality_utterances and "
                f"objective.unmasked_weight must be >= 0; got {self.noise_std!r}, {self.mask_min_spans!r}, "
                f"{self.quality_utterances!r}, {self.unmasked_weight!r}."
            )


def normalised_fbank(
    wavs: torch.Tensor,
    wav_lens: torch.Tensor,
    n_mels: int,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel fbank [B, F, n_mels], normalised to zero mean and unit variance per mel bin.

    With `stats` None the mean and variance are each utterance's own (over its valid
    frames); otherwise `stats` is (mean, std) [n_mels] of the whole corpus.
    Computed here rather than taken from the fbank front-end so that the targets
    are the method's own: the same with either front-end and any front-end setting.
    """
    feats, lens = kaldi_fbank(wavs.float() * KALDI_SCALE, wav_lens, n_mels)
    valid = padding_mask(lens, feats.shape[1])[..., None]
    if stats is not None:
        mean, std = stats
        return ((feats - mean) / std).masked_fill(~valid, 0.0), lens
    n = lens.clamp(min=1)[:, None, None].float()
    mean = feats.sum(1, keepdim=True) / n
    var = ((feats - mean).square() * valid).sum(1, keepdim=True) / n
    return ((feats - mean) * torch.rsqrt(var + 1e-5)).masked_fill(~valid, 0.0), lens


def corpus_fbank_stats(data: PretrainData, n_mels: int, utterances: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean and standard deviation [n_mels] of the first `utterances` records' fbank frames."""
    total, squares, frames = (
        torch.zeros(n_mels, dtype=torch.float64),
        torch.zeros(n_mels, dtype=torch.float64),
        0,
    )
    for rec in data.records[:utterances]:
        wav = torch.from_numpy(load_audio(audio_path(data.manifest, rec)))[None]
        feats, _ = kaldi_fbank(wav.float() * KALDI_SCALE, torch.tensor([wav.shape[1]]), n_mels)
        feats = feats[0].double()
        total += feats.sum(0)
        squares += feats.square().sum(0)
        frames += feats.shape[0]
    if frames == 0:
        raise EvalkitError(
            "bestrq: target_norm 'global' needs pre-training audio to estimate fbank statistics; "
            "the corpus has no utterances."
        )
    mean = total / frames
    std = (squares / frames - mean.square()).clamp(min=1e-10).sqrt()
    return mean.float(), std.float()


class BestRQ(Objective):
    """The BEST-RQ objective on an `SSLEncoder` (any front-end, any encoder kind)."""

    settings_class = BestRQConfig
    method = "bestrq"

    def __init__(self, encoder: dict, **objective) -> None:
        super().__init__()
        self.encoder = SSLEncoder(**encoder)
        self.settings = c = self.settings_class.from_dict(objective, where="objective")
        # 10 ms fbank frames per encoder frame; encoder frame j (centred on fbank frame
        # stack·j) takes fbank frames stack·j - pad .. stack·j - pad + stack - 1.
        self.stack = max(1, round(FBANK_RATE / self.encoder.frame_rate))
        self.pad = (self.stack - 1) // 2
        projection = torch.empty(c.codebooks, self.stack * c.n_mels, c.codebook_dim)
        for matrix in projection:
            nn.init.xavier_uniform_(matrix)
        codebook = F.normalize(torch.randn(c.codebooks, c.codebook_size, c.codebook_dim), dim=-1)
        self.register_buffer("projection", projection)
        self.register_buffer("codebook", codebook)
        if c.target_norm == "global":  # filled by setup() / load_setup(); saved with the training state
            self.register_buffer("fbank_mean", torch.zeros(c.n_mels))
            self.register_buffer("fbank_std", torch.ones(c.n_mels))
        if c.frontend_grad_scale == 0.0:
            self.encoder.frontend.requires_grad_(False)
        self.masker = NoiseReplacement(c.noise_std)
        self.head = nn.Linear(self.encoder.hidden_size, c.codebooks * c.codebook_size)

    def config(self) -> dict:
        return {"method": self.method, "encoder": self.encoder.config, "objective": self.settings.to_dict()}

    @torch.no_grad()
    def targets(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor, n_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes [B, n_frames, codebooks] of each encoder frame, and [B, n_frames] True where defined.

        A frame has a target when all its fbank frames lie inside the utterance
        (the first frame's missing left neighbour counts as the mean: zero).
        """
        with torch.autocast(wavs.device.type, enabled=False):
            stats = (self.fbank_mean, self.fbank_std) if self.settings.target_norm == "global" else None
            feats, lens = normalised_fbank(wavs, wav_lens, self.settings.n_mels, stats)
            need = n_frames * self.stack
            feats = F.pad(feats, (0, 0, self.pad, max(0, need - feats.shape[1] - self.pad)))[:, :need]
            stacked = feats.reshape(feats.shape[0], n_frames, -1)
            z = F.normalize(torch.einsum("btd,cde->btce", stacked, self.projection), dim=-1)
            codes = torch.einsum("btce,cke->btck", z, self.codebook).argmax(-1)
        ends = (torch.arange(n_frames, device=lens.device) + 1) * self.stack - self.pad
        return codes, ends[None, :] <= lens[:, None]

    def forward(self, batch: Batch) -> Output:
        c = self.settings
        heard = mix_utterances(batch.wavs, batch.wav_lens, c.mix_prob) if self.training else batch.wavs
        features, lens = self.encoder.frontend(heard, batch.wav_lens)
        features = scale_gradient(features, c.frontend_grad_scale)
        n_frames = features.shape[1]
        valid = padding_mask(lens, n_frames)
        codes, has_target = self.targets(batch.wavs, batch.wav_lens, n_frames)  # of the clean utterances
        mask = compute_span_mask(lens, c.mask_prob, c.mask_span, min_masks=c.mask_min_spans, max_len=n_frames)
        hidden = self.encoder.encoder(features, valid, mask=mask, masker=self.masker)[-1]

        scored = mask & has_target & valid
        logits = self.head(hidden[scored]).float().view(-1, c.codebooks, c.codebook_size)
        target = codes[scored]
        if target.shape[0] == 0:  # nothing masked: a zero loss that still touches every parameter
            loss = logits.sum() * 0.0 + hidden.float().sum() * 0.0
            accuracy = 0.0
        else:
            loss = F.cross_entropy(logits.transpose(1, 2), target)
            accuracy = float((logits.argmax(-1) == target).float().mean())
        unmasked = ~mask & has_target & valid
        if c.unmasked_weight > 0 and unmasked.any():
            logits = self.head(hidden[unmasked]).float().view(-1, c.codebooks, c.codebook_size)
            unmasked_loss = F.cross_entropy(logits.transpose(1, 2), codes[unmasked])
            loss = loss + c.unmasked_weight * unmasked_loss
        stats = {
            "accuracy": accuracy,
            "code_perplexity": code_perplexity(codes[has_target & valid], c.codebook_size),
            "masked_fraction": float(mask.sum() / valid.sum().clamp(min=1)),
        }
        return Output(loss, stats)

    def setup(self, data: PretrainData, workdir: Path, log=print) -> dict:
        """Estimates the corpus fbank statistics (target_norm 'global'), then scores the fixed targets.

        The score (PNMI, purity, code usage against the suite's phone alignments)
        changes nothing in training; it says how phonetic random-projection
        targets are, to set beside HuBERT's k-means targets.
        """
        c = self.settings
        if c.target_norm == "global":
            stats_path = Path(workdir) / STATS_FILE
            if not stats_path.is_file():
                mean, std = corpus_fbank_stats(data, c.n_mels, c.norm_utterances)
                atomic_write_text(stats_path, json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
                log(f"bestrq: fbank statistics from {min(len(data.records), c.norm_utterances)} utterances")
            self.load_setup(workdir)
        path = Path(workdir) / QUALITY_FILE
        if path.is_file():
            return json.loads(path.read_text())
        report = self.target_quality(data)
        atomic_write_text(path, json.dumps(report, indent=1))
        log(
            f"bestrq targets on {report['utterances']} utterances: "
            + ", ".join(f"{k} {v:.3f}" for k, v in report.items() if isinstance(v, float))
        )
        return report

    def load_setup(self, workdir: Path) -> None:
        if self.settings.target_norm != "global":
            return
        path = Path(workdir) / STATS_FILE
        if not path.is_file():
            raise EvalkitError(
                f"{path}: missing; it holds the fbank statistics of target_norm 'global'. "
                "Start the run again in a fresh --out folder."
            )
        stats = json.loads(path.read_text())
        for name in ("mean", "std"):
            values = torch.tensor(stats[name], dtype=torch.float32)
            if values.shape != (self.settings.n_mels,):
                raise EvalkitError(
                    f"{path}: {name!r} has {values.numel()} values, the config's n_mels is "
                    f"{self.settings.n_mels}. Use a fresh --out folder."
                )
            getattr(self, f"fbank_{name}").copy_(values)

    def target_quality(self, data: PretrainData) -> dict:
        """Code perplexity and, where records carry `alignment`, PNMI and purities of codebook 0."""
        hop = round(SAMPLE_RATE / self.encoder.frame_rate)
        records = data.records[: self.settings.quality_utterances]
        phones: list[str] = []
        aligned: list[np.ndarray] = []
        everything: list[torch.Tensor] = []
        device = self.codebook.device
        for rec in records:
            wav = torch.from_numpy(load_audio(audio_path(data.manifest, rec)))[None].to(device)
            lens = torch.tensor([wav.shape[1]], device=device)
            n_frames = int(self.encoder.frames_for(lens.cpu())[0])
            codes, has_target = self.targets(wav, lens, n_frames)
            codes = codes[0, has_target[0], 0].cpu()
            everything.append(codes)
            if rec.get("alignment"):
                labels = aligned_phones(rec["alignment"], n_frames, hop)
                phones.extend(label for label, keep in zip(labels, has_target[0].tolist()) if keep)
                aligned.append(codes.numpy())
        report: dict = {"utterances": len(records)}
        if everything:
            report["code_perplexity"] = code_perplexity(torch.cat(everything), self.settings.codebook_size)
        if phones:
            report.update(cluster_quality(phones, np.concatenate(aligned)).to_dict())
        return report


def code_perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the codes' histogram (per codebook, averaged): how many codes are in use."""
    codes = codes.reshape(codes.shape[0], -1) if codes.dim() > 1 else codes[:, None]
    if codes.shape[0] == 0:
        return 0.0
    perplexities = []
    for column in codes.T:
        p = torch.bincount(column, minlength=codebook_size).double() / column.numel()
        p = p[p > 0]
        perplexities.append(float(torch.exp(-(p * p.log()).sum())))
    return sum(perplexities) / len(perplexities)
