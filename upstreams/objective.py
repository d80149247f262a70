"""The contract between the one pre-training loop (`evalkit/pretraining/loop.py`) and each method.

A method (HuBERT, wav2vec 2.0, BEST-RQ, DistilHuBERT; SummaryMixing is an
encoder choice, not a method) is an `Objective`: an `nn.Module` holding the
`SSLEncoder` it trains (`self.encoder`, saved as the upstream checkpoint that
`evalkit eval` takes) plus whatever its loss needs (prediction heads,
quantizers, codebooks, a teacher). The loop knows nothing else about it.

    setup(data, workdir, log) -> dict
        Once, before training, on rank 0 (other ranks wait, then call
        `load_setup(workdir)`): fit k-means targets, load a teacher, ... Must be
        idempotent: if `workdir` already holds its results (a resumed run),
        load them instead of recomputing. Returns a JSON-able report (e.g.
        PNMI and purity of k-means targets) that the loop logs and saves.
    load_setup(workdir) -> None
        Load what `setup` wrote (for other ranks and for resumes).
    forward(batch: Batch) -> Output
        The training loss for one batch and a few scalar stats to log
        (masked-prediction accuracy, codebook perplexity, ...).
    config() -> dict
        Everything needed to rebuild the objective (method name included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class Batch:
    wavs: torch.Tensor  # [B, S] float32 16 kHz, zero-padded
    wav_lens: torch.Tensor  # [B] valid samples
    ids: list[str]  # manifest ids of the utterances
    offsets: torch.Tensor  # [B] sample offset of each crop inside its utterance


@dataclass
class Output:
    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class PretrainData:
    """The unlabeled corpus: manifest records (with `alignment` where the suite has it)."""

    manifest: Path
    records: list[dict]


class Objective(nn.Module):
    method: str = ""
    # the schema of a recipe's `objective:` section (a SerialisableConfig), checked by `evalkit validate`
    # without building the model or loading what it builds on
    settings_class: type | None = None

    def setup(self, data: PretrainData, workdir: Path, log=print) -> dict:
        return {}

    def load_setup(self, workdir: Path) -> None:
        return None

    def forward(self, batch: Batch) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError
