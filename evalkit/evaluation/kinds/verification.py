"""Speaker verification (ASV): train a speaker classifier, score trials by cosine of embeddings."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evalkit.core.errors import ConfigError
from evalkit.evaluation.kinds.base import TaskKind
from evalkit.evaluation.losses import AMSoftmaxLoss


class Verification(TaskKind):
    """Train split: speaker labels (AM-softmax); dev/test: `<split>_trials.txt` ("1|0 enroll test")."""

    def __init__(self, task, data, **kwargs) -> None:
        super().__init__(task, data, **kwargs)
        self.speakers = sorted({r["speaker"] for r in self.records("train")})
        self.index = {s: i for i, s in enumerate(self.speakers)}
        self.margin = float(task.labels.get("margin", 0.2))
        self.scale = float(task.labels.get("scale", 30.0))

    def trials(self, split: str) -> list[tuple[int, str, str]]:
        path = self.folder / f"{self.task.splits[split]}_trials.txt"
        if not path.is_file():
            raise ConfigError(
                f"{path}: trial list missing; split {split!r} of task {self.task.name!r} needs one "
                "('<1|0> <enroll id> <test id>' per line)."
            )
        ids = {r["id"] for r in self.records(split)}
        out = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1") or parts[1] not in ids or parts[2] not in ids:
                raise ConfigError(
                    f"{path}:{n}: expected '<1|0> <enroll id> <test id>' with ids from "
                    f"{self.manifest(split).name}, got {line!r}."
                )
            out.append((int(parts[0]), parts[1], parts[2]))
        return out

    def criterion(self, head) -> torch.nn.Module:
        return AMSoftmaxLoss(head.embed_dim, len(self.speakers), margin=self.margin, scale=self.scale)

    def target(self, record: dict) -> int:
        return self.index.get(record["speaker"], -100)

    def loss(self, out, targets, lens, criterion=None) -> torch.Tensor:
        res = criterion(out.float(), torch.tensor(targets, dtype=torch.long, device=out.device))
        return res[0] if isinstance(res, tuple) else res

    def predict(self, out, lens) -> list:
        return list(F.normalize(out.float(), dim=-1).cpu())

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        metrics = self.metrics()
        rows = []
        for label, a, b in self.trials(split):
            s = float((preds[a] * preds[b]).sum())
            for m in metrics:
                m.update([label], [s])
            rows.append({"enroll": a, "test": b, "label": label, "score": s})
        return metrics, rows
