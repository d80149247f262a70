"""The lexicon of the synthetic text: common English words by part of speech, from ``data/*.txt``.

The word lists are plain text so that they can be read and extended without code; each file
says its format in its header. Nouns, verbs and adjectives carry semantic classes (person,
animal, thing, vehicle, plant, food, drink, place, idea) so that the grammar in
`evalkit.synth.text` pairs words that go together. Loaded once, lazily.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from evalkit.core.errors import EvalkitError

DATA = Path(__file__).parent / "data"
CLASSES = "patvgfdli"  # person animal thing vehicle plant food drink place idea (see nouns.txt)


@dataclass(frozen=True)
class Noun:
    """A noun and its plural; `cls` is its semantic class (one letter of CLASSES)."""

    word: str
    plural: str | None  # None: a mass noun ("bread")
    cls: str


@dataclass(frozen=True)
class Verb:
    """A verb's five forms and the classes of nouns it takes as subject and object."""

    base: str
    third: str
    past: str
    participle: str
    gerund: str
    subjects: str  # noun classes that can be its subject
    objects: str  # noun classes of its object; "" for an intransitive verb
    motion: bool = False  # intransitive verbs of motion take a direction ("into the house")


@dataclass(frozen=True)
class Lexicon:
    """Everything in ``data/`` except the task templates."""

    nouns: tuple[Noun, ...]
    transitive: tuple[Verb, ...]
    intransitive: tuple[Verb, ...]
    adjectives: tuple[tuple[str, str], ...]  # (word, noun classes)
    words: dict[str, tuple[str, ...]]  # closed classes, adverbs, names, numbers by kind
    times: dict[str, tuple[str, ...]]  # tense -> time adverbials


def rows(name: str, columns: int | None = None, sep: str | None = None) -> list[list[str]]:
    """Fields of each non-comment line of ``data/<name>`` (split on `sep`, default whitespace)."""
    path = DATA / name
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        row = [c.strip() for c in line.split(sep)] if sep else line.split()
        if columns is not None and len(row) != columns:
            raise EvalkitError(
                f"{path}:{lineno}: expected {columns} fields, got {len(row)}. Fix the word list."
            )
        out.append(row)
    return out


def grouped(rows: list[list[str]]) -> dict[str, tuple[str, ...]]:
    """Rows keyed by their first field, the rest joined by spaces, in file order."""
    out: dict[str, list[str]] = {}
    for key, *rest in rows:
        out.setdefault(key, []).append(" ".join(rest))
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def load() -> Lexicon:
    """The whole lexicon, read once per process."""
    nouns = tuple(Noun(w, None if p == "-" else p, c) for w, p, c in rows("nouns.txt", 3))
    transitive = tuple(Verb(*r) for r in rows("verbs_transitive.txt", 7))
    intransitive = tuple(Verb(*r[:6], "", r[6] == "m") for r in rows("verbs_intransitive.txt", 7))
    words = grouped(rows("function_words.txt", 2) + rows("adverbs.txt", 2))
    words["name"] = tuple(r[0] for r in rows("names.txt", 1))
    words["number"] = tuple(r[0] for r in rows("numbers.txt", 1))
    adjectives = tuple((w, c) for w, c in rows("adjectives.txt", 2))
    return Lexicon(nouns, transitive, intransitive, adjectives, words, grouped(rows("time_phrases.txt")))


def lexicon() -> dict[str, list[str]]:
    """Every word `sentence` uses, by part of speech (lemmas first, then inflected forms).

    "report" holds the past-tense verbs that introduce reported speech ("she said that ..."),
    "time" the words of the time adverbials ("last week").
    """
    lex = load()
    out = {
        "noun": [n.word for n in lex.nouns],
        "adjective": [w for w, _ in lex.adjectives],
        "verb": [v.base for v in lex.transitive + lex.intransitive],
        "adverb": [w for k in ("manner", "frequency", "degree", "place") for w in lex.words[k]],
        "name": list(lex.words["name"]),
        "number": list(lex.words["number"]),
    }
    for pos in (
        "determiner",
        "pronoun",
        "conjunction",
        "auxiliary",
        "wh",
        "preposition",
        "report",
        "other",
        "interjection",
    ):
        out[pos] = list(lex.words[pos])
    out["time"] = [w for phrases in lex.times.values() for p in phrases for w in p.split()]
    out["noun_plural"] = [n.plural for n in lex.nouns if n.plural]
    for form in ("third", "past", "participle", "gerund"):
        out[f"verb_{form}"] = [getattr(v, form) for v in lex.transitive + lex.intransitive]
    return {pos: list(dict.fromkeys(words)) for pos, words in out.items()}


@functools.cache
def nouns_of(classes: str) -> tuple[Noun, ...]:
    """Nouns of any of the `classes` (letters of CLASSES), in file order."""
    return tuple(n for n in load().nouns if n.cls in classes)


@functools.cache
def adjectives_for(cls: str) -> tuple[str, ...]:
    """Adjectives that describe nouns of class `cls` naturally."""
    return tuple(w for w, c in load().adjectives if cls in c)


AN_EXCEPTIONS = ("uni", "use", "usu", "eu", "one", "once")  # vowel letter, consonant sound
SILENT_H = ("hour", "honest", "honor", "heir", "herb")  # American English


def article(next_word: str) -> str:
    """'a' or 'an' by the sound (not the letter) that follows."""
    if next_word.startswith(SILENT_H):
        return "an"
    if next_word[0] in "aeiou" and not next_word.startswith(AN_EXCEPTIONS):
        return "an"
    return "a"
