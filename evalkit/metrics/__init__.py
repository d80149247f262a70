"""The metrics of the ten SUPERB tasks, built from per-item sufficient statistics.

Every metric is two functions: `item_stats(ref, hyp) -> tuple` for one item
(an utterance, a recording, a trial or a query-document pair) and
`aggregate(list_of_stats) -> float` for a corpus. The samples file logs each
item's stats, the corpus number is recomputed from them, and `bootstrap_ci`
resamples them for every metric alike; ratio metrics (WER = total edits /
total reference words) are therefore ratios of sums, never means of ratios.

`Metric` wraps the pair torchmetrics-style (`update()` / `compute()`, with
`higher_is_better`), and `METRICS` lets a task name them in YAML:
`metrics: [{name: der, collar: 0.25, primary: true}]`. Values are fractions
(0.05, not 5 %); the leaderboard scales them.

This module holds `Metric` and the registry; the metrics themselves live in
`stats` (shared aggregates, the bootstrap), `text` (WER, CER, PER, slot
filling), `classification` (accuracy), `detection` (EER, minDCF, MTWV) and
`diarization` (DER, segments), each with one-call corpus functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.registry import Registry
from evalkit.metrics.classification import accuracy_item
from evalkit.metrics.detection import (
    TWVCurve,
    eer_from_stats,
    min_dcf_from_stats,
    mtwv_from_stats,
    qbe_item,
    trial_item,
)
from evalkit.metrics.diarization import der_from_stats, der_item
from evalkit.metrics.stats import (
    Stats,
    bootstrap_ci,
    group_resamples,
    mean_of_items,
    percentile_interval,
    ratio_of_sums,
)
from evalkit.metrics.text import cer_item, per_item, slot_type_f1_item, slot_value_cer_item, wer_item


@dataclass
class Metric:
    """A metric over items: `update()` scores a batch and keeps each item's stats, `compute()`
    aggregates them. `params` are the options it was built with (for the result JSON).

    `by_group(stats)`: for a metric whose bootstrap resamples groups of items rather than items (MTWV:
    terms, each with all of its query-document pairs), an object prepared once from the stats, with
    `groups` (each item's group number) and `value(weights)` (the metric with group g counted
    weights[g] times); None: items are resampled alone (`bootstrap_ci`)."""

    name: str
    higher_is_better: bool
    item_stats: Callable[[Any, Any], Stats]
    aggregate: Callable[[Sequence[Stats]], float]
    params: dict = field(default_factory=dict)
    primary: bool = False
    stats: list[Stats] = field(default_factory=list)
    by_group: Callable[[Sequence[Stats]], Any] | None = None

    def update(self, refs: Sequence[Any], hyps: Sequence[Any]) -> list[Stats]:
        """Score references against hypotheses (scores, for trial metrics); returns the new stats."""
        if len(refs) != len(hyps):
            raise EvalkitError(f"Metric {self.name}: {len(refs)} references but {len(hyps)} hypotheses.")
        new = [self.item_stats(r, h) for r, h in zip(refs, hyps)]
        self.stats.extend(new)
        return new

    def compute(self) -> float:
        return self.aggregate(self.stats)

    def reset(self) -> None:
        self.stats = []

    def item_score(self, stats: Stats) -> float | None:
        """The metric on one item alone (for the samples file); None where undefined (EER of one trial)."""
        try:
            return self.aggregate([stats])
        except EvalkitError:
            return None

    def confidence_interval(self, n: int = 1000, seed: int = 0) -> tuple[float, float]:
        if self.by_group is not None:
            if not self.stats:
                raise EvalkitError(f"Cannot bootstrap {self.name} over zero items.")
            return percentile_interval(group_resamples(self.by_group(self.stats), n, seed), n)
        return bootstrap_ci(self.stats, self.aggregate, n=n, seed=seed)


METRICS = Registry("metric")


def _simple(name: str, higher_is_better: bool, item: Callable, aggregate: Callable) -> None:
    METRICS.register(name, lambda: Metric(name, higher_is_better, item, aggregate))


_simple("wer", False, wer_item, ratio_of_sums)
_simple("cer", False, cer_item, ratio_of_sums)
_simple("per", False, per_item, ratio_of_sums)
_simple("accuracy", True, accuracy_item, mean_of_items)
_simple("eer", False, trial_item, eer_from_stats)
_simple("slot_type_f1", True, slot_type_f1_item, mean_of_items)
_simple("slot_value_cer", False, slot_value_cer_item, ratio_of_sums)


def _check_option(metric: str, key: str, value: Any, ok: Callable[[float], bool], rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        raise ConfigError(f"metric {metric!r}: option {key!r} must be {rule}, got {value!r}.")


@METRICS.register("min_dcf")
def _min_dcf(p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> Metric:
    _check_option("min_dcf", "p_target", p_target, lambda v: 0 < v < 1, "a probability in (0, 1)")
    for key, cost in (("c_miss", c_miss), ("c_fa", c_fa)):
        _check_option("min_dcf", key, cost, lambda v: v > 0, "a positive number")

    def aggregate(stats):
        return min_dcf_from_stats(stats, p_target, c_miss, c_fa)

    return Metric("min_dcf", False, trial_item, aggregate, dict(p_target=p_target, c_miss=c_miss, c_fa=c_fa))


@METRICS.register("der")
def _der(collar: float = 0.0, skip_overlap: bool = False) -> Metric:
    _check_option("der", "collar", collar, lambda v: v >= 0, "a number of seconds >= 0")

    def item(ref, hyp):
        return der_item(ref, hyp, collar, skip_overlap)

    return Metric("der", False, item, der_from_stats, dict(collar=collar, skip_overlap=skip_overlap))


@METRICS.register("mtwv")
def _mtwv(beta: float = 999.9) -> Metric:
    _check_option("mtwv", "beta", beta, lambda v: v > 0, "a positive number")

    def aggregate(stats):
        return mtwv_from_stats(stats, beta)

    def by_term(stats) -> TWVCurve:
        return TWVCurve(stats, beta)

    return Metric("mtwv", True, qbe_item, aggregate, dict(beta=beta), by_group=by_term)


def higher_is_better(name: str) -> bool:
    """The direction of a registered metric, the one source of it (the leaderboard asks here)."""
    return METRICS.get(name)().higher_is_better


def metric_from_spec(spec: str | dict, where: str = "metrics") -> Metric:
    """Build a metric from a task YAML entry: "wer" or {name: der, collar: 0.25, primary: true}."""
    if not isinstance(spec, str | dict):
        raise ConfigError(f"{where}: a metric entry is a name or a mapping with 'name', got {spec!r}.")
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise ConfigError(f"{where}: a metric entry needs a 'name' (one of {', '.join(METRICS.names())}).")
    name, primary = spec.pop("name"), bool(spec.pop("primary", False))
    factory = METRICS.get(name)
    allowed = inspect.signature(factory).parameters
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        options = ", ".join(allowed) or "none"
        raise ConfigError(
            f"{where}: metric {name!r} has no option(s) {', '.join(unknown)} (options: {options})."
        )
    try:
        metric = factory(**spec)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    metric.primary = primary
    return metric
