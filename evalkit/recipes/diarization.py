"""Speaker diarization (SD): per-frame speaker activity with permutation-invariant BCE."""

from __future__ import annotations

from typing import Any

import torch

from evalkit.metrics import segments_from_activity
from evalkit.recipes.base import Recipe


class Diarization(Recipe):
    """`labels: {speakers: 2}`; records carry `segments` [[start, end, speaker], ...]."""

    frame_rate: float = 50.0  # set by the trainer from the upstream

    def __init__(self, task, data) -> None:
        super().__init__(task, data)
        self.num_speakers = int(task.labels.get("speakers", 2))

    def head_args(self) -> dict[str, Any]:
        return {"n_speakers": self.num_speakers}

    def target(self, record: dict) -> list:
        order = sorted({s for _, _, s in record["segments"]})[: self.num_speakers]
        return [(float(s), float(e), order.index(spk)) for s, e, spk in record["segments"] if spk in order]

    def activity(self, segments: list, n_frames: int) -> torch.Tensor:
        act = torch.zeros(n_frames, self.num_speakers)
        for s, e, k in segments:
            act[int(round(s * self.frame_rate)) : int(round(e * self.frame_rate)), k] = 1.0
        return act

    def loss(self, out, targets, lens, criterion=None) -> torch.Tensor:
        from evalkit.heads import pit_bce_loss

        labels = torch.stack([self.activity(t, out.shape[1]) for t in targets])
        res = pit_bce_loss(out.float(), labels, lens)
        return res[0] if isinstance(res, tuple) else res

    def predict(self, out, lens) -> list:
        active = (torch.sigmoid(out.float()) > 0.5).numpy()
        return [
            [[round(s, 3), round(e, 3), int(k)] for s, e, k in segments_from_activity(a[:n], self.frame_rate)]
            for a, n in zip(active, lens.tolist())
        ]

    def score(self, split: str, preds: dict[str, Any]):
        metrics = self.metrics()
        rows = []
        for r in self.records(split):
            ref = [(s, e, spk) for s, e, spk in r["segments"]]
            hyp = [(s, e, f"h{k}") for s, e, k in preds[r["id"]]]
            row = {"id": r["id"], "ref": r["segments"], "pred": preds[r["id"]]}
            for m in metrics:
                row[m.name] = m.item_score(m.update([ref], [hyp])[0])
            rows.append(row)
        return metrics, rows
