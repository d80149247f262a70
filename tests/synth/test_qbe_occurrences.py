"""QbE documents: the query term is timed where it is said, whatever words eSpeak joins.

eSpeak emits one word event for some word pairs ("do not", "did not"; "was a", "there are" in some
accents), so counting events to find the term's words shifts its span or loses it. The reference
here is eSpeak's own phonemes of the term's words, spoken alone: the phones inside the labelled span
must be those.
"""

from __future__ import annotations

import difflib

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.synth.channel import ChannelConfig
from evalkit.synth.espeak import Speech, engine
from evalkit.synth.plans import plan_corpus
from evalkit.synth.render import Chunk, Item, _occurrences, render_item
from evalkit.synth.speakers import Speaker
from evalkit.synth.suite import SUITE_PROFILES


def _speaker(accent: str, variant: str) -> dict:
    return {
        "id": f"{accent}+{variant}",
        "variant": variant,
        "accent": accent,
        "pitch": 50,
        "range": 50,
        "rate": 175,
    }


def _document(text: str, first: int, last: int, accent: str = "en-us", variant: str = "m3") -> Item:
    term = " ".join(text.split()[first:last])
    return Item(
        "qbe-test-d9999",
        "document",
        _speaker(accent, variant),
        text,
        {"role": "document", "text": text, "term_in_doc": term},
        term_words=(first, last),
    )


def _render(item: Item, tmp_path) -> dict:
    chunk = Chunk("qbe", "test", 0, [item], str(tmp_path), 0, ChannelConfig(), [], with_alignment=True)
    return render_item(item, chunk, [])


def _phones_in(alignment, start: float, end: float) -> list[str]:
    return [a[2] for a in alignment if a[0] >= start - 1e-3 and a[1] <= end + 1e-3]


def _term_phones(item: Item) -> list[str]:
    """eSpeak's phonemes of the term's words as the text says them (maybe inflected), alone."""
    first, last = item.term_words
    said = " ".join(item.text.split()[first:last])
    return engine().phonemes(said, Speaker(**item.speaker).voice())


@pytest.mark.parametrize(
    "text, first, last, accent, variant",
    [
        # "do not" is one event: the term at the end fell off the event list (labelled negative)
        ("please do not wake several tourists under a crooked banner", 8, 10, "en-us", "m3"),
        # "did not" is one event: the span was "shovel on"
        ("they did not see the ancient shovel on the table", 5, 7, "en-us", "m3"),
        # this accent joins "there are" (the default suite's test d0064)
        ("there are two actors beside that golden fan every day", 6, 7, "en-gb-x-gbcwmd", "f3"),
        # nothing joined: the span is what it always was
        ("the ancient shovel did not break", 1, 3, "en-us", "m3"),
    ],
)
def test_term_is_timed_at_its_own_words(tmp_path, text, first, last, accent, variant):
    item = _document(text, first, last, accent, variant)
    record = _render(item, tmp_path)
    (occ,) = record["occurrences"]
    assert occ["term"] == item.labels["term_in_doc"]
    assert 0 <= occ["start"] < occ["end"] <= record["duration"]
    assert _phones_in(record["alignment"], occ["start"], occ["end"]) == _term_phones(item)


@pytest.mark.parametrize(
    "first, last, why",
    [(2, 3, "'not' has no word event of its own"), (1, 2, "'do' is joined to the next word 'not'")],
)
def test_a_term_the_events_cannot_time_fails_naming_the_utterance(tmp_path, first, last, why):
    item = _document("we do not wake the dog", first, last)
    with pytest.raises(EvalkitError, match="qbe-test-d9999"):
        _render(item, tmp_path)


def test_a_word_span_outside_the_text_fails(tmp_path):
    item = _document("we do not wake the dog", 5, 7)
    with pytest.raises(EvalkitError, match=r"qbe-test-d9999.*has 6 words"):
        _render(item, tmp_path)


def test_every_planned_term_of_the_default_suite_is_labelled_where_it_is_said():
    """All documents of the default suite's plan that say a term, spoken as the suite speaks them.

    Phones move across word boundaries in connected speech (a linking r, the n of "an" before a
    vowel, an accent dropping an l), so the span's phones are compared with the term's by similarity:
    measured on this plan, every span scores at least 0.85, while a span one word off scores 0.56 or
    less.
    """
    items = [it for its in plan_corpus("qbe", SUITE_PROFILES["default"], 0).values() for it in its]
    documents = [it for it in items if it.term_words is not None]
    assert len(documents) > 100
    for item in documents:
        speech: Speech = engine().speak(item.text, Speaker(**item.speaker).voice())
        (occ,) = _occurrences(item, speech)["occurrences"]
        said = _phones_in(speech.alignment, occ["start"], occ["end"])
        score = difflib.SequenceMatcher(None, said, _term_phones(item)).ratio()
        assert score >= 0.8, (item.id, item.text, said, _term_phones(item))
