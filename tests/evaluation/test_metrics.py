"""Every metric against an independent reference: jiwer, scikit-learn, pyannote.metrics, or a
hand-worked example whose arithmetic is in the comments."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.metrics import METRICS, metric_from_spec
from evalkit.metrics.classification import accuracy, accuracy_item
from evalkit.metrics.detection import eer, min_dcf, mtwv, mtwv_from_stats, qbe_item, twv
from evalkit.metrics.diarization import der, der_item, segments_from_activity
from evalkit.metrics.stats import bootstrap_ci, ratio_of_sums
from evalkit.metrics.text import (
    cer,
    edit_distance,
    parse_tagged_slots,
    per,
    per_item,
    slot_type_f1,
    slot_type_f1_item,
    slot_value_cer,
    slot_value_cer_item,
    wer,
    wer_item,
)

WORDS = ["a", "b", "c", "dog", "cat", "the"]
PHONES = ["aʊ", "tʃ", "ə", "k", "s", "iː", "ŋ"]


def _random_edit(rng: np.random.Generator, tokens: list[str], vocab: list[str]) -> list[str]:
    """A hypothesis a few substitutions, deletions and insertions away from the reference."""
    out = []
    for tok in tokens:
        r = rng.random()
        if r < 0.15:
            continue
        out.append(vocab[rng.integers(len(vocab))] if r < 0.35 else tok)
        if rng.random() < 0.1:
            out.append(vocab[rng.integers(len(vocab))])
    return out


def _random_pairs(seed: int, vocab: list[str], n: int = 40) -> tuple[list[list[str]], list[list[str]]]:
    rng = np.random.default_rng(seed)
    refs = [[vocab[i] for i in rng.integers(len(vocab), size=rng.integers(1, 12))] for _ in range(n)]
    hyps = [_random_edit(rng, r, vocab) if rng.random() < 0.9 else [] for r in refs]
    return refs, hyps


# --- WER / CER / PER ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wer_matches_jiwer(seed):
    refs, hyps = _random_pairs(seed, WORDS)
    refs, hyps = [" ".join(r) for r in refs], [" ".join(h) for h in hyps]
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    for r, h in zip(refs, hyps):
        out = jiwer.process_words(r, h)
        assert wer_item(r, h) == (out.substitutions + out.deletions + out.insertions, len(r.split()))


@pytest.mark.parametrize("seed", [0, 1])
def test_cer_matches_jiwer(seed):
    refs, hyps = _random_pairs(seed, WORDS)
    refs, hyps = [" ".join(r) for r in refs], [" ".join(h) for h in hyps]
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_matches_jiwer_over_placeholder_words(seed):
    refs, hyps = _random_pairs(seed, PHONES)
    # jiwer splits on spaces, so give each (possibly multi-character) phone a one-word alias.
    alias = {p: f"p{i}" for i, p in enumerate(PHONES)}
    expected = jiwer.wer(
        [" ".join(alias[p] for p in r) for r in refs], [" ".join(alias[p] for p in h) for h in hyps]
    )
    assert per(refs, hyps) == pytest.approx(expected, abs=1e-12)
    # "aʊ" is one phone: one substitution against "a", not an edit per character.
    assert per_item(["aʊ", "k"], ["a", "k"]) == (1, 2)
    assert per_item("aʊ k", "aʊ k") == (0, 2)


def test_edit_distance_edge_cases():
    assert edit_distance([], []) == 0
    assert edit_distance(["a", "b"], []) == 2
    assert edit_distance([], ["x"]) == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("flaw", "lawn") == 2


def test_wer_is_ratio_of_sums_not_mean_of_ratios():
    # 1 error in 1 word and 0 in 9 words: corpus WER 1/10, mean of ratios would be 0.5.
    assert wer(["a", "a b c d e f g h i"], ["b", "a b c d e f g h i"]) == pytest.approx(0.1)
    with pytest.raises(EvalkitError, match="no tokens"):
        wer([""], ["a"])
    with pytest.raises(EvalkitError, match="references but"):
        wer(["a"], [])


# --- accuracy --------------------------------------------------------------------------------


def test_accuracy_compares_ic_slots_whole():
    refs = [
        ("activate", "lights", "kitchen"),
        ("decrease", "heat", "none"),
        ("bring", "shoes", "none"),
        "yes",
    ]
    hyps = [
        ["activate", "lights", "kitchen"],
        ("decrease", "heat", "washroom"),
        ("bring", "shoes", "none"),
        "no",
    ]
    assert accuracy(refs, hyps) == pytest.approx(0.5)
    assert accuracy_item(np.array([1, 2]), (1, 2)) == (1,)


# --- EER / minDCF ----------------------------------------------------------------------------


def _trials(seed: int, n: int = 400, round_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = rng.normal(size=n) + 1.5 * labels
    return (np.round(scores, round_to) if round_to is not None else scores), labels


@pytest.mark.parametrize("seed,round_to", [(0, None), (1, None), (2, 1), (3, 0)])
def test_eer_matches_sklearn_roc_interpolated(seed, round_to):
    scores, labels = _trials(seed, round_to=round_to)
    fpr, tpr, _ = roc_curve(labels, scores)
    # VoxCeleb's recipe: the FPR x where 1 - x equals the linearly interpolated TPR.
    expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert eer(scores, labels) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed,p_target", [(0, 0.01), (1, 0.01), (2, 0.05), (3, 0.5)])
def test_min_dcf_matches_brute_force_over_sklearn_thresholds(seed, p_target):
    scores, labels = _trials(seed, round_to=1 if seed == 2 else None)
    _, _, thresholds = roc_curve(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    costs = [p_target * np.mean(pos < t) + (1 - p_target) * np.mean(neg >= t) for t in thresholds]
    costs.append(1 - p_target)  # accept everything: P_miss 0, P_fa 1
    expected = min(costs) / min(p_target, 1 - p_target)
    assert min_dcf(scores, labels, p_target=p_target) == pytest.approx(expected, abs=1e-12)


def test_eer_separable_and_inverted_scores():
    assert eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0
    assert eer([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 1.0
    assert min_dcf([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0
    with pytest.raises(EvalkitError, match="both target and non-target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(EvalkitError, match="0 or 1"):
        eer([0.1, 0.2], [1, 2])


# --- DER ---------------------------------------------------------------------------------------


def _merge(segments):
    """Union of each speaker's own segments, so no speaker overlaps itself."""
    out = []
    for spk in sorted({s for _, _, s in segments}):
        spans = sorted((a, b) for a, b, s in segments if s == spk)
        merged = [list(spans[0])]
        for a, b in spans[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [(a, b, spk) for a, b in merged]
    return out


def _random_recording(rng: np.random.Generator, length: float = 30.0):
    """Reference with 2-4 independently talking (so overlapping) speakers; a hypothesis made
    from it by jittering boundaries, relabelling, dropping turns, splitting a speaker and
    adding a spurious one."""
    ref = []
    for k in range(rng.integers(2, 5)):
        t = rng.uniform(0, 3)
        while t < length:
            d = rng.uniform(0.3, 4.0)
            ref.append((t, min(t + d, length), f"spk{k}"))
            t += d + rng.uniform(0.5, 8.0)
    hyp = []
    for a, b, spk in ref:
        if rng.random() < 0.1:
            continue
        a2, b2 = a + rng.uniform(-0.3, 0.3), b + rng.uniform(-0.3, 0.3)
        label = f"h{spk}" if rng.random() < 0.8 else f"h{rng.integers(5)}"
        if a2 < b2:
            hyp.append((max(a2, 0.0), b2, label))
    start = rng.uniform(0, 25)
    hyp.append((start, start + rng.uniform(1, 5), "spurious"))
    return _merge(ref), _merge(hyp)


def _pyannote_der(recordings, collar, skip_overlap):
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(segments):
        ann = Annotation()
        for i, (a, b, spk) in enumerate(segments):
            ann[Segment(a, b), i] = spk
        return ann

    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    components = []
    for ref, hyp in recordings:
        edges = [t for a, b, _ in ref + hyp for t in (a, b)]
        uem = Timeline([Segment(min(edges), max(edges))])
        c = metric(annotation(ref), annotation(hyp), uem=uem, detailed=True)
        components.append((c["missed detection"], c["false alarm"], c["confusion"], c["total"]))
    return abs(metric), components


@pytest.mark.parametrize("collar,skip_overlap", [(0.0, False), (0.25, False), (0.25, True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_der_matches_pyannote_with_overlap(seed, collar, skip_overlap):
    rng = np.random.default_rng(seed)
    recordings = [_random_recording(rng) for _ in range(3)]
    assert any(  # the data really has overlapped reference speech
        a1 < b2 and a2 < b1 and s1 != s2 for ref, _ in recordings for a1, b1, s1 in ref for a2, b2, s2 in ref
    )
    expected, expected_items = _pyannote_der(recordings, collar, skip_overlap)
    metric = metric_from_spec({"name": "der", "collar": collar, "skip_overlap": skip_overlap})
    items = metric.update([r for r, _ in recordings], [h for _, h in recordings])
    assert metric.compute() == pytest.approx(expected, abs=1e-6)
    for ours, theirs in zip(items, expected_items):
        assert ours == pytest.approx(theirs, abs=1e-6)


def test_der_hand_worked():
    # Reference: A speaks 0-10, B speaks 5-15 (5 s overlap): 20 s of reference speech.
    # Hypothesis: x 0-10, y 10-15, z 12-14. Mapping x->A (10 s) and y->B (5 s).
    # 5-10: two speakers, one hypothesised -> 5 s missed. 10-15: B right; 12-14 z extra -> 2 s FA.
    ref = [(0, 10, "A"), (5, 15, "B")]
    hyp = [(0, 10, "x"), (10, 15, "y"), (12, 14, "z")]
    assert der_item(ref, hyp) == pytest.approx((5.0, 2.0, 0.0, 20.0))
    assert der([ref], [hyp]) == pytest.approx(7 / 20)
    # Hypothesis labels swapped throughout: the optimal mapping makes it perfect.
    assert der([ref], [[(0, 10, "B"), (5, 15, "A")]]) == 0.0


def test_segments_from_activity_round_trip():
    frame_rate = 50.0
    activity = np.zeros((200, 2), dtype=bool)
    activity[10:60, 0] = activity[100:200, 0] = True
    activity[40:120, 1] = True
    segments = segments_from_activity(activity, frame_rate, speakers=["s1", "s2"])
    assert segments == [(0.2, 1.2, "s1"), (0.8, 2.4, "s2"), (2.0, 4.0, "s1")]
    assert der([segments], [segments_from_activity(activity, frame_rate)]) == 0.0
    with pytest.raises(EvalkitError, match="frames, speakers"):
        segments_from_activity(np.zeros(5), frame_rate)


# --- slot filling ------------------------------------------------------------------------------


def _s(*pairs):
    return [{"type": t, "value": v} for t, v in pairs]


def test_slot_type_f1_hand_worked():
    refs = [
        _s(("artist", "the beatles"), ("playlist", "road trip")),
        _s(("city", "paris")),
        [],
        [],
        _s(("date", "today"), ("date", "tomorrow"), ("city", "rome")),
    ]
    hyps = [
        # types {artist, album} vs {artist, playlist}: 2 * 1 / (2 + 2) = 0.5
        _s(("artist", "beatles"), ("album", "x")),
        [],  # hypothesis empty, reference not: 0
        [],  # both empty: 1
        _s(("city", "oslo")),  # reference empty, hypothesis not: 0
        _s(("date", "today"), ("city", "rome")),  # sets {date, city} equal (duplicates ignored): 1
    ]
    assert [slot_type_f1_item(r, h)[0] for r, h in zip(refs, hyps)] == [0.5, 0.0, 1.0, 0.0, 1.0]
    assert slot_type_f1(refs, hyps) == pytest.approx(2.5 / 5)


def test_slot_value_cer_hand_worked():
    refs = [
        _s(("artist", "the beatles"), ("playlist", "road trip")),
        _s(("date", "today"), ("date", "friday")),
    ]
    hyps = [_s(("artist", "beatles"), ("album", "x")), _s(("date", "fryday"))]
    # "the beatles" vs "beatles": delete "the " -> 4 edits of 11 characters.
    # "road trip": no playlist in the hypothesis -> compared with "" -> 9 edits of 9.
    # The extra hypothesis "album" slot costs nothing.
    # "today" vs "fryday" (the only date value): t->f, o->r, d->y, +d? edit distance 3; of 5.
    # "friday" vs "fryday": i->y -> 1 edit of 6.
    assert edit_distance("today", "fryday") == 3
    assert slot_value_cer_item(refs[0], hyps[0]) == (13, 20)
    assert slot_value_cer_item(refs[1], hyps[1]) == (4, 11)
    assert slot_value_cer(refs, hyps) == pytest.approx(17 / 31)
    # With several hypothesis values of a type, each reference value takes its closest one.
    assert slot_value_cer_item(_s(("date", "friday")), _s(("date", "today"), ("date", "friday"))) == (0, 6)
    with pytest.raises(EvalkitError, match="'type' and 'value'"):
        slot_value_cer([[{"type": "x"}]], [[]])


def test_parse_tagged_slots():
    text = "play B-artist the  beatles E-artist on B-playlist road B-x trip E-playlist please"
    assert parse_tagged_slots(text) == _s(("artist", "the beatles"), ("playlist", "road trip"))
    assert parse_tagged_slots("no slots here B-city paris") == []


def test_a_closing_tag_is_matched_by_prefix_as_in_s3prl():
    """s3prl's `B\\-(\\S+) (.+?) E\\-\\1` has no boundary after the type: `E-playlist_owner` closes
    `B-playlist` (issue 22: evalkit required one and gave F1 0 where s3prl gives 1)."""
    ref = parse_tagged_slots("add B-playlist road trip E-playlist")
    hyp = parse_tagged_slots("add B-playlist road trip E-playlist_owner")
    assert hyp == _s(("playlist", "road trip"))
    assert slot_type_f1([ref], [hyp]) == 1.0


@pytest.mark.parametrize(
    "ref, hyp",
    [("a  b", "a b"), ("a b", "a  b"), (" a b", "a b"), ("a b ", "a b"), ("a\tb", "a b"), ("ab", "a   b")],
)
def test_cer_keeps_inner_whitespace_as_jiwer_does(ref, hyp):
    """jiwer.cer("a  b", "a b") is 0.25 (s3prl's editdistance on the raw strings too); evalkit collapsed
    whitespace runs and gave 0."""
    assert cer([ref], [hyp]) == pytest.approx(jiwer.cer(ref, hyp), abs=1e-12)


# --- MTWV --------------------------------------------------------------------------------------

# Five documents d1..d5. Term A occurs in d1, d2 (3 non-target documents); term B occurs in d3
# (4 non-target documents); term C occurs nowhere and is excluded (else its 0.95 false alarms
# would dominate).
QBE = {
    "A": ([0.9, 0.5, 0.6, 0.2, 0.1], [1, 1, 0, 0, 0]),
    "B": ([0.3, 0.4, 0.7, 0.8, 0.1], [0, 0, 1, 0, 0]),
    "C": ([0.95, 0.95, 0.95, 0.95, 0.95], [0, 0, 0, 0, 0]),
}


def _qbe_pairs():
    terms = [t for t, (s, _) in QBE.items() for _ in s]
    scores = [x for s, _ in QBE.values() for x in s]
    labels = [y for _, y in QBE.values() for y in y]
    return terms, scores, labels


def test_mtwv_hand_worked():
    terms, scores, labels = _qbe_pairs()
    # TWV(θ) = 1 - mean over {A, B} of [P_miss + β P_fa], detections are scores >= θ.
    # θ=0.9: A hits d1 (P_miss 1/2), B nothing (P_miss 1)         -> 1 - (0.5 + 1)/2 = 0.25
    # θ=0.8: B false alarm d4 (P_fa 1/4)                          -> 1 - (0.5 + 1 + β/4)/2
    # θ=0.7: B hits d3 (P_miss 0, P_fa 1/4)                        -> 1 - (0.5 + β/4)/2
    # θ=0.6: A false alarm d3 (P_fa 1/3)                          -> 1 - (0.5 + β/3 + β/4)/2
    # θ=0.5: A hits d2 (P_miss 0)                                 -> 1 - (β/3 + β/4)/2
    # θ=0.4, 0.3: B false alarms d2, d1 (P_fa 2/4, 3/4)          -> 1 - (β/3 + 2β/4)/2, 1 - (β/3 + 3β/4)/2
    # θ=0.2, 0.1: A false alarms d4, d5 ...                       -> down to 1 - (β + β)/2
    # β = 1: the values are 0.25, 0.125, 0.625, 0.4583, 0.7083, 0.5833, 0.4583, 0.2917, 0 -> max 17/24 at 0.5.
    assert mtwv(terms, scores, labels, beta=1.0) == pytest.approx(1 - (1 / 3 + 1 / 4) / 2)
    assert twv(terms, scores, labels, threshold=0.7, beta=1.0) == pytest.approx(0.625)
    assert twv(terms, scores, labels, threshold=0.65, beta=1.0) == pytest.approx(0.625)
    # β = 999.9: any false alarm costs hundreds, so the best is θ=0.9 with none: 0.25.
    assert mtwv(terms, scores, labels) == pytest.approx(0.25)
    # Detecting nothing gives TWV 0, so MTWV is never negative.
    assert twv(terms, scores, labels, threshold=2.0) == 0.0


def test_mtwv_perfect_scores_give_one():
    rng = np.random.default_rng(0)
    terms = np.repeat([f"q{i}" for i in range(6)], 20).tolist()
    labels = (rng.random(len(terms)) < 0.2).astype(int)
    labels[::20] = 1  # every term occurs at least once
    scores = labels + 0.1 * rng.random(len(terms))
    assert mtwv(terms, scores, labels) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_mtwv_matches_definition_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    terms = np.repeat([f"q{i}" for i in range(5)], 12)
    labels = (rng.random(len(terms)) < 0.25).astype(int)
    scores = np.round(labels * 0.7 + rng.random(len(terms)), 1)  # rounded: ties across terms
    beta = 5.0
    best = 0.0
    for theta in np.unique(scores):
        cost = []
        for t in np.unique(terms):
            m = terms == t
            if labels[m].sum() == 0:
                continue
            detected = scores[m] >= theta
            p_miss = 1 - (detected & (labels[m] == 1)).sum() / labels[m].sum()
            p_fa = (detected & (labels[m] == 0)).sum() / (labels[m] == 0).sum()
            cost.append(p_miss + beta * p_fa)
        best = max(best, 1 - np.mean(cost))
    assert mtwv(terms.tolist(), scores, labels, beta=beta) == pytest.approx(best, abs=1e-12)
    # the numeric table the leaderboard's bootstrap passes (term ids as numbers) gives the same value
    table = np.column_stack([np.unique(terms, return_inverse=True)[1], scores, labels]).astype(float)
    assert mtwv_from_stats(table, beta=beta) == pytest.approx(best, abs=1e-12)
    # any other numbering of the terms (negative, fractional) gives it too
    for renumber in (lambda t: 7 * t - 3, lambda t: t + 0.5):
        other = np.column_stack([renumber(table[:, 0]), table[:, 1:]])
        assert mtwv_from_stats(other, beta=beta) == pytest.approx(best, abs=1e-12)


# --- bootstrap ---------------------------------------------------------------------------------


def _wer_stats(n: int, seed: int) -> list[tuple]:
    refs, hyps = _random_pairs(seed, WORDS, n=n)
    return [wer_item(" ".join(r), " ".join(h)) for r, h in zip(refs, hyps)]


def test_bootstrap_covers_point_and_narrows_with_more_items():
    small, large = _wer_stats(40, 0), _wer_stats(600, 1)
    lo_s, hi_s = bootstrap_ci(small, ratio_of_sums, n=500, seed=0)
    lo_l, hi_l = bootstrap_ci(large, ratio_of_sums, n=500, seed=0)
    assert lo_s <= ratio_of_sums(small) <= hi_s
    assert lo_l <= ratio_of_sums(large) <= hi_l
    assert hi_l - lo_l < 0.6 * (hi_s - lo_s)
    assert bootstrap_ci(small, ratio_of_sums, n=500, seed=0) == (lo_s, hi_s)


def test_bootstrap_resamples_items_and_recomputes_the_ratio():
    # One item (1 error, 1 word) and 49 of (0 errors, 99 words). A resample with k copies of the
    # first has corpus WER k / (k + 99 (50 - k)), below 0.01 for any plausible k; a mean of
    # per-item ratios would sit near 1/50 = 0.02.
    stats = [(1, 1)] + [(0, 99)] * 49
    lo, hi = bootstrap_ci(stats, ratio_of_sums, n=300, seed=0)
    assert 0 <= lo <= hi < 0.01
    # Non-numeric stats (MTWV's query ids) take the list path.
    rng = np.random.default_rng(0)
    terms = np.repeat(["q0", "q1", "q2"], 30).tolist()
    labels = (rng.random(len(terms)) < 0.4).astype(int)
    pairs = [qbe_item((t, y), 0.5 * y + rng.random()) for t, y in zip(terms, labels)]
    lo, hi = bootstrap_ci(pairs, lambda s: mtwv_from_stats(s, beta=1.0), n=100, seed=0)
    assert 0.0 <= lo <= mtwv_from_stats(pairs, beta=1.0) <= hi <= 1.0


# --- metric objects and specs ------------------------------------------------------------------


def test_metric_specs_from_yaml_entries():
    wer = metric_from_spec({"name": "wer", "primary": True})
    assert wer.primary and not wer.higher_is_better
    wer.update(["a b", "c"], ["a", "c"])
    wer.update(["d"], ["d"])
    assert wer.compute() == pytest.approx(1 / 4)
    assert wer.item_score(wer.stats[0]) == pytest.approx(0.5)
    wer.reset()
    assert wer.stats == []

    directions = {name: metric_from_spec(name).higher_is_better for name in METRICS.names()}
    assert directions == {
        "accuracy": True, "cer": False, "der": False, "eer": False, "min_dcf": False, "mtwv": True,
        "per": False, "slot_type_f1": True, "slot_value_cer": False, "wer": False,
    }  # fmt: skip

    dcf = metric_from_spec({"name": "min_dcf", "p_target": 0.05})
    scores, labels = _trials(0)
    dcf.update(labels, scores)
    assert dcf.compute() == pytest.approx(min_dcf(scores, labels, p_target=0.05))
    assert dcf.item_score(dcf.stats[0]) is None

    with pytest.raises(ConfigError, match="no option"):
        metric_from_spec({"name": "der", "colar": 0.25})
    with pytest.raises(ConfigError, match="tasks/sd/task.yaml: metric 'der': option 'collar'"):
        metric_from_spec({"name": "der", "collar": "big"}, where="tasks/sd/task.yaml")
    with pytest.raises(ConfigError, match="probability"):
        metric_from_spec({"name": "min_dcf", "p_target": 1.5})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        metric_from_spec({"primary": True})
    with pytest.raises(EvalkitError, match="Did you mean 'wer'"):
        metric_from_spec("wef")
    with pytest.raises(EvalkitError, match="2 references but 1"):
        wer.update(["a", "b"], ["a"])


def test_bootstrap_of_named_groups_runs_on_numbers_and_matches_the_names():
    """QbE's item stats name their term: the interval resampled as one numeric array (the names numbered)
    equals the one over the stats with integer terms, and equals what resampling the lists gives."""
    from evalkit.metrics.detection import mtwv_from_stats
    from evalkit.metrics.stats import _numeric_table, bootstrap_ci

    rng = np.random.default_rng(1)
    named, numbered = [], []
    for i in range(700):
        occurs = int(rng.random() < 0.2)
        score = float(rng.normal() + 2.5 * occurs)
        named.append((f"q{i % 7}", score, occurs))
        numbered.append((i % 7, score, occurs))
    table = _numeric_table(named)
    assert table is not None and table.shape == (700, 3)
    as_names = bootstrap_ci(named, mtwv_from_stats, n=50)
    assert as_names == bootstrap_ci(numbered, mtwv_from_stats, n=50)
    # the list path (what a metric with other stats takes) draws the same items
    draws = np.random.default_rng(0)
    by_lists = [mtwv_from_stats([named[i] for i in draws.integers(0, 700, size=700)]) for _ in range(50)]
    assert as_names == tuple(float(v) for v in np.percentile(by_lists, [2.5, 97.5]))


def _term_pairs(seed: int, n_terms: int = 12, n_docs: int = 40) -> list[tuple]:
    rng = np.random.default_rng(seed)
    pairs = []
    for t in range(n_terms):
        skill = rng.uniform(0.5, 3.0)  # how well this query is found: pairs of one term are alike
        for _ in range(n_docs):
            occurs = int(rng.random() < 0.1)
            pairs.append((f"q{t}", float(rng.normal() + skill * occurs), occurs))
    return pairs


def test_twv_curve_counts_a_term_drawn_twice_as_two_terms():
    """`TWVCurve.value(weights)` is MTWV of the pairs with term t copied weights[t] times (each copy a term
    of its own), computed without building that table."""
    from evalkit.metrics.detection import TWVCurve

    pairs = _term_pairs(0)
    curve = TWVCurve(pairs, beta=12.49)
    assert curve.value() == pytest.approx(mtwv_from_stats(pairs, beta=12.49), abs=1e-12)
    weights = np.array([0, 2, 1, 0, 3, 1, 1, 0, 2, 0, 1, 1])
    names = sorted({p[0] for p in pairs})  # the curve numbers terms in sorted order
    copied = [
        (f"{t}#{k}", score, occurs) for t, score, occurs in pairs for k in range(weights[names.index(t)])
    ]
    assert curve.value(weights) == pytest.approx(mtwv_from_stats(copied, beta=12.49), abs=1e-12)
    with pytest.raises(EvalkitError, match="no term drawn occurs"):
        curve.value(np.zeros(len(names)))


def test_mtwv_interval_resamples_terms_with_all_their_pairs():
    """MTWV's bootstrap draws terms (a cluster bootstrap): each resample equals MTWV of the drawn terms'
    pairs, copied as drawn; and as the pairs of one term are alike, it is wider than resampling pairs."""
    from evalkit.metrics.stats import bootstrap_ci, group_resamples

    pairs = _term_pairs(1)
    metric = metric_from_spec({"name": "mtwv", "beta": 12.49})
    metric.update([(t, y) for t, _, y in pairs], [s for _, s, _ in pairs])
    values = group_resamples(metric.by_group(metric.stats), n=40, seed=3)
    rng = np.random.default_rng(3)
    by_term = {}
    for p in pairs:
        by_term.setdefault(p[0], []).append(p)
    names = sorted(by_term)
    explicit = []
    for _ in range(40):
        drawn = rng.integers(0, len(names), size=len(names))
        table = [(f"{names[t]}#{k}", s, y) for k, t in enumerate(drawn) for _, s, y in by_term[names[t]]]
        explicit.append(mtwv_from_stats(table, beta=12.49))
    np.testing.assert_allclose(values, explicit, atol=1e-12)
    low, high = metric.confidence_interval(n=300)
    assert low <= metric.compute() <= high
    pair_low, pair_high = bootstrap_ci(metric.stats, metric.aggregate, n=300)
    assert high - low > pair_high - pair_low
