"""Query by example (QbE): no training; subsequence DTW on one layer, the best layer chosen on dev.

Scoring follows s3prl's quesst14_dtw (SUPERB): features standardised per
dimension over the split, and each query's scores z-normalised over the
documents before MTWV applies one threshold to all of them. MTWV counts a trial
per query-document pair and weighs a false alarm with QUESST's beta, 12.49
(tasks/qbe/task.yaml; evalkit/metrics/detection.py says why not NIST STD's 999.9).

`labels` choose the alignment and what is scored:
- `alignment: evalkit` (default): evalkit's (evalkit/evaluation/dtw.py: cosine
  distance, steps (1,0), (0,1), (1,1), cost per path cell);
- `alignment: s3prl`: s3prl's, `distance` (cosine_exp: exp(cosine distance) - 1)
  with each query frame's row min-max scaled (`minmax_rows`), dtw-python's
  asymmetric subsequence steps normalised by the query's frames, queries under
  `min_query_frames` frames scoring 0, features standardised with the unbiased
  standard deviation (torch's, as s3prl);
- `scope: language` (default): the prepared queries x documents (one language);
- `scope: quesst`: QUESST's scorer as SUPERB ran it on the English subset's
  detections: every query x every document of the split in every language
  (`<split>_scope.json`, written by the quesst14 preparer), the trials not
  scored at `default_score` (s3prl passes -10 to score-TWV-Cnxe.sh).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from evalkit.core.errors import ConfigError
from evalkit.core.results import Result
from evalkit.evaluation.dtw import S3PRL_DISTANCES, dtw_scores, s3prl_costs
from evalkit.evaluation.features import CachedFeatures
from evalkit.evaluation.kinds.base import TaskKind, metric_block

ALIGNMENTS = ("evalkit", "s3prl")
SCOPES = ("language", "quesst")


class QbE(TaskKind):
    """Records with role query (term) or document (occurrences); every query is tried on every document.

    Nothing trains: the run reads dev and test only, and picks its layer on dev.
    """

    splits = ("dev", "test")
    trains = False

    def __init__(self, task, data, **kwargs) -> None:
        super().__init__(task, data, **kwargs)
        labels, where = task.labels, f"{task.source or task.name}: labels"
        self.alignment = labels.get("alignment", "evalkit")
        self.distance = labels.get("distance", "cosine_exp")
        self.minmax_rows = labels.get("minmax_rows", True)
        self.min_query_frames = labels.get("min_query_frames", 5)
        self.scope = labels.get("scope", "language")
        self.default_score = labels.get("default_score", -10.0)
        checks = [
            ("alignment", self.alignment in ALIGNMENTS, f"one of {', '.join(ALIGNMENTS)}"),
            ("distance", self.distance in S3PRL_DISTANCES, f"one of {', '.join(S3PRL_DISTANCES)}"),
            ("minmax_rows", isinstance(self.minmax_rows, bool), "true or false"),
            ("min_query_frames", _whole(self.min_query_frames), "a whole number of frames >= 0"),
            ("scope", self.scope in SCOPES, f"one of {', '.join(SCOPES)}"),
            ("default_score", _number(self.default_score), "a number"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{where}.{key} = {labels.get(key)!r}: give {expected}.")
        s3prl_only = [k for k in ("distance", "minmax_rows", "min_query_frames") if k in labels]
        if s3prl_only and self.alignment != "s3prl":
            raise ConfigError(
                f"{where}.{s3prl_only[0]} applies to `alignment: s3prl` only; remove it or set that."
            )

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

    def layer_scores(self, split: str, features, layers: list[int]) -> dict[int, np.ndarray]:
        """Every query's z-normalised score on every document [queries, documents], for each of `layers`.

        As s3prl's quesst14_dtw (SUPERB): each dimension standardised over the split's queries and
        documents, and each query's scores z-normalised over the documents, so that MTWV's one
        threshold means the same for every query. The split is read twice, one utterance at a time,
        whatever the number of layers: once for the statistics, once to align the queries with a block
        of documents at a time (`CHUNK_FRAMES` frames of all `layers`), so that features computed on
        the fly (`--no-cache`) run the upstream twice per utterance, not twice per layer, and QUESST's
        23 hours of a Base model's layers (12 GB of float32 each) are never held at once.
        """
        queries, docs = self.split_roles(split)
        s3prl = self.alignment == "s3prl"
        ids = [r["id"] for r in queries + docs]
        stats = _frame_stats(features, ids, layers, ddof=1 if s3prl else 0)

        def standardised(utt_id: str) -> dict[int, np.ndarray]:
            hidden = _layers(features, utt_id, layers)
            return {k: (hidden[k] - stats[k][0]) / stats[k][1] for k in layers}

        qs = [standardised(r["id"]) for r in queries]
        scores = {k: np.empty((len(queries), len(docs))) for k in layers}
        lengths = getattr(features, "lengths", {})
        budget = max(1, CHUNK_FRAMES // len(layers))
        for chunk in _chunks([lengths.get(r["id"], 1) for r in docs], budget):
            ds = [standardised(docs[j]["id"]) for j in chunk]
            for k in layers:
                q, d = [x[k] for x in qs], [x[k] for x in ds]
                if s3prl:
                    scores[k][:, chunk] = s3prl_costs(
                        q, d, self.distance, self.minmax_rows, self.min_query_frames
                    )
                else:
                    scores[k][:, chunk] = dtw_scores(q, d)
        return {
            k: (m - m.mean(1, keepdims=True)) / np.maximum(m.std(1, keepdims=True), 1e-9)
            for k, m in scores.items()
        }

    def pair_scores(self, split: str, matrix: np.ndarray) -> dict[tuple[str, str], float]:
        """{(query, document): score} of a `layer_scores` matrix."""
        queries, docs = self.split_roles(split)
        return {
            (q["id"], d["id"]): float(matrix[i, j]) for i, q in enumerate(queries) for j, d in enumerate(docs)
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
        if self.scope == "quesst":
            refs = [(q, label) for q, d, label in self.unscored_trials(split, scores)]
            for m in metrics:
                m.update(refs, [self.default_score] * len(refs))
        return metrics, rows

    def unscored_trials(self, split: str, scores: dict) -> list[tuple[str, str, int]]:
        """(query, document, occurs) of the trials of QUESST's scope that the prepared subset does not
        score (other languages' queries and documents), from `<split>_scope.json`."""
        path = self.folder / f"{self.task.splits[split]}_scope.json"
        try:
            scope = json.loads(path.read_text(encoding="utf-8"))
            queries, docs, where = scope["queries"], scope["documents"], scope["occurrences"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{path}: `labels.scope: quesst` needs the scope file that `evalkit prepare quesst14` writes "
                f"({type(e).__name__}: {e}). Prepare the corpus again with this evalkit."
            ) from None
        scored = {q for q, _ in scores}
        trials = []
        for q in queries:
            hits = set(where.get(q, ()))
            trials += [(q, d, int(d in hits)) for d in docs if (q, d) not in scores]
        missing = scored - set(queries)
        if missing:
            raise ConfigError(
                f"{path}: scored queries {sorted(missing)[:3]} are not in the scope; prepare again."
            )
        return trials

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        return self.score_pairs(split, preds)

    def run(self, features: dict, log=print, store=None) -> tuple[Result, list[dict]]:
        """The best layer on dev (or the task's `featurizer.layer`), then test on that layer alone."""
        task = self.task
        num_layers = features["dev"].num_layers
        fixed = task.featurizer.get("layer")
        candidates = [self.layer_position(fixed)] if fixed is not None else list(range(num_layers))
        primary = task.primary_metric
        higher = primary.build().higher_is_better
        dev_by_layer: dict[int, float] = {}
        best, best_matrix = None, None  # the first of the best layers, as max() over the candidates picks
        # a cache gives one layer cheaply: a layer at a time, its frames alone in memory; features computed
        # on the fly run the upstream for every read: all layers from one pass over the split
        cached = isinstance(features["dev"], CachedFeatures)
        for group in [[k] for k in candidates] if cached else [candidates]:
            for layer, matrix in self.layer_scores("dev", features["dev"], group).items():
                metrics, _ = self.score_pairs("dev", self.pair_scores("dev", matrix))
                value = dev_by_layer[layer] = next(m for m in metrics if m.name == primary.name).compute()
                log(f"[{task.name}] layer {self.upstream_layer(layer)}: dev {primary.name} {value:.4f}")
                if best is None or (value > dev_by_layer[best] if higher else value < dev_by_layer[best]):
                    best, best_matrix = layer, matrix
        dev_metrics, _ = self.score_pairs("dev", self.pair_scores("dev", best_matrix))
        test_scores = self.layer_scores("test", features["test"], [best])[best]
        test_metrics, rows = self.score_pairs("test", self.pair_scores("test", test_scores))
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


CHUNK_FRAMES = 100_000
"""Documents' frames standardised and aligned at a time, over all the layers scored (about 300 MB of
float32 at 768 dimensions)."""


def _layers(features, utt_id: str, layers: list[int]) -> dict[int, np.ndarray]:
    """The utterance's hidden states at `layers`: copied one by one out of a cache's memory map
    (CachedFeatures.layer), or all from one run of the upstream (features computed on the fly)."""
    if isinstance(features, CachedFeatures):
        return {k: features.layer(utt_id, k).float().numpy() for k in layers}
    hidden = features.get(utt_id)
    return {k: hidden[k].float().numpy() for k in layers}


def _frame_stats(
    features, ids: list[str], layers: list[int], ddof: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{layer: (mean, standard deviation floored at 1e-9)} per dimension over every frame of the utterances,
    accumulated one utterance at a time in float64; `ddof` 1 is torch's std (s3prl's), 0 numpy's."""
    total: dict[int, np.ndarray] = {}
    squares: dict[int, np.ndarray] = {}
    count = 0
    for utt in ids:
        hidden = _layers(features, utt, layers)
        for k in layers:
            x = hidden[k].astype(np.float64)
            total[k] = total[k] + x.sum(0) if k in total else x.sum(0)
            squares[k] = squares[k] + (x * x).sum(0) if k in squares else (x * x).sum(0)
        count += len(hidden[layers[0]])
    out = {}
    for k in layers:
        mean = total[k] / count
        var = np.maximum(squares[k] - count * mean * mean, 0.0) / max(count - ddof, 1)
        out[k] = (mean, np.maximum(np.sqrt(var), 1e-9))
    return out


def _chunks(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices whose lengths sum to at most `budget` (an item longer than it alone)."""
    chunks: list[list[int]] = [[]]
    used = 0
    for i, n in enumerate(lengths):
        if chunks[-1] and used + n > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += n
    return [c for c in chunks if c]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
