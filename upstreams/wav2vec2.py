"""wav2vec 2.0 (Baevski et al., 2020): contrastive prediction of quantized, masked frames.

The front-end features, unmasked, go through a Gumbel product quantizer (G
groups of V learned code vectors; one code per group, concatenated and
projected) to make the targets. The same features, span-masked and replaced by
a learned vector, go through the context encoder; at each masked frame its
output must pick the frame's own quantized target out of K distractors
(cosine similarity ÷ a temperature, cross-entropy with the positive first).
The distractors are the targets of other masked frames of the same utterance
(the paper's choice) or of the whole batch (`masked_negatives: batch`, which
keeps speaker information useful; the small recipes use it). A diversity loss
keeps the codebooks in use, and an L2 penalty keeps the front-end features small.
With `mix_prob` > 0 the context encoder hears some utterances overlapped by
another one of the batch (WavLM's utterance mixing) while the targets stay
the quantized features of the clean utterance.

With `encoder.kind: summarymixing` this is the SummaryMixing paper's model.
Defaults are the paper's Base values; `configs/pretrain/wav2vec2-*.yaml` and
`summarymixing-*.yaml` hold the recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.config import SerialisableConfig, check_positive, check_probability
from evalkit.core.errors import ConfigError
from upstreams.base import padding_mask
from upstreams.encoder import SSLEncoder
from upstreams.modules import MaskEmbedding, compute_span_mask, mix_utterances, scale_gradient
from upstreams.objective import Batch, Objective, Output


@dataclass
class Wav2Vec2Config(SerialisableConfig):
    """The objective's settings (the `objective:` section of a recipe). Defaults: wav2vec 2.0 Base."""

    mask_prob: float = 0.65  # fairseq's meaning: 6.5% of frames start a span of 10
    mask_span: int = 10
    mask_min_spans: int = 2  # per utterance, as fairseq, so that short ones still have distractors
    num_negatives: int = 100  # distractors per masked frame (drawn from `masked_negatives`)
    codebook_groups: int = 2
    codebook_entries: int = 320
    codebook_dim: int = 256  # width of the concatenated code vectors (codebook_dim / groups each)
    final_dim: int = 256  # space where context outputs and targets are compared
    logit_temperature: float = 0.1
    gumbel_max_temperature: float = 2.0
    gumbel_min_temperature: float = 0.5
    gumbel_decay: float = 0.999995  # temperature = max(max * decay ** step, min)
    diversity_weight: float = 0.1
    feature_penalty: float = 10.0  # weight of the mean squared front-end feature; 0 turns it off
    # fairseq's feature_grad_mult: the CNN learns 10x slower; 0 keeps the front-end at its random
    # initialisation (as bestrq-small.yaml: then layer 0 is the random-init twin's, speaker information included)
    frontend_grad_scale: float = 0.1
    quantizer_dropout: float = 0.1  # on the quantizer's input features (fairseq's dropout_features)
    # loss = L_masked + w * L_unmasked, where an unmasked frame's output must pick its own quantized target
    # out of the other unmasked frames'; 0 is the paper (HuBERT's unmasked_weight, for the same reason)
    unmasked_weight: float = 0.0
    # where each loss draws its distractors: "utterance" (the paper: other frames of the same utterance) or
    # "batch" (every utterance of the batch, so that what tells utterances apart, e.g. the speaker, is kept too)
    masked_negatives: str = "utterance"
    unmasked_negatives: str = "utterance"
    # WavLM's utterance mixing (upstreams/modules/utterance_mixing.py): the share of utterances the context encoder
    # hears overlapped by another one of the batch; the quantized targets stay those of the clean utterance
    mix_prob: float = 0.0

    def __post_init__(self) -> None:
        check_positive(
            "objective",
            mask_span=self.mask_span,
            num_negatives=self.num_negatives,
            codebook_groups=self.codebook_groups,
            codebook_entries=self.codebook_entries,
            codebook_dim=self.codebook_dim,
            final_dim=self.final_dim,
        )
        if self.codebook_dim % self.codebook_groups:
            raise ConfigError(
                f"objective.codebook_dim ({self.codebook_dim}) must be divisible by "
                f"objective.codebook_groups ({self.codebook_groups})."
            )
        if not 0.0 < self.mask_prob <= 1.0 or self.mask_min_spans < 0:
            raise ConfigError(
                f"objective.mask_prob must lie in (0, 1] and objective.mask_min_spans be >= 0; got "
                f"{self.mask_prob} and {self.mask_min_spans}."
            )
        if not 0.0 < self.gumbel_min_temperature <= self.gumbel_max_temperature:
            raise ConfigError(
                "objective.gumbel_min_temperature must be > 0 and <= objective.gumbel_max_temperature; got "
                f"{self.gumbel_min_temperature} and {self.gumbel_max_temperature}."
            )
        if not 0.0 < self.gumbel_decay <= 1.0 or self.logit_temperature <= 0.0:
            raise ConfigError(
                f"objective.gumbel_decay must lie in (0, 1] and objective.logit_temperature be > 0; got "
                f"{self.gumbel_decay} and {self.logit_temperature}."
            )
        if (
            self.diversity_weight < 0
            or self.feature_penalty < 0
            or self.unmasked_weight < 0
            or not 0 <= self.frontend_grad_scale <= 1
        ):
            raise ConfigError(
                "objective.diversity_weight, objective.feature_penalty and objective.unmasked_weight must be >= 0 "
                "and objective.frontend_grad_scale in [0, 1]; got "
                f"{self.diversity_weight}, {self.feature_penalty}, {self.unmasked_weight}, "
                f"{self.frontend_grad_scale}."
            )
        check_probability("objective", quantizer_dropout=self.quantizer_dropout)
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ConfigError(f"objective.mix_prob must lie in [0, 1]; got {self.mix_prob!r}.")
        for key in ("masked_negatives", "unmasked_negatives"):
            if getattr(self, key) not in ("utterance", "batch"):
                raise ConfigError(
                    f"objective.{key} must be 'utterance' or 'batch'; got {getattr(self, key)!r}."
                )


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of exp(entropy) of probs [G, V]: G·V when uniform, G when each group uses one code."""
    entropy = -(probs * probs.clamp(min=1e-7).log()).sum(-1)
    return entropy.exp().sum()


@dataclass
class Quantized:
    vectors: torch.Tensor  # [N, codebook_dim], the concatenated code vectors
    codes: torch.Tensor  # [N, G] chosen entry per group
    prob_perplexity: torch.Tensor  # of the batch-averaged softmax (drives the diversity loss)
    code_perplexity: torch.Tensor  # of the batch-averaged hard choices (how many codes are in use)


class GumbelQuantizer(nn.Module):
    """Product quantizer with straight-through hard Gumbel-softmax (fairseq's GumbelVectorQuantizer).

    Training samples one code per group from softmax((logits + Gumbel noise) / τ)
    and passes its one-hot forward while the gradient flows through the soft
    probabilities; evaluation takes the argmax.
    """

    def __init__(self, in_dim: int, groups: int, entries: int, dim: int) -> None:
        super().__init__()
        self.groups = groups
        self.entries = entries
        self.logits = nn.Linear(in_dim, groups * entries)
        nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.logits.bias)
        self.codebook = nn.Parameter(torch.empty(groups, entries, dim // groups).uniform_())

    @property
    def num_codes(self) -> int:
        return self.groups * self.entries

    def forward(self, x: torch.Tensor, temperature: float) -> Quantized:
        """x [N, in_dim] -> Quantized with vectors [N, dim]."""
        logits = self.logits(x).float().view(-1, self.groups, self.entries)
        prob_perplexity = perplexity(logits.softmax(-1).mean(0))
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=temperature, hard=True)
        else:
            onehot = F.one_hot(logits.argmax(-1), self.entries).to(logits.dtype)
        codes = onehot.detach().argmax(-1)
        code_perplexity = perplexity(onehot.detach().mean(0))
        vectors = torch.einsum("ngv,gvd->ngd", onehot, self.codebook.float()).flatten(1)
        return Quantized(vectors, codes, prob_perplexity, code_perplexity)


def sample_distractors(
    mask: torch.Tensor, num: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each masked frame (row-major order), `num` distractor frames as flat indices into mask [B, T].

    Drawn uniformly, with replacement, among the OTHER masked frames of the same
    utterance (padding is never masked, so never drawn). Rows of a frame that is
    its utterance's only masked frame are -1: it has no distractor.
    """
    b, t = mask.shape
    counts = mask.sum(1)
    first = counts.cumsum(0) - counts  # index of each utterance's first masked frame in the masked list
    utt = torch.arange(b, device=mask.device)[:, None].expand(b, t)[mask]
    rank = (mask.cumsum(1) - 1)[mask]  # position of each masked frame within its utterance's
    others = (counts[utt] - 1).clamp(min=1)
    draw = torch.rand(len(utt), num, generator=generator).to(mask.device)
    pick = (draw * others[:, None]).long().clamp(max=others[:, None] - 1)
    pick = pick + (pick >= rank[:, None]).long()  # skip the frame itself
    flat = mask.flatten().nonzero()[:, 0]
    chosen = flat[(first[utt][:, None] + pick).clamp(max=len(flat) - 1)]
    return chosen.masked_fill((counts[utt] < 2)[:, None], -1)


@dataclass
class Contrastive:
    loss: torch.Tensor  # mean cross-entropy over masked frames that have distractors
    accuracy: torch.Tensor  # fraction of those frames whose positive scores strictly highest
    frames: int  # how many frames the loss averages over
    kept: torch.Tensor  # fraction of the sampled distractors kept (not the positive's code)


def contrastive_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    codes: torch.Tensor,
    mask: torch.Tensor,
    distractors: torch.Tensor,
    temperature: float,
) -> Contrastive:
    """InfoNCE of each masked frame's prediction [N, F] against its target and its distractors' targets.

    Cosine similarities are computed once per utterance, as a [B, M, M] matrix over
    its M masked frames (cheaper than gathering [N, K, F] distractor vectors), and
    distractors whose codes equal the positive's are left out (they are the same
    vector), as in fairseq.
    """
    b, t = mask.shape
    utt = torch.arange(b, device=mask.device)[:, None].expand(b, t)[mask]
    rank_grid = mask.cumsum(1) - 1
    rank = rank_grid[mask]
    most = int(mask.sum(1).max())
    with torch.autocast(predictions.device.type, enabled=False):
        pred = predictions.new_zeros(b, most, predictions.shape[-1], dtype=torch.float32)
        pred = pred.index_put((utt, rank), F.normalize(predictions.float(), dim=-1))
        targ = targets.new_zeros(b, most, targets.shape[-1], dtype=torch.float32)
        targ = targ.index_put((utt, rank), F.normalize(targets.float(), dim=-1))
        rows = torch.bmm(pred, targ.transpose(1, 2))[
            utt, rank
        ]  # [N, M] cosine to every target of its utterance
        positive = rows.gather(1, rank[:, None])
        usable = distractors >= 0
        where = distractors.clamp(min=0)
        negative_rank = rank_grid.flatten()[where]
        negative = rows.gather(1, negative_rank)
        order = torch.zeros(b * t, dtype=torch.long, device=mask.device)
        order[mask.flatten()] = torch.arange(len(utt), device=mask.device)
        same_code = (codes[order[where]] == codes[:, None, :]).all(-1)
        keep = usable & ~same_code
        negative = negative.masked_fill(~keep, float("-inf"))
        logits = torch.cat([positive, negative], dim=1) / temperature
        has = usable.any(1)
        frames = int(has.sum())
        losses = F.cross_entropy(logits, torch.zeros_like(rank), reduction="none")
        loss = (losses * has).sum() / max(frames, 1)
        correct = (logits[:, 0] > logits[:, 1:].max(1).values) & has
        accuracy = correct.sum() / max(frames, 1)
        kept = keep.sum() / usable.sum().clamp(min=1)
    return Contrastive(loss, accuracy.detach(), frames, kept)


class Wav2Vec2(Objective):
    """The wav2vec 2.0 objective on an `SSLEncoder` (any front-end, any encoder kind)."""

    settings_class = Wav2Vec2Config
    method = "wav2vec2"

    def __init__(self, encoder: dict, **objective) -> None:
        super().__init__()
        self.encoder = SSLEncoder(**encoder)
        self.settings = c = self.settings_class.from_dict(objective, where="objective")
        self.masker = MaskEmbedding(self.encoder.hidden_size)
        self.quantizer = GumbelQuantizer(
            self.encoder.frontend.dim, c.codebook_groups, c.codebook_entries, c.codebook_dim
        )
        self.quantizer_dropout = nn.Dropout(c.quantizer_dropout)
        self.project_targets = nn.Linear(c.codebook_dim, c.final_dim)
        self.project_context = nn.Linear(self.encoder.hidden_size, c.final_dim)
        if c.frontend_grad_scale == 0.0:
            self.encoder.frontend.requires_grad_(False)
        # Training forward passes so far (micro-batches when the loop accumulates): drives the Gumbel
        # temperature, and is saved with the objective's weights so that a resumed run continues it.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def temperature(self) -> float:
        """The Gumbel temperature at the current training step."""
        c = self.settings
        decayed = c.gumbel_max_temperature * c.gumbel_decay ** int(self.step)
        return max(decayed, c.gumbel_min_temperature)

    def config(self) -> dict:
        return {"method": self.method, "encoder": self.encoder.config, "objective": self.settings.to_dict()}

    def forward(self, batch: Batch) -> Output:
        c = self.settings
        temperature = self.temperature
        if self.training:
            self.step += 1
        heard = mix_utterances(batch.wavs, batch.wav_lens, c.mix_prob) if self.training else batch.wavs
        features, lens = self.encoder.frontend(heard, batch.wav_lens)
        features = scale_gradient(features, c.frontend_grad_scale)
        # the targets' features: of the clean utterances (the same tensor when nothing was mixed)
        clean = (
            features
            if heard is batch.wavs
            else scale_gradient(self.encoder.frontend(batch.wavs, batch.wav_lens)[0], c.frontend_grad_scale)
        )
        valid = padding_mask(lens, features.shape[1])
        mask = compute_span_mask(
            lens, c.mask_prob, c.mask_span, min_masks=c.mask_min_spans, max_len=features.shape[1]
        )
        if not mask.any():
            raise ConfigError(
                f"wav2vec2: no frame of this batch was masked (frame lengths {lens.tolist()}); raise "
                "objective.mask_min_spans or data.min_seconds."
            )
        penalty = features.float().square().mean(-1)[valid].mean()
        context = self.encoder.encoder
        x = self.masker(context.project(features), mask)
        hidden = context.contextualise(x, valid)[-1]
        quantizer_input = self.quantizer_dropout(context.feature_norm(clean))
        frames = valid if c.unmasked_weight > 0 else mask  # which frames need a target
        quantized = self.quantizer(quantizer_input[frames], temperature)
        targets = self.project_targets(quantized.vectors)
        in_mask = mask[frames]  # rows of the masked frames among the quantized ones
        # "batch": the batch as one long utterance (the same frames in the same row-major order)
        pool = mask.reshape(1, -1) if c.masked_negatives == "batch" else mask
        result = contrastive_loss(
            self.project_context(hidden[mask]),
            targets[in_mask],
            quantized.codes[in_mask],
            pool,
            sample_distractors(pool, c.num_negatives),
            c.logit_temperature,
        )

        num_codes = self.quantizer.num_codes
        diversity = (num_codes - quantized.prob_perplexity) / num_codes
        loss = result.loss + c.diversity_weight * diversity + c.feature_penalty * penalty
        extra = {}
        unmasked = valid & ~mask
        if c.unmasked_weight > 0 and unmasked.any():
            pool = unmasked.reshape(1, -1) if c.unmasked_negatives == "batch" else unmasked
            rest = contrastive_loss(
                self.project_context(hidden[unmasked]),
                targets[~in_mask],
                quantized.codes[~in_mask],
                pool,
                sample_distractors(pool, c.num_negatives),
                c.logit_temperature,
            )
            loss = loss + c.unmasked_weight * rest.loss
            extra = {"contrastive_unmasked": rest.loss.item(), "accuracy_unmasked": float(rest.accuracy)}
        stats = {
            "contrastive": result.loss.item(),
            "accuracy": float(result.accuracy),
            "distractors_kept": float(result.kept),
            "diversity": diversity.item(),
            "feature_penalty": penalty.item(),
            "code_perplexity": quantized.code_perplexity.item(),
            "prob_perplexity": quantized.prob_perplexity.item(),
            "temperature": temperature,
            "masked_fraction": float(mask.sum() / valid.sum()),
            **extra,
        }
        return Output(loss, stats)
