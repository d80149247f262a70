"""Leaderboard scores: the official SUPERB score, the same formula for suites of our own, and mean rank.

The SUPERB score (superbbenchmark.org) maps each task's metric linearly so
that FBANK scores 0 and the state of the art 1000, then averages over tasks;
slot filling has two metrics, whose points are averaged first. It uses
*fixed* reference points, so a model's score does not move when other
entries are added. Suites without published references (the synthetic
suite) use the same formula with FBANK measured on that suite and the
metric's perfect value (accuracy/F1/MTWV = 1, error rates = 0) as the upper
reference; those points live in a versioned file per suite
(`evalkit/leaderboard/references/<suite>.json`).

Official values are percentages (QbE as MTWV x 100), as the leaderboard
prints them; result files hold fractions (see `evalkit.metrics`), and
`superb_metrics_from_results` converts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import read_json_object
from evalkit.metrics import METRICS, higher_is_better

# Public reference points of the SUPERB leaderboard (percent; QbE is MTWV x 100), as the site's scoring
# code has them. The table printed in the site's challenge policy swaps the SOTA points of ASV (5.11)
# and SD (5.62) and labels KS's pair as SID's; a paper that copied it scores HuBERT Base 944.3, not 941.0.
SUPERB_FBANK = {
    "PR": 82.01,
    "KS": 41.38,
    "IC": 9.65,
    "SID": 20.06,
    "ER": 48.24,
    "ASR": 23.18,
    "QbE": 0.58,
    "SF-F1": 69.64,
    "SF-CER": 52.94,
    "ASV": 9.56,
    "SD": 10.05,
}
SUPERB_SOTA = {
    "PR": 3.53,
    "KS": 96.66,
    "IC": 98.76,
    "SID": 90.3,
    "ER": 67.62,
    "ASR": 3.62,
    "QbE": 7.36,
    "SF-F1": 89.81,
    "SF-CER": 21.76,
    "ASV": 5.11,
    "SD": 5.62,
}
# Which SUPERB key is which evalkit task and metric; the task part groups keys (SF-F1 + SF-CER -> SF).
SUPERB_KEYS = {
    "PR": ("pr", "per"),
    "KS": ("ks", "accuracy"),
    "IC": ("ic", "accuracy"),
    "SID": ("sid", "accuracy"),
    "ER": ("er", "accuracy"),
    "ASR": ("asr", "wer"),
    "QbE": ("qbe", "mtwv"),
    "SF-F1": ("sf", "slot_type_f1"),
    "SF-CER": ("sf", "slot_value_cer"),
    "ASV": ("asv", "eer"),
    "SD": ("sd", "der"),
}
SUPERB_TASKS = ("PR", "KS", "IC", "SID", "ER", "ASR", "QbE", "SF", "ASV", "SD")
# Error rates and costs, as the metrics registry declares them (their arrows in the tables).
LOWER_IS_BETTER = frozenset(name for name in METRICS.names() if not higher_is_better(name))


def normalized_points(value: float, fbank: float, best: float) -> float:
    """1000 * (value - fbank) / (best - fbank): 0 at FBANK, 1000 at the upper reference, unbounded."""
    if best == fbank:
        raise EvalkitError(f"reference points coincide (FBANK = best = {fbank}); the task cannot be scored.")
    return 1000.0 * ((value - fbank) / (best - fbank))


def _superb_task(key: str) -> str:
    return "SF" if key.startswith("SF-") else key


def superb_points(metrics: Mapping[str, float], partial: bool = False) -> dict[str, float]:
    """Per-task SUPERB points from percentages keyed PR, KS, IC, SID, ER, ASR, QbE, SF-F1, SF-CER, ASV, SD.

    SF's two metrics are averaged into one "SF" entry. Every key is required
    unless `partial=True`, which scores the tasks present (a task with one of
    its two SF metrics is scored on that one); unknown keys are an error.
    """
    unknown = sorted(set(metrics) - set(SUPERB_FBANK))
    if unknown:
        raise EvalkitError(f"unknown SUPERB key(s) {', '.join(unknown)}; expected {', '.join(SUPERB_FBANK)}.")
    missing = [k for k in SUPERB_FBANK if k not in metrics]
    if missing and not partial:
        raise EvalkitError(
            f"the SUPERB score needs all ten tasks; missing {', '.join(missing)}. "
            "Pass partial=True to score only the tasks present (not comparable with the leaderboard)."
        )
    by_task: dict[str, list[float]] = {}
    for key in SUPERB_FBANK:
        if key in metrics:
            p = normalized_points(float(metrics[key]), SUPERB_FBANK[key], SUPERB_SOTA[key])
            by_task.setdefault(_superb_task(key), []).append(p)
    return {t: float(np.mean(by_task[t])) for t in SUPERB_TASKS if t in by_task}


def superb_score(metrics: Mapping[str, float], partial: bool = False) -> float:
    """The official SUPERB score: the mean of `superb_points` over tasks."""
    points = superb_points(metrics, partial)
    if not points:
        raise EvalkitError("no SUPERB task to score.")
    return float(np.mean(list(points.values())))


def superb_metrics_from_results(test: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{task: {metric: fraction}} (test metrics of result files) -> SUPERB percentages for the keys present."""
    out = {}
    for key, (task, metric) in SUPERB_KEYS.items():
        if task in test and metric in test[task]:
            out[key] = 100.0 * float(test[task][metric])
    return out


# --- suites of our own: the same formula with stored reference points -----------------------


def entry_name(task: str, metric: str, primary: str) -> str:
    """A task's primary metric is entry `task`; any other metric scored is `task/metric`."""
    return task if metric == primary else f"{task}/{metric}"


def entry_task(entry: str) -> str:
    return entry.split("/", 1)[0]


def perfect_value(metric: str) -> float:
    """The best value a metric can take: 0 for error rates, 1 for accuracy, F1 and MTWV."""
    return 1.0 if higher_is_better(metric) else 0.0


@dataclass
class Reference:
    """Reference points of one suite: per entry, the FBANK value, the upper reference and the metric.

    Entries are task names (their primary metric) or `task/metric`; entries of
    one task are averaged before the mean over tasks, as SUPERB does for SF.
    `task_version` records which task versions the FBANK values were measured
    with, so a stale file is noticed when a task changes.
    """

    suite: str
    fbank: dict[str, float]
    best: dict[str, float]
    metric: dict[str, str]
    version: int = 1
    task_version: dict[str, int | str] = field(default_factory=dict)
    seed: int | None = None
    note: str = ""

    def points(self, values: Mapping[str, float], partial: bool = False) -> dict[str, float]:
        """Per-task points for {entry: value} (fractions, as in result files)."""
        missing = [e for e in self.fbank if e not in values]
        if missing and not partial:
            raise EvalkitError(
                f"suite {self.suite!r}: missing {', '.join(missing)} for the suite score; "
                "pass partial=True to score the tasks present."
            )
        by_task: dict[str, list[float]] = {}
        for e in self.fbank:
            if e in values:
                p = normalized_points(float(values[e]), self.fbank[e], self.best[e])
                by_task.setdefault(entry_task(e), []).append(p)
        return {t: float(np.mean(v)) for t, v in by_task.items()}

    def score(self, values: Mapping[str, float], partial: bool = False) -> float:
        points = self.points(values, partial)
        if not points:
            raise EvalkitError(f"suite {self.suite!r}: no task to score.")
        return float(np.mean(list(points.values())))

    def to_json(self) -> str:
        data = asdict(self)
        ordered = {
            k: data[k]
            for k in ("suite", "version", "fbank", "best", "metric", "task_version", "seed", "note")
        }
        return json.dumps(ordered, indent=1, sort_keys=False) + "\n"


def superb_reference() -> Reference:
    """The official SUPERB reference points as a `Reference` over evalkit task entries (fractions)."""
    fbank, best, metric = {}, {}, {}
    for key, (task, m) in SUPERB_KEYS.items():
        e = entry_name(task, m, SUPERB_KEYS["SF-F1"][1] if task == "sf" else m)
        fbank[e], best[e], metric[e] = SUPERB_FBANK[key] / 100, SUPERB_SOTA[key] / 100, m
    return Reference("superb", fbank, best, metric, note="superbbenchmark.org public reference points")


def load_reference(path: Path) -> Reference:
    """Read a reference file; errors name the file and the key."""
    data = read_json_object(path, "reference")
    for key in ("suite", "fbank", "best", "metric"):
        if key not in data:
            raise ConfigError(f"{path}: reference lacks key {key!r}.")
    for key in ("fbank", "best"):
        if not isinstance(data[key], dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in data[key].values()
        ):
            raise ConfigError(f"{path}: {key!r} must map entries to numbers.")
    if set(data["fbank"]) != set(data["best"]) or set(data["fbank"]) != set(data["metric"]):
        raise ConfigError(f"{path}: 'fbank', 'best' and 'metric' must name the same entries.")
    known = {"suite", "version", "fbank", "best", "metric", "task_version", "seed", "note"}
    extra = sorted(set(data) - known)
    if extra:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))}).")
    return Reference(**data)


REFERENCES_DIR = Path(__file__).parent / "references"


def stored_reference(suite: str, folder: Path | None = None) -> Reference | None:
    """The reference file `<folder>/<suite>.json` (default: the package's), or None."""
    if folder is not None and not Path(folder).is_dir():
        raise ConfigError(
            f"--references {folder}: no such folder (it holds <suite>.json reference files, as `evalkit "
            "leaderboard references` writes them). Leave --references out for the built-in ones."
        )
    path = Path(folder or REFERENCES_DIR) / f"{suite}.json"
    return load_reference(path) if path.is_file() else None


TOPLINES = frozenset({"oracle"})
"""Upstreams that are a suite's measured ceiling, not models (`upstreams/oracle.py`: hidden states made
from the suite's ground truth): the upper reference of the score, shown as a reference row, never ranked."""


def reference_from_fbank(
    suite: str,
    fbank_results: Mapping[str, Mapping],
    seed: int | None = None,
    oracle_results: Mapping[str, Mapping] | None = None,
) -> Reference:
    """Reference points from the `fbank` upstream's result dicts ({task: result}) on one suite.

    Every metric of the task's result is an entry (the primary as `task`), so SF's slot-value CER is
    scored beside its F1, as in SUPERB. The upper reference of an entry is the oracle topline's test
    value on this suite where `oracle_results` has it and it beats FBANK (so a score runs from FBANK, 0,
    to what a perfect representation reaches within the task's budget, 1000, as SUPERB's runs to the
    state of the art); otherwise the metric's perfect value.
    """
    fbank, best, metric, versions, measured = {}, {}, {}, {}, []
    for task, res in sorted(fbank_results.items()):
        primary = res["primary_metric"]
        scored = [primary] + (
            ["slot_value_cer"] if task == "sf" and "slot_value_cer" in res["metrics"]["test"] else []
        )
        top = ((oracle_results or {}).get(task) or {}).get("metrics", {}).get("test", {})
        for m in scored:
            e = entry_name(task, m, primary)
            fbank[e], best[e], metric[e] = float(res["metrics"]["test"][m]), perfect_value(m), m
            value = top.get(m)
            if isinstance(value, int | float) and (
                value > fbank[e] if higher_is_better(m) else value < fbank[e]
            ):
                best[e] = float(value)
                measured.append(e)
        versions[task] = res["task_version"]
    if not fbank:
        raise EvalkitError(f"suite {suite!r}: no FBANK results to take reference points from.")
    note = "fbank measured on this suite; best = the metric's perfect value"
    if oracle_results:
        perfect = sorted(set(fbank) - set(measured))
        note = (
            f"fbank and the oracle topline measured on this suite; best = the oracle's test value for "
            f"{', '.join(measured) or 'no entry'}"
            + (
                f"; the metric's perfect value for {', '.join(perfect)} (the oracle does not beat FBANK)"
                if perfect
                else ""
            )
        )
    return Reference(suite, fbank, best, metric, task_version=versions, seed=seed, note=note)


# --- rank score ---------------------------------------------------------------------------------


def rank_score(
    table: Mapping[str, Mapping[str, float]], higher_is_better: Mapping[str, bool]
) -> dict[str, float]:
    """Mean rank per upstream (1 = best), ties sharing the average rank, as SUPERB challenges rank.

    `table` is {upstream: {task: value}}; each task ranks the upstreams that
    have it, and an upstream's score is the mean of its ranks over its tasks.
    """
    from scipy.stats import rankdata  # deferred: scipy.stats is a heavy import, needed only here

    ranks: dict[str, list[float]] = {u: [] for u in table}
    for task, higher in higher_is_better.items():
        have = [u for u in table if task in table[u]]
        if not have:
            continue
        vals = np.array([table[u][task] for u in have], dtype=float)
        for u, r in zip(have, rankdata(-vals if higher else vals, method="average")):
            ranks[u].append(float(r))
    return {u: float(np.mean(r)) if r else float("nan") for u, r in ranks.items()}
