"""Query by example (QbE): no training; subsequence DTW on one layer, the best layer chosen on dev.

Scoring follows s3prl's quesst14_dtw (SUPERB): features standardised per
dimension over the split, and each query's scores z-normalised over the
documents before MTWV applies one threshold to all of them. The alignment
itself is evalkit's (evalkit/evaluation/dtw.py: cosine distance, steps (1,0), (0,1),
(1,1), cost per path cell), not s3prl's asymmetric steps on min-max scaled
exp-cosine distances. MTWV counts a trial per query-document pair and weighs a
false alarm with QUESST's beta, 12.49 (tasks/qbe/task.yaml; evalkit/metrics/detection.py
says why not NIST STD's 999.9).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.core.results import Result
from evalkit.evaluation.dtw import dtw_scores
from evalkit.evaluation.kinds.base import TaskKind, metric_block


class QbE(TaskKind):
    """Records with role query (term) or document (occurrences); every query is tried on every document.

    Nothing trains: the run reads dev and test only, and picks its layer on dev.
    """

    splits = ("dev", "test")
    trains = False

    def split_roles(self, split: str) -> tuple[list[dict], list[dict]]:
        recs = self.records(split)
        return [r for r in recs if r.get("role") == "query"], [r for r in recs if r.get("role") == "document"]

    def pairs(self, split: str) -> list[tuple[str, str, int]]:
        queries, docs = self.split_roles(split)
        out = []
        for q in queries:
            for d in docs:
                present = any(o["term"] == q["term"] for o in d.get("occurrences", []))
                out.append((q["id"], d["id"], int(present)))
        return out

    def layer_scores(self, split: str, features, layer: int) -> dict[tuple[str, str], float]:
        queries, docs = self.split_roles(split)
        q_feats = [_layer(features, r["id"], layer) for r in queries]
        d_feats = [_layer(features, r["id"], layer) for r in docs]
        # As s3prl's quesst14_dtw (SUPERB): each dimension standardised over the split's queries
        # and documents, and each query's scores z-normalised over the documents, so that
        # MTWV's one threshold means the same for every query
        frames = np.concatenate(q_feats + d_feats)
        mean, std = frames.mean(0), np.maximum(frames.std(0), 1e-9)
        scores = dtw_scores([(q - mean) / std for q in q_feats], [(d - mean) / std for d in d_feats])
        scores = (scores - scores.mean(1, keepdims=True)) / np.maximum(scores.std(1, keepdims=True), 1e-9)
        return {
            (q["id"], d["id"]): float(scores[i, j]) for i, q in enumerate(queries) for j, d in enumerate(docs)
        }

    def score_pairs(self, split: str, scores: dict[tuple[str, str], float]):
        metrics = self.metrics()
        term = {r["id"]: r["term"] for r in self.split_roles(split)[0]}
        rows = []
        for q, d, label in self.pairs(split):
            s = scores[(q, d)]
            for m in metrics:
                m.update([(term[q], label)], [s])
            rows.append({"query": q, "document": d, "term": term[q], "label": label, "score": s})
        return metrics, rows

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        return self.score_pairs(split, preds)

    def run(self, features: dict, log=print) -> tuple[Result, list[dict]]:
        """The best layer on dev (or the task's `featurizer.layer`), then test on that layer alone."""
        task = self.task
        num_layers = features["dev"].num_layers
        fixed = task.featurizer.get("layer")
        candidates = [self.layer_position(fixed)] if fixed is not None else list(range(num_layers))
        primary = task.primary_metric
        dev_by_layer = {}
        for layer in candidates:
            metrics, _ = self.score_pairs("dev", self.layer_scores("dev", features["dev"], layer))
            dev_by_layer[layer] = next(m for m in metrics if m.name == primary.name).compute()
            log(
                f"[{task.name}] layer {self.upstream_layer(layer)}: dev {primary.name} {dev_by_layer[layer]:.4f}"
            )
        higher = primary.build().higher_is_better
        best = (max if higher else min)(dev_by_layer, key=lambda k: dev_by_layer[k])
        dev_metrics, _ = self.score_pairs("dev", self.layer_scores("dev", features["dev"], best))
        test_metrics, rows = self.score_pairs("test", self.layer_scores("test", features["test"], best))
        dev, _ = metric_block(dev_metrics, ci=False)
        test, ci = metric_block(test_metrics, ci=True)
        weights = [0.0] * num_layers
        weights[best] = 1.0
        return Result(
            metrics={"dev": dev, "test": test},
            ci95={"test": ci},
            primary_metric=primary.name,
            higher_is_better=higher,
            head="dtw",
            layer=self.upstream_layer(best),  # the upstream's index, also from a cache of some layers
            dev_by_layer={str(self.upstream_layer(k)): v for k, v in dev_by_layer.items()},
            lr=None,
            lr_grid=[],
            layer_weights=weights,
            heads={},
        ), rows


def _layer(features, utt_id: str, layer: int) -> np.ndarray:
    return features.get(utt_id)[layer].float().numpy()
