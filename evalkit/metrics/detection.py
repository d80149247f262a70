"""Detection metrics over scored trials: EER and minDCF (speaker verification), MTWV (query by example)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.metrics.stats import Stats, corpus_value, stats_table

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
    table = stats_table(stats, "a verification metric")
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

# β weighs a false alarm against a miss in TWV = 1 - mean_terms[P_miss + β·P_fa], and only means
# something together with what a trial is. NIST STD 2006 has one trial per second of speech (P_fa =
# N_fa / (seconds - N_true), hours of audio) and β = 0.1·(1/1e-4 - 1) = 999.9. QbE here, as QUESST
# and SUPERB's QbE, has one trial per (query, document) pair; QUESST's scorer (score-TWV-Cnxe.sh,
# which SUPERB's numbers come from) sets P_target = 0.0008, C_miss = 100, C_fa = 1: an effective
# prior of 0.0741289 and β = 12.49. NIST's 999.9 over the default suite's 150-200 documents a term made
# one false alarm cost 5-7 times what finding all of its term's occurrences earns: exact phone features
# (the oracle upstream) scored MTWV 0.28, against 0.85 with QUESST's β (FBANK 0.00 and 0.02).


def twv_beta(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """TWV's false-alarm weight β = (C_fa / C_miss)·(1/P_target − 1) (NIST STD 2006, QUESST)."""
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise EvalkitError(
            f"TWV's beta needs 0 < p_target < 1 and positive costs, got p_target={p_target}, "
            f"c_miss={c_miss}, c_fa={c_fa}."
        )
    return c_fa / c_miss * (1 / p_target - 1)


QUESST_BETA = twv_beta(p_target=0.0008, c_miss=100.0, c_fa=1.0)  # 12.49: QUESST 2014/2015, SUPERB QbE


def qbe_item(ref: tuple[Any, Any], score: float) -> Stats:
    """(term, score, occurs) of one query-document pair; ref = (term or query id, occurs)."""
    term, occurs = ref
    if occurs not in (0, 1):
        raise EvalkitError(f"QbE ground truth must be 0 or 1 (does the query occur?), got {occurs!r}.")
    return (term, float(score), int(occurs))


class TWVCurve:
    """TWV at every threshold of a set of query-document pairs, from the highest score down; a pair is a
    detection when its score >= the threshold. Terms that never occur are left out (their P_miss is
    undefined); a term that occurs in every document has no false-alarm trials, P_fa = 0.

    TWV(θ) = 1 − mean_terms[P_miss + β·P_fa] = Σ over detections of (+1 / (n_terms·N_true(term))
    for a hit, −β / (n_terms·N_nontarget(term)) for a false alarm), so the curve is a cumulative
    sum over pairs sorted by score. The pairs are sorted once: `values(weights)` gives the curve
    of the terms counted `weights` times each (a term drawn twice by the bootstrap weighs twice in
    the mean over terms; its own P_miss and P_fa do not change), in one pass over the pairs.

    MTWV's bootstrap resamples terms, each with all of its pairs, not pairs: a term's pairs share
    its query and are not independent, and a mean over terms varies with the terms drawn
    (`evalkit.metrics.stats.group_resamples`). At QUESST's all-language scope (~7 M pairs) one
    resample is a weighted cumulative sum instead of a sort of a resampled table.
    """

    def __init__(self, stats: Sequence[Stats] | np.ndarray, beta: float) -> None:
        if len(stats) == 0:
            raise EvalkitError("Cannot compute TWV: no query-document pairs were scored.")
        if isinstance(stats, np.ndarray):  # a numeric table (term id, score, occurs): the bootstrap's path
            ids = stats[:, 0]
            if ids.min() >= 0 and np.array_equal(ids, np.floor(ids)):  # term numbers already: no sort
                term_ids = ids.astype(np.intp)
            else:
                _, term_ids = np.unique(ids, return_inverse=True)
            scores, occurs = stats[:, 1].astype(float), stats[:, 2] > 0.5
        else:
            scores = np.array([s[1] for s in stats], dtype=float)
            occurs = np.array([s[2] for s in stats], dtype=float) > 0.5
            _, term_ids = np.unique(np.array([s[0] for s in stats], dtype=str), return_inverse=True)
        n_true = np.bincount(term_ids, weights=occurs)
        n_false = np.bincount(term_ids, weights=~occurs)
        self.n_terms = len(n_true)  # terms numbered 0..n_terms-1 (some may hold no pair)
        self.scored = n_true > 0  # the terms TWV averages over
        if not self.scored.any():
            raise EvalkitError("TWV undefined: no query occurs in any document. Check the QbE ground truth.")
        gain = np.where(occurs, 1 / np.maximum(n_true[term_ids], 1), -beta / np.maximum(n_false[term_ids], 1))
        gain = np.where(self.scored[term_ids], gain, 0.0)
        order = np.argsort(-scores, kind="stable")
        scores = scores[order]
        self.gain, self.term_of = gain[order], term_ids[order]
        self.group_ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
        self.thresholds = np.r_[np.inf, scores[self.group_ends]]
        self.groups = term_ids  # each pair's term, in the order given: a bootstrap resamples terms

    def values(self, weights: np.ndarray | None = None) -> np.ndarray:
        """TWV at each of `thresholds`; `weights[t]`: how many times term t counts (default once)."""
        if weights is None:
            return np.r_[0.0, np.cumsum(self.gain)[self.group_ends] / self.scored.sum()]
        counted = weights[self.scored].sum()
        if counted == 0:
            raise EvalkitError("TWV undefined: no term drawn occurs in any document.")
        return np.r_[0.0, np.cumsum(weights[self.term_of] * self.gain)[self.group_ends] / counted]

    def value(self, weights: np.ndarray | None = None) -> float:
        """MTWV, each term t counted `weights[t]` times (the metric's `by_group` interface)."""
        return float(self.values(weights).max())


def _twv_curve(stats: Sequence[Stats] | np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, TWV at each): `TWVCurve` of the pairs, each term counted once."""
    curve = TWVCurve(stats, beta)
    return curve.thresholds, curve.values()


def mtwv_from_stats(stats: Sequence[Stats], beta: float = QUESST_BETA) -> float:
    """Maximum term-weighted value (NIST STD, QUESST) over thresholds; 0 when detecting nothing is best."""
    return float(_twv_curve(stats, beta)[1].max())


def twv_from_stats(stats: Sequence[Stats], threshold: float, beta: float = QUESST_BETA) -> float:
    """Actual term-weighted value at a fixed decision threshold (score >= threshold detects)."""
    thresholds, values = _twv_curve(stats, beta)
    return float(values[np.flatnonzero(thresholds >= threshold)[-1]])


def eer(scores: Sequence[float], labels: Sequence[int]) -> float:
    return corpus_value(trial_item, eer_from_stats, labels, scores)


def min_dcf(
    scores: Sequence[float],
    labels: Sequence[int],
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    return corpus_value(trial_item, lambda s: min_dcf_from_stats(s, p_target, c_miss, c_fa), labels, scores)


def _pairs(terms: Sequence[Any], labels: Sequence[int]) -> list[tuple[Any, int]]:
    if len(terms) != len(labels):
        raise EvalkitError(f"{len(terms)} query terms but {len(labels)} ground-truth labels.")
    return list(zip(terms, labels))


def mtwv(
    terms: Sequence[Any], scores: Sequence[float], labels: Sequence[int], beta: float = QUESST_BETA
) -> float:
    """MTWV of query-document pairs: terms[i] is pair i's query (term), labels[i] whether it occurs."""
    return corpus_value(qbe_item, lambda s: mtwv_from_stats(s, beta), _pairs(terms, labels), scores)


def twv(
    terms: Sequence[Any],
    scores: Sequence[float],
    labels: Sequence[int],
    threshold: float,
    beta: float = QUESST_BETA,
) -> float:
    return corpus_value(qbe_item, lambda s: twv_from_stats(s, threshold, beta), _pairs(terms, labels), scores)
