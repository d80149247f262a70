"""Per-item sufficient statistics: the aggregates most metrics share and the bootstrap over items.

A metric's items (utterances, recordings, trials, query-document pairs) each
leave a tuple of statistics; the corpus value is an aggregate over them, so
ratio metrics are ratios of sums and the bootstrap resamples items for every
metric alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from evalkit.core.errors import EvalkitError

Stats = tuple


def stats_table(stats: Sequence[Stats] | np.ndarray, what: str) -> np.ndarray:
    """Stats as a float matrix [items, fields]; an empty corpus has no metric."""
    if len(stats) == 0:
        raise EvalkitError(f"Cannot compute {what}: no items were scored. Check that the split is not empty.")
    return np.asarray(stats, dtype=float).reshape(len(stats), -1)


def ratio_of_sums(stats: Sequence[Stats] | np.ndarray) -> float:
    """sum(numerator) / sum(denominator) over items: corpus-level WER, CER, PER."""
    table = stats_table(stats, "an error rate")
    num, den = table[:, 0].sum(), table[:, 1].sum()
    if den == 0:
        raise EvalkitError("Error rate undefined: the references hold no tokens. Check the reference labels.")
    return float(num / den)


def mean_of_items(stats: Sequence[Stats] | np.ndarray) -> float:
    return float(stats_table(stats, "a mean")[:, 0].mean())


def bootstrap_ci(
    per_item_stats: Sequence[Stats],
    compute_fn: Callable[[Sequence[Stats]], float],
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval: resample items with replacement, recompute the corpus metric.

    `compute_fn` is a metric's aggregate, so a ratio metric is recomputed as a ratio of sums on
    every resample. Numeric stats are resampled as one array (fast), and so are stats whose
    first value names a group and whose others are numbers (QbE's term, score, occurs): the
    names are numbered first, as the aggregate only groups by them. Others are resampled as
    lists. Each resample's draw is made when it is used (drawing all at once took n x items
    integers: 16 GB for QbE's two million trials). Resamples where the metric is undefined
    are skipped; if more than a fifth are, the interval is (nan, nan): the set is too small
    to say.
    """
    if len(per_item_stats) == 0:
        raise EvalkitError("Cannot bootstrap a metric over zero items.")
    rng = np.random.default_rng(seed)
    table = _numeric_table(per_item_stats)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(per_item_stats), size=len(per_item_stats))
        try:
            values.append(compute_fn(table[idx] if table is not None else [per_item_stats[i] for i in idx]))
        except EvalkitError:
            continue  # a degenerate resample (e.g. no target trial): undefined, so left out
    return percentile_interval(values, n, level)


def group_resamples(prepared, n: int, seed: int = 0) -> list[float]:
    """A metric on `n` bootstrap resamples of the groups of its items (MTWV: terms, with all of their
    pairs). `prepared`: the metric's `by_group` object, with `groups` (each item's group number) and
    `value(weights)` (the metric with group g counted weights[g] times). Undefined resamples are left out."""
    present = np.unique(prepared.groups)
    size = int(present.max()) + 1
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        drawn = present[rng.integers(0, len(present), size=len(present))]
        try:
            values.append(prepared.value(np.bincount(drawn, minlength=size)))
        except EvalkitError:
            continue  # a degenerate resample (no group drawn has a target): undefined, left out
    return values


def percentile_interval(values: Sequence[float], n: int, level: float = 0.95) -> tuple[float, float]:
    """The `level` percentile interval of a bootstrap's `values`, of `n` resamples drawn; (nan, nan) when
    more than a fifth were undefined (left out of `values`): too few items to say."""
    if len(values) < 0.8 * n:  # too few items for a meaningful interval
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _numeric_table(stats: Sequence[Stats]) -> np.ndarray | None:
    """The stats as one float array [items, values], group names numbered; None when they are not numbers
    (or a name followed by numbers)."""

    def number(v) -> bool:
        return isinstance(v, int | float | np.number) and not isinstance(v, bool)

    first = stats[0]
    if all(isinstance(v, int | float | np.number) for v in first):
        return np.asarray(stats, dtype=float)
    if len(first) > 1 and isinstance(first[0], str) and all(number(v) for v in first[1:]):
        names = [row[0] for row in stats]
        if all(isinstance(name, str) for name in names):
            _, ids = np.unique(np.asarray(names), return_inverse=True)
            return np.column_stack([ids.astype(float), np.asarray([row[1:] for row in stats], dtype=float)])
    return None


def corpus_value(item: Callable, aggregate: Callable, refs: Sequence, hyps: Sequence) -> float:
    """A corpus metric in one call: each (ref, hyp) item's stats, then the aggregate."""
    if len(refs) != len(hyps):
        raise EvalkitError(f"{len(refs)} references but {len(hyps)} hypotheses.")
    return aggregate([item(r, h) for r, h in zip(refs, hyps)])
