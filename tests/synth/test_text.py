"""The text generator of the synthetic suite: size, variety, labels, offsets, determinism, and
(through eSpeak NG, an independent judge) that its words are pronounced as the labels assume."""

import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.synth import text
from evalkit.synth.espeak import Voice, engine
from evalkit.synth.lexicon import article, lexicon

WORDS = re.compile(r"^[a-z]+( [a-z]+)*$")
LEMMA_POS = (
    "noun",
    "adjective",
    "verb",
    "adverb",
    "name",
    "number",
    "determiner",
    "pronoun",
    "conjunction",
    "auxiliary",
    "wh",
    "preposition",
)
FSC_ACTIONS = {"activate", "deactivate", "increase", "decrease", "change language", "bring"}
FSC_OBJECTS = {
    "lights",
    "lamp",
    "music",
    "heat",
    "volume",
    "newspaper",
    "juice",
    "socks",
    "shoes",
    "none",
    "Chinese",
    "Korean",
    "English",
    "German",
}
FSC_LOCATIONS = {"kitchen", "bedroom", "washroom", "none"}
SNIPS_INTENTS = {
    "PlayMusic",
    "GetWeather",
    "BookRestaurant",
    "AddToPlaylist",
    "RateBook",
    "SearchCreativeWork",
    "SearchScreeningEvent",
}
US = Voice("en-us")


def phones(words: str) -> str:
    return "".join(engine().phonemes(words, US))


def all_words() -> set[str]:
    return {w for ws in lexicon().values() for w in ws}


def test_lexicon_has_1500_distinct_lemmas_of_plain_words():
    lex = lexicon()
    lemmas = {w for pos in LEMMA_POS for w in lex[pos]}
    assert len(lemmas) >= 1500
    assert all(re.fullmatch(r"[a-z]+", w) for w in all_words())
    assert len(lex["noun"]) >= 700 and len(lex["verb"]) >= 250 and len(lex["adjective"]) >= 250


def test_lexicon_words_are_pronounced_by_espeak():
    rng = random.Random(0)
    for word in rng.sample(sorted(all_words()), 200):
        got = engine().phonemes(word, US)
        assert got, word
        assert len(got) <= len(word) + 1, f"eSpeak seems to spell {word!r} letter by letter: {got}"


def test_article_rule_agrees_with_espeak():
    vowels = set("aeiouɑɐɒæɛɜɪʊʌɔəɚᵻ")
    lex = lexicon()
    for word in lex["noun"] + lex["adjective"] + lex["number"]:
        assert (article(word) == "an") == (engine().phonemes(word, US)[0][0] in vowels), word


def test_sentences_are_varied_and_plain():
    rng = random.Random(1)
    sents = [text.sentence(rng) for _ in range(5000)]
    assert len(set(sents)) >= 3000
    assert all(WORDS.match(s) and 4 <= len(s.split()) <= 16 for s in sents)
    known = all_words()
    assert {w for s in sents for w in s.split()} <= known
    # several shapes: questions of both kinds, conjunctions, tenses, plurals, adverbs, prepositions
    first = Counter(s.split()[0] for s in sents)
    for start in ("did", "is", "will", "who", "what", "where", "why", "how", "which", "there", "please"):
        assert first[start] > 0, start
    used = Counter(w for s in sents for w in s.split())
    lex = lexicon()
    for pos in ("verb_past", "verb_third", "verb_gerund", "noun_plural", "adverb", "preposition", "time"):
        assert sum(used[w] for w in set(lex[pos])) > 100, pos
    for conj in ("and", "but", "because", "who", "that"):
        assert used[conj] > 20, conj
    assert 0.1 < sum(map(text.is_question, sents)) / len(sents) < 0.35


def test_sentence_length_and_kind_can_be_asked_for():
    rng = random.Random(2)
    for n in (3, 4, 8, 16, 18):
        assert len(text.sentence(rng, n, n).split()) == n
    assert len(text.sentence(rng, 14, 14, question=True).split()) == 14
    assert all(text.is_question(text.sentence(rng, question=True)) for _ in range(300))
    assert not any(text.is_question(text.sentence(rng, question=False)) for _ in range(300))
    with pytest.raises(EvalkitError):
        text.sentence(rng, 9, 5)
    with pytest.raises(EvalkitError):
        text.sentence(rng, 1, 5)
    with pytest.raises(EvalkitError):
        text.sentence(rng, 19, 30)


def _check_fsc_intent(action: str, obj: str, location: str) -> None:
    assert action in FSC_ACTIONS and obj in FSC_OBJECTS and location in FSC_LOCATIONS
    if action == "bring":
        assert obj in {"newspaper", "juice", "socks", "shoes"} and location == "none"
    if action == "change language":
        assert obj in {"Chinese", "Korean", "English", "German", "none"} and location == "none"
    if obj in {"volume", "heat"}:
        assert action in {"increase", "decrease"}
    if obj in {"lights", "lamp", "music"}:
        assert action in {"activate", "deactivate"}
    if location != "none":
        assert obj in {"lights", "heat"}


def _check_fsc_phrasings() -> None:
    phrasings = {}
    for intent, texts in text._fsc():
        assert len(set(texts)) >= 2, intent
        for t in texts:
            assert WORDS.match(t), t
            assert phrasings.setdefault(t, intent) == intent, f"{t!r} is ambiguous"


def _check_fsc_draw(d: dict) -> None:
    if d["location"] != "none":
        assert d["location"] in d["text"]
    if d["object"] in {"Chinese", "Korean", "English", "German"}:
        assert d["object"].lower() in d["text"]


def test_fsc_labels_follow_fluent_speech_commands():
    intents = text.command_intents()
    assert 20 <= len(intents) <= 40 and len(set(intents)) == len(intents)
    for action, obj, location in intents:
        _check_fsc_intent(action, obj, location)
    _check_fsc_phrasings()
    rng = random.Random(3)
    draws = [text.command(rng) for _ in range(2000)]
    assert {(d["action"], d["object"], d["location"]) for d in draws} == set(intents)
    for d in draws:
        _check_fsc_draw(d)


def test_slot_offsets_are_exact():
    rng = random.Random(4)
    draws = [text.slot_request(rng) for _ in range(3000)]
    assert {d["intent"] for d in draws} == SNIPS_INTENTS == set(text.slot_intents())
    assert len({d["text"] for d in draws}) > 2000
    for d in draws:
        t = d["text"]
        assert WORDS.match(t) and " the the " not in f" {t} " and " a a" not in t, t
        last_end = 0
        for slot in d["slots"]:
            assert t[slot["start"] : slot["end"]] == slot["value"], d
            assert slot["start"] >= last_end, d  # in order, not overlapping
            assert (slot["start"] == 0 or t[slot["start"] - 1] == " ") and t[
                slot["end"] : slot["end"] + 1
            ] in ("", " ")
            last_end = slot["end"]
        slots = {s["type"]: s["value"] for s in d["slots"]}
        if "rating_value" in slots and "best_rating" in slots:
            numbers = lexicon()["number"]
            assert numbers.index(slots["rating_value"]) <= numbers.index(slots["best_rating"])
    assert {s["type"] for d in draws for s in d["slots"]} >= {
        "artist",
        "service",
        "track",
        "city",
        "timeRange",
        "party_size_number",
        "restaurant_name",
        "playlist",
        "object_name",
        "rating_value",
        "best_rating",
        "movie_name",
        "location_name",
    }


def test_unknown_words_are_never_keywords_nor_sound_like_one():
    rng = random.Random(5)
    draws = [text.unknown_word(rng) for _ in range(3000)]
    assert not set(draws) & set(text.KEYWORDS)
    assert set(text.AUXILIARY_WORDS) <= set(draws)
    assert len(set(draws) - set(text.AUXILIARY_WORDS)) > 500
    keyword_sounds = {phones(k) for k in text.KEYWORDS}
    clashes = [w for w in text._unknown_pool() if phones(w) in keyword_sounds]
    assert not clashes


def test_qbe_terms_and_documents():
    rng = random.Random(6)
    terms = text.qbe_terms(rng, 40)
    assert len(terms) == 40
    words = [w for t in terms for w in t.split()]
    assert len(words) == len(set(words)), "terms share a word"
    assert any(" " in t for t in terms) and any(" " not in t for t in terms)
    for term in terms:
        assert all(len(w) >= 5 for w in term.split()) or len(term.split()) == 2
        for _ in range(5):
            doc, start, end = text.document_with(rng, term, avoid=terms)
            assert WORDS.match(doc) and 4 <= len(doc.split()) <= 16
            assert " ".join(doc.split()[start:end]) == term
            assert text.occurrences(doc, term) == [(start, end)]
            assert [t for t in terms if text.contains(doc, t)] == [term]
    negatives = [
        s for s in (text.sentence(rng) for _ in range(500)) if not any(text.contains(s, t) for t in terms)
    ]
    assert len(negatives) > 300
    with pytest.raises(EvalkitError):
        text.document_with(rng, "xylophone")
    with pytest.raises(EvalkitError):
        text.qbe_terms(rng, 0)
    assert len(text.qbe_terms(rng, 200)) == 200


def test_contains_matches_whole_words_and_inflections_only():
    assert not text.contains("the party was fun", "art")
    assert not text.contains("a gardener sang", "garden")
    assert text.contains("she saw two tables in the room", "table")
    assert text.contains("the green garden was quiet", "green garden")
    assert not text.contains("the garden was green", "green garden")
    assert text.occurrences("the table and the tables", "table") == [(1, 2), (4, 5)]


def test_qbe_terms_are_not_said_inside_other_words():
    sounds = {w: phones(w) for w in sorted(all_words())}
    nouns, adjectives = text._qbe_pool()
    assert len(nouns) > 300 and len(adjectives) > 80
    for term in nouns + adjectives:
        own = set(text._forms().get(term, (term,)))
        inside = [w for w, s in sounds.items() if w not in own and sounds[term] in s]
        assert not inside, f"{term!r} is heard inside {inside}"


def test_documents_say_the_term_as_it_is_said_alone():
    rng = random.Random(7)
    terms = text.qbe_terms(rng, 60)
    said = [phones(term) in phones(text.document_with(rng, term)[0]) for term in terms for _ in range(3)]
    # A few differ only by linking "r" before a vowel ("panda raced"), which eSpeak marks.
    assert sum(said) / len(said) >= 0.95


def _draw_all(seed: int) -> list:
    rng = random.Random(seed)
    terms = text.qbe_terms(rng, 5)
    return [
        [text.sentence(rng) for _ in range(50)],
        [text.command(rng) for _ in range(20)],
        [text.slot_request(rng) for _ in range(20)],
        [text.unknown_word(rng) for _ in range(20)],
        terms,
        [list(text.document_with(rng, t)) for t in terms],
    ]


def test_every_generator_is_deterministic_across_processes():
    assert _draw_all(11) == _draw_all(11)
    assert _draw_all(11) != _draw_all(12)
    code = "import json, tests.synth.test_text as t; print(json.dumps(t._draw_all(11)))"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for hashseed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        ).stdout
        assert json.loads(out) == json.loads(json.dumps(_draw_all(11)))
