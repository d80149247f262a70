"""DistilHuBERT (Chang et al., 2022): a shallow student predicts several layers of a frozen teacher.

The student is the teacher's front-end plus a few (2) context layers; one
linear prediction head per chosen teacher layer reads the student's last layer
and regresses that teacher layer, with L1 + λ·(−log σ(cosine)) per frame
(λ = 1), averaged over valid frames and heads. The paper's teacher is HuBERT
Base and its heads target layers 4, 8 and 12; here any upstream checkpoint
can teach, and by default the heads target `n_targets` layers evenly spaced
up to the teacher's last (4, 8, 12 of 12; 2, 3, 4 of 4). A teacher with
another frame rate is read at the frames whose centres are nearest the
student's (all front-ends centre frame j at sample 200 + hop·j).

The student's architecture is the recipe's `encoder:` section (the shipped
recipes give the teacher's sizes with 2 layers). When front-end and layer
sizes match the teacher's, the student starts from the teacher's front-end
and first layers, as in the paper; otherwise it starts at random (the setup
report says which).

The teacher is loaded frozen by `upstreams.load.load_upstream` and kept outside the
module tree: it is not saved with the student, and only the student trains.
Recipes name it `${work}/hubert-small`: the run of hubert-small.yaml (see `upstreams.work`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.config import SerialisableConfig, check_positive
from evalkit.core.errors import ConfigError
from upstreams.base import Upstream, padding_mask
from upstreams.encoder import SSLEncoder
from upstreams.load import load_upstream
from upstreams.objective import Batch, Objective, Output, PretrainData
from upstreams.work import checked_run_folder, resolve_work


@dataclass
class DistilConfig(SerialisableConfig):
    """The objective's settings (the `objective:` section of a recipe). Defaults: the paper's."""

    teacher: str = ""  # an upstream spec: usually a checkpoint folder (the HuBERT run's --out)
    target_layers: list[int] = field(
        default_factory=list
    )  # teacher hidden states to predict; [] = evenly spaced
    n_targets: int = 3  # how many, when target_layers is empty
    cosine_weight: float = 1.0  # λ

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ConfigError(
                "objective.teacher is empty: DistilHuBERT needs a teacher upstream, usually a HuBERT run's "
                "output folder, e.g. ${work}/hubert-small."
            )
        resolve_work(self.teacher, "objective.teacher")
        check_positive("objective", n_targets=self.n_targets)
        if self.cosine_weight < 0:
            raise ConfigError(f"objective.cosine_weight must be >= 0; got {self.cosine_weight}.")
        self.target_layers = [int(x) for x in self.target_layers]


def evenly_spaced_layers(n_layers: int, n_targets: int) -> list[int]:
    """`n_targets` distinct layers among 1..n_layers, evenly spaced and ending at the last."""
    n = min(n_targets, n_layers)
    return [math.ceil(n_layers * k / n) for k in range(1, n + 1)]


def distillation_loss(
    prediction: torch.Tensor, target: torch.Tensor, cosine_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 + λ·(−log σ(cos)), mean cosine) over frames [N, D], in fp32."""
    prediction, target = prediction.float(), target.float()
    cosine = F.cosine_similarity(prediction, target, dim=-1)
    l1 = (prediction - target).abs().mean(-1)
    loss = (l1 - cosine_weight * F.logsigmoid(cosine)).mean()
    return loss, cosine.detach().mean()


def copy_from_teacher(student: SSLEncoder, teacher: Upstream) -> str:
    """Initialises the student from the teacher's front-end and first layers where architectures match."""
    if not isinstance(teacher, SSLEncoder):
        return "random (the teacher is not an evalkit encoder)"
    s_enc, t_enc = student.encoder_config.to_dict(), teacher.encoder_config.to_dict()
    if student.frontend_config != teacher.frontend_config or {**s_enc, "layers": 0} != {**t_enc, "layers": 0}:
        return "random (student and teacher architectures differ beyond the layer count)"
    if student.encoder_config.layers > teacher.encoder_config.layers:
        return "random (the student has more layers than the teacher)"
    state = teacher.state_dict()
    with torch.no_grad():
        for name, param in student.state_dict().items():
            param.copy_(state[name])
    return f"copied from the teacher's front-end and layers 1-{student.encoder_config.layers}"


class DistilHuBERT(Objective):
    """Layer-wise distillation of a frozen teacher into a shallow `SSLEncoder` student."""

    settings_class = DistilConfig
    method = "distilhubert"

    def __init__(self, encoder: dict, **objective) -> None:
        super().__init__()
        self.settings = c = self.settings_class.from_dict(objective, where="objective")
        self.teacher_path = checked_run_folder(c.teacher, "objective.teacher")
        teacher = load_upstream(self.teacher_path)
        self.__dict__["teacher"] = teacher  # frozen, outside the module tree: not saved, not trained
        self.encoder = SSLEncoder(**encoder)
        self.init_report = copy_from_teacher(self.encoder, teacher)
        n_teacher = int(teacher.num_layers) - 1  # hidden states 1..n are layer outputs
        self.target_layers = c.target_layers or evenly_spaced_layers(n_teacher, c.n_targets)
        bad = [x for x in self.target_layers if not 0 <= x <= n_teacher]
        if bad:
            raise ConfigError(
                f"objective.target_layers {bad}: the teacher {c.teacher!r} has hidden states 0..{n_teacher}."
            )
        self.heads = nn.ModuleList(
            nn.Linear(self.encoder.hidden_size, int(teacher.hidden_size)) for _ in self.target_layers
        )
        self.teacher_hop = SAMPLE_RATE / float(teacher.frame_rate)
        self.student_hop = SAMPLE_RATE / self.encoder.frame_rate

    def config(self) -> dict:
        return {"method": self.method, "encoder": self.encoder.config, "objective": self.settings.to_dict()}

    def setup(self, data: PretrainData, workdir: Path, log=print) -> dict:
        """Nothing to compute (the teacher is loaded with the objective); reports what was built."""
        log(
            f"distilhubert: teacher {self.teacher_path}, target layers {self.target_layers}, "
            f"student {self.encoder.encoder_config.layers} layers, initialised {self.init_report}"
        )
        return {
            "teacher": self.teacher_path,
            "target_layers": self.target_layers,
            "student_layers": self.encoder.encoder_config.layers,
            "student_init": self.init_report,
        }

    def _teacher_states(self, batch: Batch, n_frames: int) -> list[torch.Tensor]:
        """The target layers of the teacher, at the student's frames (nearest frame centre)."""
        teacher = self.teacher
        device = batch.wavs.device
        if next(teacher.parameters(), torch.empty(0)).device != device:
            teacher.to(device)
        with torch.no_grad():
            hidden, lens = teacher(batch.wavs, batch.wav_lens)
        if self.teacher_hop == self.student_hop and hidden[0].shape[1] >= n_frames:
            return [hidden[x][:, :n_frames] for x in self.target_layers]
        index = torch.round(
            torch.arange(n_frames, device=device) * self.student_hop / self.teacher_hop
        ).long()
        index = torch.minimum(index[None, :], (lens.to(device)[:, None] - 1).clamp(min=0))  # [B, T]
        return [
            h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))
            for h in (hidden[x] for x in self.target_layers)
        ]

    def forward(self, batch: Batch) -> Output:
        hidden, lens = self.encoder(batch.wavs, batch.wav_lens)
        last = hidden[-1]
        valid = padding_mask(lens, last.shape[1])
        targets = self._teacher_states(batch, last.shape[1])
        losses, stats = [], {}
        for layer, head, target in zip(self.target_layers, self.heads, targets):
            loss, cosine = distillation_loss(head(last[valid]), target[valid], self.settings.cosine_weight)
            losses.append(loss)
            stats[f"cos_layer{layer}"] = float(cosine)
        return Output(torch.stack(losses).mean(), stats)
