"""Text metrics by edit distance: WER, CER, PER, and slot filling (slot-type F1, slot-value CER)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.metrics.stats import Stats, corpus_value, mean_of_items, ratio_of_sums


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
    """Characters, spaces included, with the ends' whitespace stripped: jiwer's CER (s3prl's too, whose
    transcripts have no such ends). Runs of whitespace inside are kept: "a  b" is four characters."""
    return list(text.strip())


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

    Tags nested inside a value (a malformed hypothesis) are dropped from the value. As in s3prl
    (downstream/ctc/metric.py, `parse`), a closing tag is matched by prefix: `E-playlist_owner` closes
    `B-playlist`.
    """
    text = " ".join(text.split())
    slots = []
    for slot_type, value in re.findall(r"B-(\S+) (.+?) E-\1", text):
        value = " ".join(w for w in value.split() if not re.fullmatch(r"[BE]-\S+", w))
        slots.append({"type": slot_type, "value": value})
    return slots


def untag(text: str) -> str:
    """A tagged transcript without its slot tags: the words that WER and CER score on SF."""
    return " ".join(w for w in text.split() if not (w.startswith(("B-", "E-")) and len(w) > 2))


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return corpus_value(wer_item, ratio_of_sums, refs, hyps)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return corpus_value(cer_item, ratio_of_sums, refs, hyps)


def per(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> float:
    return corpus_value(per_item, ratio_of_sums, refs, hyps)


def slot_type_f1(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> float:
    return corpus_value(slot_type_f1_item, mean_of_items, refs, hyps)


def slot_value_cer(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> float:
    return corpus_value(slot_value_cer_item, ratio_of_sums, refs, hyps)
