"""Utterance classification: KS, SID, ER, and IC (several label keys, right only if all are)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evalkit.core.errors import ConfigError
from evalkit.evaluation.kinds.base import TaskKind


def field_value(record: dict, key: str):
    """`record[key]`, where a dotted key (`voice.accent`) reaches into nested fields."""
    value = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _has(record: dict, key: str) -> bool:
    try:
        field_value(record, key)
        return True
    except KeyError:
        return False


class Classification(TaskKind):
    """`labels: {keys: [k1, k2, ...]}`: one output per record key; classes from the train split."""

    def __init__(self, task, data, **kwargs) -> None:
        super().__init__(task, data, **kwargs)
        self.keys: list[str] = list(task.labels.get("keys", ["label"]))
        for split in self.splits:
            self._check_labels(split)
        train = self.records("train")
        self.classes = [sorted({str(field_value(r, k)) for r in train}) for k in self.keys]
        self.index = [{c: i for i, c in enumerate(cs)} for cs in self.classes]

    def _check_labels(self, split: str) -> None:
        """Every record of the split has each label key, holding one value (text or a number)."""
        for r in self.records(split):
            for k in self.keys:
                if not _has(r, k):
                    raise ConfigError(
                        f"{self.manifest(split)}: record {r['id']!r} lacks label key {k!r} needed by task "
                        f"{self.task.name!r} (labels.keys in {self.task.source}). Fix the record or the task's "
                        "labels.keys."
                    )
                value = field_value(r, k)
                if isinstance(value, list | dict) or value is None:
                    raise ConfigError(
                        f"{self.manifest(split)}: record {r['id']!r} has label {k} = {value!r:.60}; a class "
                        "label is one text or number (a record with several labels needs one key each, "
                        "listed in the task's labels.keys)."
                    )

    def data_warnings(self) -> list[str]:
        """Dev/test labels never seen in train: a head cannot predict them, so those records can only be
        scored wrong (a split made by hand, a typo in a label)."""
        out = []
        for split in (s for s in self.splits if s != "train"):
            for j, k in enumerate(self.keys):
                values = [str(field_value(r, k)) for r in self.records(split) if _has(r, k)]
                unseen = sorted({v for v in values if v not in self.index[j]})
                if unseen:
                    count = sum(v in unseen for v in values)
                    out.append(
                        f"{self.manifest(split)}: {count} record(s) have a {k} never seen in the train split "
                        f"({', '.join(map(repr, unseen[:5]))}{', ...' if len(unseen) > 5 else ''}); task "
                        f"{self.task.name!r} scores them as errors."
                    )
        return out

    def head_args(self) -> dict[str, Any]:
        sizes = [len(c) for c in self.classes]
        return {"n_classes": sizes if len(sizes) > 1 else sizes[0]}

    def label(self, record: dict):
        vals = tuple(str(field_value(record, k)) for k in self.keys)
        return vals if len(vals) > 1 else vals[0]

    def target(self, record: dict) -> tuple[int, ...]:
        return tuple(self.index[j].get(str(field_value(record, k)), -100) for j, k in enumerate(self.keys))

    @staticmethod
    def _outputs(out) -> list[torch.Tensor]:
        return list(out) if isinstance(out, list | tuple) else [out]

    def loss(self, out, targets, lens, criterion=None) -> torch.Tensor:
        t = torch.tensor(targets, dtype=torch.long, device=self._outputs(out)[0].device)
        return sum(
            F.cross_entropy(o.float(), t[:, j], ignore_index=-100) for j, o in enumerate(self._outputs(out))
        )

    def predict(self, out, lens) -> list:
        outs = self._outputs(out)
        idx = [o.argmax(-1).tolist() for o in outs]
        preds = []
        for i in range(len(idx[0])):
            vals = tuple(self.classes[j][idx[j][i]] for j in range(len(outs)))
            preds.append(vals if len(vals) > 1 else vals[0])
        return preds

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        metrics = self.metrics()
        rows = []
        for r in self.records(split):
            ref, hyp = self.label(r), preds[r["id"]]
            stats = [m.update([ref], [hyp])[0] for m in metrics]
            rows.append(
                {
                    "id": r["id"],
                    "ref": ref,
                    "pred": hyp,
                    **{m.name: m.item_score(s) for m, s in zip(metrics, stats)},
                }
            )
        return metrics, rows
