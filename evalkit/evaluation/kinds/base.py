"""What every task kind provides to the trainer.

A task YAML is data; its `kind` picks one of these recipes, which knows how
to turn manifest records into targets, a head's output into a loss and into
predictions, and predictions into metrics and samples. The trainer
(`evalkit/train.py`) is the same loop for all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalkit.core.errors import ConfigError
from evalkit.core.manifest import read_manifest
from evalkit.evaluation.task import TaskConfig


class Recipe:
    """Base class: data access and the hooks each kind fills in."""

    def __init__(self, task: TaskConfig, data: Path) -> None:
        self.task = task
        self.data = Path(data)
        self.folder = self.data / task.corpus
        if not self.folder.is_dir():
            raise ConfigError(
                f"{self.folder}: corpus folder {task.corpus!r} of task {task.name!r} not found under --data {self.data}. "
                "Point --data at a suite made by `evalkit synth` or at prepared corpora."
            )
        self._records: dict[str, list[dict]] = {}

    def manifest(self, split: str) -> Path:
        return self.folder / f"{self.task.splits[split]}.jsonl"

    def records(self, split: str) -> list[dict]:
        if split not in self._records:
            self._records[split] = read_manifest(self.manifest(split))
        return self._records[split]

    # --- hooks -------------------------------------------------------------------------------

    def head_args(self) -> dict[str, Any]:
        """Sizes the head needs from the data (classes, vocabulary)."""
        return {}

    def criterion(self, head: nn.Module) -> nn.Module | None:
        """A loss module with parameters of its own (AM-softmax), trained with the head."""
        return None

    def target(self, record: dict) -> Any:
        """One utterance's training target (computed once)."""
        raise NotImplementedError

    def loss(self, out: Any, targets: list, lens: torch.Tensor, criterion: nn.Module | None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, out: Any, lens: torch.Tensor) -> list:
        """Per-utterance predictions from a head's output, as `score` takes them (labels, strings, SD's frame
        probabilities); `score` turns them into the JSON-able sample rows."""
        raise NotImplementedError

    def tune(self, preds: dict[str, Any]) -> dict:
        """Fit post-processing settings on dev predictions (SD's threshold and median filter).

        Called once per selected run, before its dev and test scoring; returns what it chose
        (recorded in the result), {} when the kind has nothing to tune.
        """
        return {}

    def score(self, split: str, preds: dict[str, Any]) -> tuple[dict, list[dict]]:
        """Metric objects (updated) and per-item sample rows for a split's predictions."""
        raise NotImplementedError

    def metrics(self):
        return [m.build() for m in self.task.metrics]


def pad_targets(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), max(1, int(lens.max()) if len(seqs) else 1), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lens
