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
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.registry import Registry

Stats = tuple
Segment = tuple[float, float, Any]  # (start_s, end_s, speaker)


# --- edit distance: WER, CER, PER, slot-value CER ---------------------------------------------


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two token sequences (unit costs).

    Written here rather than taken from jiwer because PER and slot values need
    it over arbitrary token lists (multi-character phones are one token), which
    jiwer only offers for whitespace-split strings; the tests check it against
    jiwer. One numpy row per token of the shorter side: substitutions and
    deletions are elementwise, insertions a running minimum.
    """
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    if not hyp:
        return len(ref)
    vocab: dict = {}
    ref_ids = [vocab.setdefault(t, len(vocab)) for t in ref]
    hyp_ids = np.array([vocab.setdefault(t, len(vocab)) for t in hyp])
    cols = np.arange(len(hyp_ids) + 1)
    prev = cols.copy()
    cur = np.empty_like(prev)
    for i, tok in enumerate(ref_ids, 1):
        cur[0] = i
        np.minimum(prev[1:] + 1, prev[:-1] + (hyp_ids != tok), out=cur[1:])
        prev = np.minimum.accumulate(cur - cols) + cols
    return int(prev[-1])


def _chars(text: str) -> list[str]:
    """Characters with whitespace runs collapsed to one space (spaces count, as in jiwer)."""
    return list(" ".join(text.split()))


def _phones(phones: Sequence[str] | str) -> list[str]:
    return phones.split() if isinstance(phones, str) else list(phones)


def wer_item(ref: str, hyp: str) -> Stats:
    """(word edits, reference words) of one utterance."""
    r = ref.split()
    return (edit_distance(r, hyp.split()), len(r))


def cer_item(ref: str, hyp: str) -> Stats:
    """(character edits, reference characters) of one utterance."""
    r = _chars(ref)
    return (edit_distance(r, _chars(hyp)), len(r))


def per_item(ref: Sequence[str] | str, hyp: Sequence[str] | str) -> Stats:
    """(phone edits, reference phones); phones are list items, or space-separated in a string."""
    r = _phones(ref)
    return (edit_distance(r, _phones(hyp)), len(r))


def _table(stats: Sequence[Stats] | np.ndarray, what: str) -> np.ndarray:
    """Stats as a float matrix [items, fields]; an empty corpus has no metric."""
    if len(stats) == 0:
        raise EvalkitError(f"Cannot compute {what}: no items were scored. Check that the split is not empty.")
    return np.asarray(stats, dtype=float).reshape(len(stats), -1)


def ratio_of_sums(stats: Sequence[Stats] | np.ndarray) -> float:
    """sum(numerator) / sum(denominator) over items: corpus-level WER, CER, PER."""
    table = _table(stats, "an error rate")
    num, den = table[:, 0].sum(), table[:, 1].sum()
    if den == 0:
        raise EvalkitError("Error rate undefined: the references hold no tokens. Check the reference labels.")
    return float(num / den)


# --- classification -------------------------------------------------------------------------


def _as_label(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return tuple(_as_label(v) for v in x) if isinstance(x, list | tuple) else x


def accuracy_item(ref: Any, hyp: Any) -> Stats:
    """(1,) if right else (0,); tuples and lists compare whole (IC: right only if every slot is)."""
    return (int(_as_label(ref) == _as_label(hyp)),)


def mean_of_items(stats: Sequence[Stats] | np.ndarray) -> float:
    return float(_table(stats, "a mean")[:, 0].mean())


# --- slot filling -----------------------------------------------------------------------------
# SUPERB's definitions (s3prl, downstream/ctc/metric.py), on slots given as {"type", "value"}:
#   slot-type F1: per utterance, F1 between the *sets* of slot types in reference and
#     hypothesis (values ignored) = 2 |R ∩ H| / (|R| + |H|); 1 when both are empty, 0 when
#     only one is; the corpus value is the mean over utterances.
#   slot-value CER: every reference slot is paired with the hypothesis value of the same type
#     that has the fewest character edits, or with "" when the hypothesis lacks that type;
#     CER = total edits / total reference value characters. Extra hypothesis slots cost nothing.


def _slots(slots: Sequence[dict], side: str) -> list[tuple[str, str]]:
    out = []
    for s in slots:
        if not isinstance(s, dict) or "type" not in s or "value" not in s:
            raise EvalkitError(
                f"Slot filling {side}: each slot must be a dict with 'type' and 'value', got {s!r}."
            )
        out.append((str(s["type"]).strip(), " ".join(str(s["value"]).split())))
    return out


def slot_type_f1_item(ref: Sequence[dict], hyp: Sequence[dict]) -> Stats:
    """(F1 of slot-type sets,) for one utterance."""
    r = {t for t, _ in _slots(ref, "reference")}
    h = {t for t, _ in _slots(hyp, "hypothesis")}
    return (1.0 if not r and not h else 2 * len(r & h) / (len(r) + len(h)),)


def slot_value_cer_item(ref: Sequence[dict], hyp: Sequence[dict]) -> Stats:
    """(character edits, reference value characters) over one utterance's reference slots."""
    hyp_slots = _slots(hyp, "hypothesis")
    edits = chars = 0
    for slot_type, value in _slots(ref, "reference"):
        candidates = [v for t, v in hyp_slots if t == slot_type] or [""]
        edits += min(edit_distance(value, c) for c in candidates)
        chars += len(value)
    return (edits, chars)


def parse_tagged_slots(text: str) -> list[dict]:
    """Slots of a SUPERB-style tagged transcript: "play B-artist the beatles E-artist now".

    Tags nested inside a value (a malformed hypothesis) are dropped from the value.
    """
    text = " ".join(text.split())
    slots = []
    for slot_type, value in re.findall(r"B-(\S+) (.+?) E-\1(?=\s|$)", text):
        value = " ".join(w for w in value.split() if not re.fullmatch(r"[BE]-\S+", w))
        slots.append({"type": slot_type, "value": value})
    return slots


def untag(text: str) -> str:
    """A tagged transcript without its slot tags: the words that WER and CER score on SF."""
    return " ".join(w for w in text.split() if not (w.startswith(("B-", "E-")) and len(w) > 2))


# --- speaker verification ---------------------------------------------------------------------


def trial_item(label: Any, score: float) -> Stats:
    """(score, label) of one verification trial; label 1 = same speaker (target)."""
    if label not in (0, 1):
        raise EvalkitError(f"Trial label must be 0 or 1 (1 = target), got {label!r}.")
    return (float(score), int(label))


def _error_curve(stats: Sequence[Stats] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P_fa, P_miss) at every distinct threshold, from accept-nothing to accept-all.

    A trial is accepted when its score >= the threshold; tied scores move together.
    A sort and two cumulative sums; scikit-learn's roc_curve is the tests' reference.
    """
    table = _table(stats, "a verification metric")
    scores, labels = table[:, 0], table[:, 1] > 0.5
    if not np.all(np.isfinite(scores)):
        raise EvalkitError("Verification scores must be finite numbers; found NaN or infinity.")
    n_target = int(labels.sum())
    n_nontarget = len(labels) - n_target
    if n_target == 0 or n_nontarget == 0:
        raise EvalkitError("EER/minDCF need both target and non-target trials; check the trial list.")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    group_ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    hits = np.r_[0, np.cumsum(labels)[group_ends]]
    false_alarms = np.r_[0, np.cumsum(~labels)[group_ends]]
    return false_alarms / n_nontarget, 1.0 - hits / n_target


def eer_from_stats(stats: Sequence[Stats] | np.ndarray) -> float:
    """Equal error rate: where P_miss = P_fa on the piecewise-linear ROC (interpolated)."""
    p_fa, p_miss = _error_curve(stats)
    gap = p_miss - p_fa
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0:
        return float(p_fa[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(p_fa[i - 1] + t * (p_fa[i] - p_fa[i - 1]))


def min_dcf_from_stats(
    stats: Sequence[Stats] | np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Minimum normalised detection cost (NIST SRE / VoxCeleb): min over thresholds of
    c_miss·P_miss·p_target + c_fa·P_fa·(1 − p_target), divided by the cost of the best
    trivial system, min(c_miss·p_target, c_fa·(1 − p_target))."""
    p_fa, p_miss = _error_curve(stats)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


# --- query by example -------------------------------------------------------------------------


def qbe_item(ref: tuple[Any, Any], score: float) -> Stats:
    """(term, score, occurs) of one query-document pair; ref = (term or query id, occurs)."""
    term, occurs = ref
    if occurs not in (0, 1):
        raise EvalkitError(f"QbE ground truth must be 0 or 1 (does the query occur?), got {occurs!r}.")
    return (term, float(score), int(occurs))


def _twv_curve(stats: Sequence[Stats] | np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, TWV at each) from the highest score down; a pair is a detection when
    its score >= the threshold. Terms that never occur are left out (their P_miss is
    undefined); a term that occurs in every document has no false-alarm trials, P_fa = 0.

    TWV(θ) = 1 − mean_terms[P_miss + β·P_fa] = Σ over detections of (+1 / (n_terms·N_true(term))
    for a hit, −β / (n_terms·N_nontarget(term)) for a false alarm), so the curve is a cumulative
    sum over pairs sorted by score.
    """
    if len(stats) == 0:
        raise EvalkitError("Cannot compute TWV: no query-document pairs were scored.")
    if isinstance(stats, np.ndarray):  # a numeric table (term id, score, occurs): the bootstrap's hot path
        _, term_ids = np.unique(stats[:, 0], return_inverse=True)
        scores, occurs = stats[:, 1].astype(float), stats[:, 2] > 0.5
    else:
        scores = np.array([s[1] for s in stats], dtype=float)
        occurs = np.array([s[2] for s in stats], dtype=float) > 0.5
        _, term_ids = np.unique(np.array([s[0] for s in stats], dtype=str), return_inverse=True)
    n_true = np.bincount(term_ids, weights=occurs)
    n_false = np.bincount(term_ids, weights=~occurs)
    n_terms = int((n_true > 0).sum())
    if n_terms == 0:
        raise EvalkitError("TWV undefined: no query occurs in any document. Check the QbE ground truth.")
    scored = n_true[term_ids] > 0
    gain = np.where(occurs, 1 / np.maximum(n_true[term_ids], 1), -beta / np.maximum(n_false[term_ids], 1))
    gain = np.where(scored, gain, 0.0) / n_terms
    order = np.argsort(-scores, kind="stable")
    scores, gain = scores[order], gain[order]
    group_ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    return np.r_[np.inf, scores[group_ends]], np.r_[0.0, np.cumsum(gain)[group_ends]]


def mtwv_from_stats(stats: Sequence[Stats], beta: float = 999.9) -> float:
    """Maximum term-weighted value (NIST STD) over thresholds; 0 when detecting nothing is best."""
    return float(_twv_curve(stats, beta)[1].max())


def twv_from_stats(stats: Sequence[Stats], threshold: float, beta: float = 999.9) -> float:
    """Actual term-weighted value at a fixed decision threshold (score >= threshold detects)."""
    thresholds, values = _twv_curve(stats, beta)
    return float(values[np.flatnonzero(thresholds >= threshold)[-1]])


# --- speaker diarization ----------------------------------------------------------------------


def _check_segments(segments: Sequence[Segment], side: str) -> list[Segment]:
    out = []
    for seg in segments:
        if len(seg) != 3:
            raise EvalkitError(f"Diarization {side}: segments are (start, end, speaker), got {seg!r}.")
        start, end, speaker = float(seg[0]), float(seg[1]), seg[2]
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise EvalkitError(f"Diarization {side}: segment {seg!r} needs finite times with start <= end.")
        out.append((start, end, speaker))
    return out


def _coverage(spans: Sequence[tuple[float, float, Any]], bounds: np.ndarray) -> np.ndarray:
    """[intervals, labels] bool: which labels are active in each elementary interval.

    Every span edge is one of `bounds`, so a difference array marks it exactly.
    """
    labels = list(dict.fromkeys(label for _, _, label in spans))
    column = {label: j for j, label in enumerate(labels)}
    counts = np.zeros((len(bounds), len(labels)))
    for start, end, label in spans:
        i0, i1 = np.searchsorted(bounds, [start, end])
        counts[i0, column[label]] += 1
        counts[i1, column[label]] -= 1
    return np.cumsum(counts, axis=0)[:-1] > 0


def der_item(
    ref: Sequence[Segment], hyp: Sequence[Segment], collar: float = 0.0, skip_overlap: bool = False
) -> Stats:
    """(missed, false alarm, confusion, reference speech) seconds of one recording.

    As pyannote.metrics' DiarizationErrorRate: a collar of `collar` seconds in total
    (±collar/2) around every reference segment boundary is removed from both sides;
    overlapped speech is scored (each active reference speaker counts) unless
    `skip_overlap`; hypothesis speakers are mapped one-to-one onto reference speakers
    to maximise their total co-occurrence (Hungarian), after the collars are removed.
    A speaker's own overlapping segments count once (pyannote would count them twice).
    """
    ref, hyp = _check_segments(ref, "reference"), _check_segments(hyp, "hypothesis")
    collars = (
        [(t - collar / 2, t + collar / 2, "collar") for s, e, _ in ref for t in (s, e)] if collar > 0 else []
    )
    bounds = np.unique([t for s, e, _ in ref + hyp + collars for t in (s, e)])
    if len(bounds) < 2:
        return (0.0, 0.0, 0.0, 0.0)
    ref_active, hyp_active = _coverage(ref, bounds), _coverage(hyp, bounds)
    n_ref, n_hyp = ref_active.sum(1), hyp_active.sum(1)
    weight = np.diff(bounds)
    if collars:
        weight = weight * ~_coverage(collars, bounds)[:, 0]
    if skip_overlap:
        weight = weight * (n_ref < 2)
    cooccurrence = (ref_active * weight[:, None]).T @ hyp_active
    rows, cols = linear_sum_assignment(cooccurrence, maximize=True)
    correct = cooccurrence[rows, cols].sum()
    missed = weight @ np.maximum(n_ref - n_hyp, 0)
    false_alarm = weight @ np.maximum(n_hyp - n_ref, 0)
    confusion = weight @ np.minimum(n_ref, n_hyp) - correct
    return (float(missed), float(false_alarm), float(confusion), float(weight @ n_ref))


def der_from_stats(stats: Sequence[Stats] | np.ndarray) -> float:
    """(missed + false alarm + confusion) / reference speech, summed over recordings."""
    table = _table(stats, "DER")
    total = table[:, 3].sum()
    if total == 0:
        raise EvalkitError("DER undefined: the reference holds no speech (after collars). Check the RTTM.")
    return float(table[:, :3].sum() / total)


def segments_from_activity(
    activity: np.ndarray, frame_rate: float, speakers: Sequence[Any] | None = None
) -> list[Segment]:
    """Segments (start_s, end_s, speaker) from per-frame activity [T, S] (bool) at `frame_rate` Hz.

    Frame i spans [i / frame_rate, (i + 1) / frame_rate); speaker names default to column indices.
    """
    active = np.asarray(activity, dtype=bool)
    if active.ndim != 2:
        raise EvalkitError(f"Speaker activity must be [frames, speakers], got shape {active.shape}.")
    names = list(range(active.shape[1])) if speakers is None else list(speakers)
    if len(names) != active.shape[1]:
        raise EvalkitError(f"{len(names)} speaker names for {active.shape[1]} activity columns.")
    padded = np.zeros((active.shape[0] + 2, active.shape[1]), dtype=np.int8)
    padded[1:-1] = active
    change = np.diff(padded, axis=0)
    segments = []
    for j, name in enumerate(names):
        starts, ends = np.flatnonzero(change[:, j] == 1), np.flatnonzero(change[:, j] == -1)
        segments += [(a / frame_rate, b / frame_rate, name) for a, b in zip(starts, ends)]
    return sorted(segments, key=lambda seg: (seg[0], seg[1]))


# --- confidence intervals ---------------------------------------------------------------------


def bootstrap_ci(
    per_item_stats: Sequence[Stats],
    compute_fn: Callable[[Sequence[Stats]], float],
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval: resample items with replacement, recompute the corpus metric.

    `compute_fn` is a metric's aggregate, so a ratio metric is recomputed as a ratio of sums on
    every resample. Numeric stats are resampled as one array (fast); others as lists.
    Resamples where the metric is undefined are skipped; if more than a fifth are, the
    interval is (nan, nan): the set is too small to say.
    """
    if len(per_item_stats) == 0:
        raise EvalkitError("Cannot bootstrap a metric over zero items.")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_item_stats), size=(n, len(per_item_stats)))
    numeric = all(isinstance(v, int | float | np.number) for v in per_item_stats[0])
    table = np.asarray(per_item_stats, dtype=float) if numeric else None
    values = []
    for idx in draws:
        try:
            values.append(compute_fn(table[idx] if numeric else [per_item_stats[i] for i in idx]))
        except EvalkitError:
            continue  # a degenerate resample (e.g. no target trial): undefined, so left out
    if len(values) < 0.8 * n:  # too few items for a meaningful interval
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# --- metric objects and the registry ----------------------------------------------------------


@dataclass
class Metric:
    """A metric over items: `update()` scores a batch and keeps each item's stats, `compute()`
    aggregates them. `params` are the options it was built with (for the result JSON)."""

    name: str
    higher_is_better: bool
    item_stats: Callable[[Any, Any], Stats]
    aggregate: Callable[[Sequence[Stats]], float]
    params: dict = field(default_factory=dict)
    primary: bool = False
    stats: list[Stats] = field(default_factory=list)

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

    return Metric("mtwv", True, qbe_item, aggregate, dict(beta=beta))


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


# --- one-call corpus functions ----------------------------------------------------------------


def _corpus(item: Callable, aggregate: Callable, refs: Sequence, hyps: Sequence) -> float:
    if len(refs) != len(hyps):
        raise EvalkitError(f"{len(refs)} references but {len(hyps)} hypotheses.")
    return aggregate([item(r, h) for r, h in zip(refs, hyps)])


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return _corpus(wer_item, ratio_of_sums, refs, hyps)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return _corpus(cer_item, ratio_of_sums, refs, hyps)


def per(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> float:
    return _corpus(per_item, ratio_of_sums, refs, hyps)


def accuracy(refs: Sequence[Any], hyps: Sequence[Any]) -> float:
    return _corpus(accuracy_item, mean_of_items, refs, hyps)


def slot_type_f1(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> float:
    return _corpus(slot_type_f1_item, mean_of_items, refs, hyps)


def slot_value_cer(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> float:
    return _corpus(slot_value_cer_item, ratio_of_sums, refs, hyps)


def eer(scores: Sequence[float], labels: Sequence[int]) -> float:
    return _corpus(trial_item, eer_from_stats, labels, scores)


def min_dcf(
    scores: Sequence[float],
    labels: Sequence[int],
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    return _corpus(trial_item, lambda s: min_dcf_from_stats(s, p_target, c_miss, c_fa), labels, scores)


def der(
    refs: Sequence[Sequence[Segment]],
    hyps: Sequence[Sequence[Segment]],
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> float:
    """DER over recordings: refs[i] and hyps[i] are the segments of recording i."""
    return _corpus(lambda r, h: der_item(r, h, collar, skip_overlap), der_from_stats, refs, hyps)


def _pairs(terms: Sequence[Any], labels: Sequence[int]) -> list[tuple[Any, int]]:
    if len(terms) != len(labels):
        raise EvalkitError(f"{len(terms)} query terms but {len(labels)} ground-truth labels.")
    return list(zip(terms, labels))


def mtwv(terms: Sequence[Any], scores: Sequence[float], labels: Sequence[int], beta: float = 999.9) -> float:
    """MTWV of query-document pairs: terms[i] is pair i's query (term), labels[i] whether it occurs."""
    return _corpus(qbe_item, lambda s: mtwv_from_stats(s, beta), _pairs(terms, labels), scores)


def twv(
    terms: Sequence[Any],
    scores: Sequence[float],
    labels: Sequence[int],
    threshold: float,
    beta: float = 999.9,
) -> float:
    return _corpus(qbe_item, lambda s: twv_from_stats(s, threshold, beta), _pairs(terms, labels), scores)
