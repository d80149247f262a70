"""Several head seeds: one seed's run (`SeedRun`), the result over seeds (`over_seeds`: means, standard
deviations, the interval of the mean) and the finished seeds kept on disk while the others train
(`SeedStore`), so that an interrupted run resumes at the seed it was training."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.results import HeadResult, Result
from evalkit.metrics import Metric
from evalkit.metrics.stats import bootstrap_ci


@dataclass
class SeedRun:
    """One head seed's trained run: its result body, the reference head's sample rows, and every head's
    test metrics as scored (their per-item stats give the interval of the mean over seeds)."""

    seed: int
    result: Result
    samples: list[dict]
    test_metrics: dict[str, list[Metric]]


@dataclass
class SeedStore:
    """Finished head seeds of one task's run, kept on disk while its other seeds train: what an
    interrupted evaluation of several head seeds resumes from. The files, `<folder>/.<task>.seed<k>.partial.json`,
    are hidden, so that nothing reading result files takes one for a result. `key` says how the run is made
    (upstream weights, task, protocol, steps, ...): a seed file made another way is not read, and is
    replaced. The evaluation deletes the files once the task's result is written."""

    folder: Path
    task: str
    key: dict

    def path(self, seed: int) -> Path:
        return self.folder / f".{self.task}.seed{seed}.partial.json"

    def save(self, run: SeedRun) -> None:
        data = {
            "key": self.key,
            "seed": run.seed,
            "result": run.result.to_dict(),
            "samples": run.samples,
            "test_stats": {
                head: [list(map(list, m.stats)) for m in ms] for head, ms in run.test_metrics.items()
            },
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(run.seed), json.dumps(data))

    def load(self, seed: int, new_metrics: Callable[[], list[Metric]]) -> SeedRun | None:
        """The seed's run as it finished, or None (no file, an unreadable one, or one made otherwise);
        `new_metrics` builds the task's metrics, which get the seed's test stats."""
        try:
            data = json.loads(self.path(seed).read_text(encoding="utf-8"))
            if data["key"] != json.loads(json.dumps(self.key)) or data["seed"] != seed:
                return None
            body = dict(data["result"])
            body["heads"] = {name: HeadResult(**h) for name, h in body["heads"].items()}
            test_metrics = {}
            for head, stats in data["test_stats"].items():
                metrics = new_metrics()
                for m, rows in zip(metrics, stats, strict=True):
                    m.stats = [tuple(row) for row in rows]
                test_metrics[head] = metrics
            return SeedRun(seed, Result(**body), data["samples"], test_metrics)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def clear(self) -> None:
        for path in self.folder.glob(f".{self.task}.seed*.partial.json"):
            path.unlink(missing_ok=True)


def over_seeds(runs: list[SeedRun]) -> Result:
    """The result of several head seeds: every head's metrics averaged over the seeds (the number a
    leaderboard shows), their sample standard deviation (`metrics_sd`, the reference head's), a 95%
    interval of the mean, and each seed's own numbers under `seeds`.

    A head's other top-level values summarise the seeds: its layer weights, dev curves and best dev
    values averaged; `lr` the learning rate most seeds chose (ties: the smaller), `best_step` the lower
    median; `postprocess` only where every seed tuned the same. `seeds` has each seed's exact ones."""
    first = runs[0].result
    heads = {name: _head_over_seeds(name, runs) for name in first.heads}
    ref = heads[first.head]
    metrics_sd = {
        split: {m: _sd([r.result.metrics[split][m] for r in runs]) for m in first.metrics[split]}
        for split in ("dev", "test")
    }
    return replace(
        first,
        metrics=ref.metrics,
        metrics_sd=metrics_sd,
        ci95=ref.ci95,
        lr=ref.lr,
        layer_weights=ref.layer_weights,
        postprocess=ref.postprocess,
        heads=heads,
        seeds={str(r.seed): _seed_record(r.result) for r in runs},
    )


def _seed_record(r: Result) -> dict:
    """One seed's own numbers: the reference head's on top (as a single-seed result has them), every
    head's under `heads`."""
    record = {
        "metrics": r.metrics,
        "ci95": r.ci95,
        "lr": r.lr,
        "best_step": r.heads[r.head].best_step,
        "layer_weights": r.layer_weights,
        "postprocess": r.postprocess,
        "heads": {name: h.to_dict() for name, h in r.heads.items()},
    }
    return {k: v for k, v in record.items() if v is not None}


def _rates(grids) -> list[str]:
    """The learning-rate keys ("<lr:g>") of several seeds' grids, in the order of their rates."""
    return sorted({lr for grid in grids for lr in grid}, key=float)


def _head_over_seeds(name: str, runs: list[SeedRun]) -> HeadResult:
    each = [r.result.heads[name] for r in runs]
    lrs = [h.lr for h in each]
    steps = sorted(h.best_step for h in each)
    posts = [h.postprocess for h in each]
    return HeadResult(
        type=each[0].type,
        metrics={
            split: {m: _mean([h.metrics[split][m] for h in each]) for m in each[0].metrics[split]}
            for split in ("dev", "test")
        },
        ci95={"test": mean_intervals([r.test_metrics[name] for r in runs])},
        lr=min(set(lrs), key=lambda lr: (-lrs.count(lr), lr)),
        # a rate extend_grid added for some seeds only is averaged over the seeds that tried it
        lr_grid={
            lr: None if any(v is None for v in tried) else _mean(tried)
            for lr in _rates(h.lr_grid for h in each)
            for tried in [[h.lr_grid[lr] for h in each if lr in h.lr_grid]]
        },
        best_step=steps[(len(steps) - 1) // 2],
        dev_curves={
            lr: [(step, _mean([c[i][1] for c in curves])) for i, (step, _) in enumerate(curves[0])]
            for lr in _rates(h.dev_curves for h in each)
            for curves in [[h.dev_curves[lr] for h in each if lr in h.dev_curves]]
        },
        layer_weights=[_mean(ws) for ws in zip(*(h.layer_weights for h in each))],
        head_parameters=each[0].head_parameters,
        steps=each[0].steps,
        postprocess=posts[0] if all(p == posts[0] for p in posts) else None,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1): the spread a new seed's number would have."""
    return statistics.stdev(values)


def mean_intervals(per_seed: list[list[Metric]], n: int = 1000, seed: int = 0) -> dict:
    """{metric: [low, high] or None}: 95% bootstrap intervals of each metric's mean over the seeds.

    Every seed scored the same test items in the same order, so the items are resampled jointly:
    a resample's value is the mean of the seeds' metrics on the same items (the interval of the
    item sampling; the spread over seeds is `metrics_sd`).
    """
    out = {}
    for k, metric in enumerate(per_seed[0]):
        stats = [seed_metrics[k].stats for seed_metrics in per_seed]
        if len({len(s) for s in stats}) != 1:
            raise EvalkitError(f"{metric.name}: the head seeds scored different numbers of test items.")
        low, high = bootstrap_ci(*_side_by_side(stats, metric.aggregate), n=n, seed=seed)
        out[metric.name] = None if math.isnan(low) else [low, high]
    return out


def _side_by_side(stats: list[list], aggregate) -> tuple[list, Callable]:
    """Each item's stats of every seed as one item, and the mean of the seeds' metric over such items."""
    n = len(stats)
    if all(isinstance(v, int | float | np.number) for s in stats for v in (s[0] if s else ())):
        width = len(stats[0][0]) if stats[0] else 0  # numeric: one array row per item (fast)

        def mean_of_seeds(table) -> float:
            table = np.asarray(table)
            return _mean([aggregate(table[:, j * width : (j + 1) * width]) for j in range(n)])

        return [tuple(v for s in stats for v in s[i]) for i in range(len(stats[0]))], mean_of_seeds

    def mean_of_seed_lists(items) -> float:
        return _mean([aggregate([item[j] for item in items]) for j in range(n)])

    return list(zip(*stats)), mean_of_seed_lists
