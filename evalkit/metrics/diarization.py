"""Diarization error rate (as pyannote.metrics computes it) and segments from frame-level speaker activity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from evalkit.core.errors import EvalkitError
from evalkit.metrics.stats import Stats, corpus_value, stats_table

Segment = tuple[float, float, Any]  # (start_s, end_s, speaker)


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


def _merged(segments: list[Segment]) -> list[Segment]:
    """Each speaker's overlapping or touching segments joined into one (pyannote's `support()`)."""
    out: list[list] = []
    for start, end, speaker in sorted(segments, key=lambda seg: (str(seg[2]), seg[0], seg[1])):
        if out and out[-1][2] == speaker and start <= out[-1][1]:  # sorted: a speaker's last is out[-1]
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end, speaker])
    return [(a, b, spk) for a, b, spk in out]


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
    A speaker's own overlapping or touching segments are first joined into one (as pyannote's
    `Annotation.support()`; pyannote itself would count an overlap twice), so no collar lies
    inside speech of one speaker, e.g. where the synthetic suite's talker starts a turn before
    finishing the last.
    """
    ref = _merged(_check_segments(ref, "reference"))
    hyp = _merged(_check_segments(hyp, "hypothesis"))
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
    table = stats_table(stats, "DER")
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


def der(
    refs: Sequence[Sequence[Segment]],
    hyps: Sequence[Sequence[Segment]],
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> float:
    """DER over recordings: refs[i] and hyps[i] are the segments of recording i."""
    return corpus_value(lambda r, h: der_item(r, h, collar, skip_overlap), der_from_stats, refs, hyps)
