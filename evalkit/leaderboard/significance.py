"""Which entries of a task are not significantly worse than its best: a paired bootstrap on test items.

Each result's samples file logs every test item (utterance, recording,
verification trial or query-document pair) with its reference and output.
The items' sufficient statistics are rebuilt from those rows with the
task's own metric (so WER stays a ratio of sums, EER a curve over trials),
items are paired across two upstreams by id, and the test set is resampled
jointly: if the best entry is better in at least 95% of resamples, the other
is significantly worse; otherwise it is marked as tied with the best.

A result trained with several head seeds logs every seed's rows. Its value is
their mean; in the test, each resample also draws, for each such entry, one
of its seeds' runs at random (the items are still resampled jointly), so the
spread between head seeds widens the test: two entries that differ by less
than their seeds do are not called different. One-seed entries are tested
exactly as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.leaderboard.collect import Entry
from evalkit.metrics import Metric, metric_from_spec
from evalkit.metrics.text import parse_tagged_slots, untag

# Verification and QbE scores are logged rounded to 1e-6, which can merge near-tied
# scores; their metrics are therefore only checked to within this much.
TRIAL_TOLERANCE = 0.01
TRIAL_METRICS = frozenset({"eer", "min_dcf", "mtwv"})


@dataclass
class ItemStats:
    """Per-item sufficient statistics of one entry's primary metric on test, keyed by item id.

    `table` has a row per id; with several head seeds it is the first seed's and `seed_tables` has one
    per seed (rows in the same id order)."""

    ids: list[str]
    table: np.ndarray
    aggregate: Callable[[np.ndarray], float]
    seed_tables: list[np.ndarray] = field(default_factory=list)
    by_group: Callable | None = None  # the metric's `by_group` (MTWV resamples terms, not pairs)

    @property
    def tables(self) -> list[np.ndarray]:
        """One table per head seed (one for a single-seed entry)."""
        return self.seed_tables or [self.table]


def item_id(row: dict) -> str:
    """Utterances/recordings by id, verification trials by (enroll, test), QbE pairs by (query, document)."""
    if "id" in row:
        return str(row["id"])
    if "enroll" in row and "test" in row:
        return f"{row['enroll']}\t{row['test']}"
    if "query" in row and "document" in row:
        return f"{row['query']}\t{row['document']}"
    raise EvalkitError(f"a samples row has no item id (id, enroll/test or query/document): {str(row)[:80]}")


def build_metric(task_config: dict, name: str) -> Metric:
    for spec in task_config.get("metrics", []):
        if isinstance(spec, dict) and spec.get("name") == name:
            return metric_from_spec({"name": name, **(spec.get("options") or {})})
    return metric_from_spec(name)


def _ref_hyp(metric: str, row: dict, task_config: dict, terms: dict[str, int]):
    if metric in ("eer", "min_dcf"):
        return row["label"], row["score"]
    if metric == "mtwv":
        return (terms.setdefault(str(row["term"]), len(terms)), row["label"]), row["score"]
    if metric in ("slot_type_f1", "slot_value_cer"):
        return parse_tagged_slots(row["ref"]), parse_tagged_slots(row["pred"])
    if metric == "der":
        return ([tuple(s) for s in row["ref"]], [(s, e, f"h{k}") for s, e, k in row["pred"]])
    if metric in ("wer", "cer") and (task_config.get("labels") or {}).get("unit") == "slot_chars":
        return untag(row["ref"]), untag(row["pred"])
    return row["ref"], row["pred"]


def load_item_stats(entry: Entry) -> ItemStats:
    """Rebuild the primary metric's per-item stats from the entry's samples file, and check that they
    reproduce the reported test value (samples that do not belong to the result are refused); for a
    result of several head seeds, each seed's rows its seed's value, and their mean the reported one."""
    path = entry.samples
    if not path.is_file():
        raise EvalkitError(f"{path}: no samples file beside {entry.path.name}; significance not computed.")
    metric = build_metric(entry.data["task_config"], entry.primary)
    by_seed = _rows_by_seed(entry, metric)
    expected = entry.seed_values() if entry.seeds else {"": entry.value}
    if set(by_seed) != set(expected):
        raise EvalkitError(
            f"{path}: rows of head seeds {_seed_list(by_seed)} but {entry.path.name} has seeds "
            f"{_seed_list(expected)}; the samples do not belong to this result."
        )
    tables = []
    first, (order, _) = next(iter(by_seed.items()))
    for seed, (ids, stats) in by_seed.items():
        if len(set(ids)) != len(ids):
            raise EvalkitError(f"{path}: item ids repeat; cannot pair items across upstreams.")
        if set(ids) != set(order):
            raise EvalkitError(f"{path}: head seed {seed}'s rows are other test items than seed {first}'s.")
        table = np.asarray(stats, dtype=float).reshape(len(stats), -1)
        position = {k: i for i, k in enumerate(ids)}
        table = table[[position[k] for k in order]]
        _check_value(entry, metric, metric.aggregate(table), expected[seed], seed)
        tables.append(table)
    if entry.seeds:
        mean = sum(metric.aggregate(t) for t in tables) / len(tables)
        _check_value(entry, metric, mean, entry.value, "")
    return ItemStats(order, tables[0], metric.aggregate, tables if len(tables) > 1 else [], metric.by_group)


def _rows_by_seed(entry: Entry, metric: Metric) -> dict[str, tuple[list[str], list]]:
    """{head seed ("" for a one-seed file): (item ids, item stats)} of the reference head's sample rows."""
    path = entry.samples
    terms: dict[str, int] = {}
    by_seed: dict[str, tuple[list[str], list]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        heads = {r.get("head") for r in rows}
        if len(heads) > 1:  # only the reference head is logged today; keep it if more arrive
            rows = [r for r in rows if r.get("head") == entry.data.get("head")]
        for row in rows:
            ids, stats = by_seed.setdefault(str(row["seed"]) if "seed" in row else "", ([], []))
            ids.append(item_id(row))
            stats.append(metric.item_stats(*_ref_hyp(metric.name, row, entry.data["task_config"], terms)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, EvalkitError) as e:
        raise EvalkitError(f"{path}: unreadable samples ({type(e).__name__}: {e}).") from None
    if not by_seed:
        raise EvalkitError(
            f"{path}: no rows (every test item has one); the samples do not belong to this result."
        )
    return by_seed


def _seed_list(seeds) -> str:
    return ", ".join(s for s in seeds if s) or "none"


def _check_value(entry: Entry, metric: Metric, value: float, reported: float, seed: str) -> None:
    tol = TRIAL_TOLERANCE if metric.name in TRIAL_METRICS else 1e-6
    if not math.isclose(value, reported, rel_tol=1e-6, abs_tol=tol):
        whose = f"head seed {seed}'s rows give" if seed else "the samples give"
        reports = f"seeds.{seed} of {entry.path.name} reports" if seed else f"{entry.path.name} reports"
        raise EvalkitError(
            f"{entry.samples}: {whose} {metric.name} = {value:.6g} but {reports} {reported:.6g}; "
            "the samples do not belong to this result."
        )


def paired_bootstrap(
    a: ItemStats, b: ItemStats, higher_is_better: bool, n: int = 1000, seed: int = 0
) -> float:
    """Fraction of joint resamples of the common test items in which `a` is strictly better than `b`.

    An entry of several head seeds is, in each resample, one of its seeds' runs drawn at random (from a
    random stream of its own, so that the items drawn are those a one-seed test draws)."""
    common = sorted(set(a.ids) & set(b.ids))
    if not common:
        raise EvalkitError("the two entries share no test item; they were not run on the same test set.")
    ia, ib = {k: i for i, k in enumerate(a.ids)}, {k: i for i, k in enumerate(b.ids)}
    tas = [t[[ia[k] for k in common]] for t in a.tables]
    tbs = [t[[ib[k] for k in common]] for t in b.tables]
    if a.by_group is not None and b.by_group is not None:
        return _paired_group_bootstrap(a, b, tas, tbs, higher_is_better, n, seed)
    return _win_fraction(
        lambda rng: rng.integers(0, len(common), len(common)),
        (tas, lambda t, idx: a.aggregate(t[idx])),
        (tbs, lambda t, idx: b.aggregate(t[idx])),
        higher_is_better,
        n,
        seed,
    )


def _paired_group_bootstrap(
    a: ItemStats, b: ItemStats, tas: list, tbs: list, higher_is_better: bool, n: int, seed: int
) -> float:
    """`paired_bootstrap` for a metric that resamples groups of items (MTWV: terms with all of their
    pairs): the groups are drawn jointly, each entry's metric recomputed with the drawn groups' counts.
    The common items' groups are the first entry's (each entry numbers its own terms; the same query
    is one term in both)."""
    prepared_a = [a.by_group(t) for t in tas]
    prepared_b = [b.by_group(t) for t in tbs]
    _, group = np.unique(prepared_a[0].groups, return_inverse=True)  # shared numbering of the common items
    n_groups = int(group.max()) + 1

    def weights(prepared, drawn_counts):
        w = np.zeros(int(prepared.groups.max()) + 1)
        w[prepared.groups] = drawn_counts[group]  # each entry's own term numbers
        return w

    return _win_fraction(
        lambda rng: np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups),
        (prepared_a, lambda p, counts: p.value(weights(p, counts))),
        (prepared_b, lambda p, counts: p.value(weights(p, counts))),
        higher_is_better,
        n,
        seed,
    )


def _win_fraction(draw, a: tuple, b: tuple, higher_is_better: bool, n: int, seed: int) -> float:
    """The bootstrap loop both tests share: `n` times, `draw(rng)` resamples (items or groups), each entry
    is one of its head seeds' runs drawn at random (`a`, `b`: (runs, value(run, drawn))), and the
    fraction of valid resamples in which `a` is strictly better is returned. A resample whose metric is
    undefined (no target trial, no reference word) is left out; too few valid ones is an error."""
    rng = np.random.default_rng(seed)
    runs = np.random.default_rng([seed, 1])  # which seed's run a several-seed entry is in a resample
    (a_runs, value_a), (b_runs, value_b) = a, b
    wins = total = 0
    for _ in range(n):
        drawn = draw(rng)
        ra = a_runs[int(runs.integers(len(a_runs)))] if len(a_runs) > 1 else a_runs[0]
        rb = b_runs[int(runs.integers(len(b_runs)))] if len(b_runs) > 1 else b_runs[0]
        try:
            va, vb = value_a(ra, drawn), value_b(rb, drawn)
        except EvalkitError:
            continue
        total += 1
        wins += (va > vb) if higher_is_better else (va < vb)
    if total < 0.8 * n:
        raise EvalkitError("too few valid resamples for a bootstrap test (test set too small).")
    return wins / total


@dataclass
class Marks:
    """Per upstream of one task: 'best', 'tied' (not significantly worse) or '' and p = P(best better)."""

    mark: dict[str, str]
    p_better: dict[str, float]
    notes: list[str]


def mark_column(column: dict[str, Entry], n: int = 1000, level: float = 0.95, seed: int = 0) -> Marks:
    """Mark the best entry of a task and every entry not significantly worse than it.

    Entries with exactly the best value are tied without a test. An entry
    whose samples are missing or unusable is left unmarked, with a note.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:  # before any test: not a note per entry
        raise EvalkitError(f"--bootstrap {n}: the paired bootstrap needs at least 1 resample (default 1000).")
    if not column:
        return Marks({}, {}, [])
    higher = next(iter(column.values())).higher_is_better
    pick = max if higher else min
    best_value = pick(e.value for e in column.values())
    bests = sorted(u for u, e in column.items() if e.value == best_value)
    mark = {u: "" for u in column}
    p_better: dict[str, float] = {}
    notes: list[str] = []
    for u in bests:
        mark[u] = "best"
    try:
        ref = load_item_stats(column[bests[0]])
    except EvalkitError as e:
        notes.append(str(e))
        return Marks(mark, p_better, notes)
    for u, e in sorted(column.items()):
        if u in bests:
            continue
        try:
            other = load_item_stats(e)
            p = paired_bootstrap(ref, other, higher, n=n, seed=seed)
        except (EvalkitError, ConfigError) as err:
            notes.append(f"{e.name}: {err}")
            continue
        p_better[u] = p
        if p < level:
            mark[u] = "tied"
    return Marks(mark, p_better, notes)
