"""HuBERT (Hsu et al., 2021): masked prediction of k-means cluster targets.

Targets come from `setup()`: k-means of 39-d MFCC (iteration 1) or of a hidden
layer of an earlier checkpoint (iteration 2), stored per utterance in the
setup folder (see `upstreams.kmeans_targets`), with their quality against
the phone alignments (PNMI, purity) in the setup report: targets that carry
little phone information make pre-training useless, so check that first.

The model: span-masked projected front-end frames are replaced by a learned
vector; the context encoder's output at masked frames predicts their cluster
(cross-entropy on masked frames only). The default is the Fast-HuBERT recipe
(fbank front-end at 40 ms, plain linear head, optional intermediate-layer
heads); `head: cosine` with a CNN front-end is the original HuBERT recipe
(projection, cosine similarity to learned label embeddings ÷ 0.1).

Iteration 2 reads `targets: {source: checkpoint, path: DIR, layer: L}`; recipes
write DIR as `${work}/<recipe name>` of the iteration-1 run (see `upstreams.work`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.config import SerialisableConfig, check_choice, check_positive
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import atomic_write_text
from upstreams.base import padding_mask
from upstreams.encoder import SSLEncoder
from upstreams.kmeans_targets import (
    CENTROIDS_FILE,
    ClusterTargets,
    FeatureSource,
    aligned_phones,
    checkpoint_source,
    cluster_quality,
    fit_kmeans,
    mfcc_source,
    target_quality,
)
from upstreams.load import load_upstream
from upstreams.modules import MaskEmbedding, compute_span_mask, mix_utterances, scale_gradient
from upstreams.objective import Batch, Objective, Output, PretrainData
from upstreams.work import checked_run_folder, resolve_work

REPORT_FILE = "hubert_setup.json"
PNMI_WARNING = (
    0.2  # MFCC k-means (k = 100-500) reach 0.31-0.42 on the default suite; far below: a bug or bad audio
)


@dataclass
class TargetsConfig(SerialisableConfig):
    """Where the k-means targets come from (`objective.targets`)."""

    source: str = "mfcc"  # "mfcc" (iteration 1) | "checkpoint" (iteration 2)
    path: str = ""  # checkpoint: an upstream spec, usually the iteration-1 output folder
    layer: int = 6  # checkpoint: hidden state to cluster (0 = input of the first layer)
    max_frames: int = 300_000  # k-means is fitted on at most this many random frames
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("objective.targets", "source", self.source, ("mfcc", "checkpoint"))
        check_positive("objective.targets", max_frames=self.max_frames)
        if self.source == "checkpoint" and not self.path:
            raise ConfigError(
                "objective.targets.path is empty: HuBERT iteration 2 (targets.source: checkpoint) needs the "
                "folder of the iteration-1 run, e.g. ${work}/hubert-small."
            )
        resolve_work(self.path, "objective.targets.path")


@dataclass
class HuBERTConfig(SerialisableConfig):
    """The objective's settings (the `objective:` section of a recipe). Defaults: Fast-HuBERT, k=300."""

    n_clusters: int = 300
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    mask_prob: float = 0.8  # fairseq's meaning: 8% of frames start a span of 10
    mask_span: int = 10
    mask_min_spans: int = 2
    head: str = "linear"  # "linear" (Fast-HuBERT) | "cosine" (HuBERT: projection + cosine / temperature)
    final_dim: int = 256  # cosine head: projection width
    logit_temperature: float = 0.1  # cosine head
    supervise_layers: list[int] = field(default_factory=list)  # heads on these layers too (Fast-HuBERT's ILS)
    frontend_grad_scale: float = 1.0  # HuBERT's feature_grad_mult: 0.1 for the CNN front-end
    unmasked_weight: float = 0.0  # loss = L_masked + w * L_unmasked (the HuBERT paper's alpha = 1 / (1 + w))
    mix_prob: float = (
        0.0  # WavLM's utterance mixing (upstreams/modules/utterance_mixing.py); targets stay the clean ones
    )

    def __post_init__(self) -> None:
        if isinstance(self.targets, dict):
            self.targets = TargetsConfig.from_dict(self.targets, where="objective.targets")
        check_choice("objective", "head", self.head, ("linear", "cosine"))
        check_positive(
            "objective", n_clusters=self.n_clusters, mask_span=self.mask_span, final_dim=self.final_dim
        )
        if self.n_clusters < 2 or not 0.0 < self.mask_prob <= 1.0 or self.mask_min_spans < 0:
            raise ConfigError(
                "objective.n_clusters must be >= 2, objective.mask_prob lie in (0, 1] and "
                f"objective.mask_min_spans be >= 0; got {self.n_clusters}, {self.mask_prob}, {self.mask_min_spans}."
            )
        if self.logit_temperature <= 0 or not 0 < self.frontend_grad_scale <= 1 or self.unmasked_weight < 0:
            raise ConfigError(
                "objective.logit_temperature must be > 0, objective.frontend_grad_scale in (0, 1] and "
                "objective.unmasked_weight >= 0; got "
                f"{self.logit_temperature}, {self.frontend_grad_scale} and {self.unmasked_weight}."
            )
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ConfigError(f"objective.mix_prob must lie in [0, 1]; got {self.mix_prob!r}.")
        self.supervise_layers = [int(x) for x in self.supervise_layers]


class CosineHead(nn.Module):
    """HuBERT's prediction: cosine of a projection to one learned embedding per cluster, ÷ temperature."""

    def __init__(self, dim: int, n_clusters: int, final_dim: int, temperature: float) -> None:
        super().__init__()
        self.projection = nn.Linear(dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(n_clusters, final_dim).uniform_())
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = F.normalize(self.projection(x.float()), dim=-1)
            return y @ F.normalize(self.label_embeddings.float(), dim=-1).T / self.temperature


class HuBERT(Objective):
    """Masked cluster prediction on an `SSLEncoder` (any front-end, any encoder kind)."""

    settings_class = HuBERTConfig
    method = "hubert"

    def __init__(self, encoder: dict, **objective) -> None:
        super().__init__()
        self.encoder = SSLEncoder(**encoder)
        self.settings = c = self.settings_class.from_dict(objective, where="objective")
        layers = self.encoder.encoder_config.layers
        bad = [x for x in c.supervise_layers if not 1 <= x <= layers]
        if bad:
            raise ConfigError(f"objective.supervise_layers {bad}: the encoder has layers 1..{layers}.")
        self.head_layers = [layers, *sorted(set(c.supervise_layers) - {layers})]  # the last always has a head
        dim = self.encoder.hidden_size
        self.masker = MaskEmbedding(dim)
        self.heads = nn.ModuleList(
            CosineHead(dim, c.n_clusters, c.final_dim, c.logit_temperature)
            if c.head == "cosine"
            else nn.Linear(dim, c.n_clusters)
            for _ in self.head_layers
        )
        self.hop = round(SAMPLE_RATE / self.encoder.frame_rate)  # encoder frame shift in samples
        self.targets: ClusterTargets | None = None

    def config(self) -> dict:
        return {"method": self.method, "encoder": self.encoder.config, "objective": self.settings.to_dict()}

    def _source(self) -> FeatureSource:
        t = self.settings.targets
        if t.source == "mfcc":
            return mfcc_source()
        path = checked_run_folder(t.path, "objective.targets.path")
        device = next(self.parameters()).device
        return checkpoint_source(load_upstream(path, device=str(device)), t.layer, path)

    def setup(self, data: PretrainData, workdir: Path, log=print) -> dict:
        """k-means targets for every utterance of `data` in `workdir`, and their quality; reused if there."""
        workdir = Path(workdir)
        c = self.settings
        wanted = {"n_clusters": c.n_clusters, "targets": c.targets.to_dict()}
        report_path = workdir / REPORT_FILE
        if report_path.is_file() and ClusterTargets.exists(workdir):
            report = json.loads(report_path.read_text())
            if report.get("settings") != wanted:
                raise EvalkitError(
                    f"{workdir}: holds k-means targets made with {report.get('settings')}, but the config asks "
                    f"for {wanted}. Use a fresh --out folder (or delete {workdir}) to rebuild them."
                )
            self.load_setup(workdir)
            log(f"hubert: reusing the k-means targets in {workdir}")
            return report
        source = self._source()
        targets, centroids = fit_kmeans(
            data.manifest, data.records, source, c.n_clusters, c.targets.max_frames, c.targets.seed, log
        )
        targets.save(workdir)
        np.save(workdir / CENTROIDS_FILE, centroids)
        self.targets = targets
        report = {
            "settings": wanted,
            "source": source.name,
            "frames": int(targets.lengths.sum()),
            "utterances": len(targets.ids),
            **self._quality(data.records, log),
        }
        atomic_write_text(report_path, json.dumps(report, indent=2))
        return report

    def _quality(self, records: list[dict], log) -> dict:
        """PNMI and purity at the source's rate and at the encoder's (what training sees)."""
        assert self.targets is not None
        quality = target_quality(records, self.targets)
        if quality is None:
            log("hubert: the pretrain records carry no phone `alignment`: target quality (PNMI) not measured")
            return {"quality": None}
        phones: list[str] = []
        clusters: list[np.ndarray] = []
        for rec in records:
            stored = len(self.targets.utterance(str(rec["id"])))
            if rec.get("alignment") and stored:
                n = (stored - 1) * self.targets.hop // self.hop + 1  # encoder frames centred on stored ones
                clusters.append(self.targets.frames(str(rec["id"]), 0, n, self.hop))
                phones.extend(aligned_phones(rec["alignment"], n, self.hop))
        at_encoder = cluster_quality(phones, np.concatenate(clusters))
        log(
            f"hubert targets ({self.targets.source}, k={self.targets.n_clusters}): PNMI {quality.pnmi:.3f}, "
            f"phone purity {quality.phone_purity:.3f} (majority phone {quality.majority_phone:.3f}), "
            f"cluster purity {quality.cluster_purity:.3f}; at the encoder's {self.encoder.frame_rate:g} Hz: "
            f"PNMI {at_encoder.pnmi:.3f}"
        )
        if quality.pnmi < PNMI_WARNING:
            log(
                f"WARNING: hubert targets carry little phone information (PNMI {quality.pnmi:.3f} < "
                f"{PNMI_WARNING}); pre-training on them is unlikely to help. Check the audio, the "
                "alignments, or use more clusters / a better target layer."
            )
        return {"quality": quality.to_dict(), "quality_at_encoder_rate": at_encoder.to_dict()}

    def load_setup(self, workdir: Path) -> None:
        self.targets = ClusterTargets.load(Path(workdir))
        if self.targets.n_clusters != self.settings.n_clusters:
            raise EvalkitError(
                f"{workdir}: its targets have {self.targets.n_clusters} clusters, the config "
                f"{self.settings.n_clusters}. Use a fresh --out folder to rebuild them."
            )

    def forward(self, batch: Batch) -> Output:
        if self.targets is None:
            raise EvalkitError("hubert: no targets; call setup() (or load_setup()) before training.")
        c = self.settings
        heard = mix_utterances(batch.wavs, batch.wav_lens, c.mix_prob) if self.training else batch.wavs
        features, lens = self.encoder.frontend(heard, batch.wav_lens)
        features = scale_gradient(features, c.frontend_grad_scale)
        n_frames = features.shape[1]
        valid = padding_mask(lens, n_frames)
        targets = self.targets.batch(batch.ids, batch.offsets, lens.cpu(), self.hop, n_frames).to(lens.device)
        mask = compute_span_mask(lens, c.mask_prob, c.mask_span, min_masks=c.mask_min_spans, max_len=n_frames)
        if not mask.any():
            raise ConfigError(
                f"hubert: no frame of this batch was masked (frame lengths {lens.tolist()}); raise "
                "objective.mask_min_spans or data.min_seconds."
            )
        context = self.encoder.encoder
        hidden = context.contextualise(self.masker(context.project(features), mask), valid)
        losses, stats = [], {}
        for layer, head in zip(self.head_layers, self.heads):
            logits = head(hidden[layer][mask]).float()
            loss = F.cross_entropy(logits, targets[mask])
            losses.append(loss)
            name = "" if layer == self.head_layers[0] else f"_layer{layer}"
            stats[f"ce{name}"] = float(loss.detach())
            stats[f"acc_masked{name}"] = float((logits.argmax(-1) == targets[mask]).float().mean())
        loss = torch.stack(losses).mean()
        unmasked = valid & ~mask
        if unmasked.any():  # trained on when unmasked_weight > 0, else only watched
            with torch.set_grad_enabled(torch.is_grad_enabled() and c.unmasked_weight > 0):
                logits = self.heads[0](hidden[-1][unmasked]).float()
                stats["acc_unmasked"] = float((logits.argmax(-1) == targets[unmasked]).float().mean())
                if c.unmasked_weight > 0:
                    unmasked_loss = F.cross_entropy(logits, targets[unmasked])
                    loss = loss + c.unmasked_weight * unmasked_loss
                    stats["ce_unmasked"] = float(unmasked_loss.detach())
        stats["masked_fraction"] = float(mask.sum() / valid.sum())
        return Output(loss, stats)
