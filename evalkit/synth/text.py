"""Text of the synthetic speech suite: sentences, commands, slot requests, keywords, query terms.

The suite needs text that is varied enough that a model cannot memorise it, yet made only
of ordinary words that eSpeak NG pronounces well, so that its phone labels are right. A small
grammar over a part-of-speech lexicon (``data/*.txt``: ~1,700 common lemmas with semantic
classes, so that "the farmer ate the bread" is likelier than "the bread ate the farmer")
gives that; task templates reuse it.

Why one module: every task template builds on the grammar's private pieces (noun phrases,
verb groups, the lexicon's forms) and keeps its conventions below; split apart, those pieces
would become a public API that nothing outside the suite's text should use.

Conventions, for every function here:

* Each takes a ``random.Random`` and uses nothing else that is random: the same seed gives
  the same text, in any process (no set iteration, no global state).
* Text is lower-case words separated by single spaces, with no punctuation and no digits.
  Questions are plain words too ("did the farmer sell the old horse"): ``is_question``
  tells them apart, because statements never start with an auxiliary or a wh-word.

Public API::

    sentence(rng, min_words=4, max_words=16, question=None) -> str   # also for emotion
    is_question(text) -> bool
    command(rng) -> {"text", "action", "object", "location"}        # Fluent Speech Commands
    command_intents() -> list[(action, object, location)]
    slot_request(rng) -> {"text", "intent", "slots": [{"type", "value", "start", "end"}]}  # SNIPS
    KEYWORDS, AUXILIARY_WORDS; unknown_word(rng) -> str                # Speech Commands v0.01
    qbe_terms(rng, n) -> list[str]; document_with(rng, term, avoid=()) -> (text, start, end)
    occurrences(text, term) -> list[(start, end)]; contains(text, term) -> bool
    lexicon() -> {part of speech: [words]}
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, replace

from evalkit.core.errors import EvalkitError
from evalkit.synth.lexicon import (
    CLASSES,
    DATA,
    Noun,
    Verb,
    adjectives_for,
    article,
    grouped,
    lexicon,
    load,
    nouns_of,
    rows,
)

# --------------------------------------------------------------------------- grammar


@dataclass
class _NP:
    """A noun phrase, kept structured until rendering so query terms can be placed in it."""

    det: str | None
    adjs: list[str]
    noun: Noun
    plural: bool

    def words(self) -> list[str]:
        head = self.noun.plural if self.plural else self.noun.word
        words = [*self.adjs, head]
        if self.det == "a":
            return [article(words[0]), *words]
        return [self.det, *words] if self.det else words


@dataclass
class _Subject:
    items: list  # of str and _NP
    person: int  # 1, 2 or 3
    plural: bool
    cls: str = "p"


_SG_DETS = ("the", "the", "the", "a", "a", "a", "this", "that", "my", "your", "his", "her", "our", "their")
_PL_DETS = ("the", "the", "the", "some", "these", "those", "my", "our", "their", "many", "several")
_MASS_DETS = ("the", "the", "some", "my", "this", "our", "their", None)
_TENSES = ("past", "present", "future", "progressive", "past_progressive", "perfect", "modal")
_TENSE_WEIGHTS = (30, 20, 10, 10, 5, 10, 10)
_MODALS = ("can", "could", "should", "must", "might", "would")
# Verbs of state sound wrong in the progressive ("she is knowing"); they use the future there.
_STATIVE = frozenset("believe like love hate want need know understand prefer remember forget own".split())


def _det(rng: random.Random, noun: Noun, plural: bool) -> str | None:
    if noun.plural is None:
        return rng.choice(_MASS_DETS)
    if plural:
        return rng.choice(_PL_DETS + load().words["number"][2:13])
    return rng.choice(_SG_DETS)


def _np(rng: random.Random, classes: str, plural: bool | None = None) -> _NP:
    noun = rng.choice(nouns_of(classes))
    plural = (rng.random() < 0.3 if plural is None else plural) and noun.plural is not None
    n_adj = rng.choices((0, 1, 2), (55, 35, 10))[0]
    adjs = list(dict.fromkeys(rng.choice(adjectives_for(noun.cls)) for _ in range(n_adj)))
    return _NP(_det(rng, noun, plural), adjs, noun, plural)


def _subject(rng: random.Random, classes: str) -> _Subject:
    if "p" in classes and rng.random() < 0.3:
        if rng.random() < 0.6:
            pronoun = rng.choice(("i", "you", "he", "she", "we", "they"))
            person = {"i": 1, "we": 1, "you": 2}.get(pronoun, 3)
            return _Subject([pronoun], person, pronoun in ("we", "they", "you"))
        return _Subject([rng.choice(load().words["name"])], 3, False)
    np = _np(rng, classes)
    return _Subject([np], 3, np.plural, np.noun.cls)


def _object(rng: random.Random, classes: str) -> list:
    if "p" in classes and rng.random() < 0.1:
        return [rng.choice(("me", "you", "him", "her", "us", "them") + load().words["name"])]
    return [_np(rng, classes)]


def _be(subj: _Subject, past: bool) -> str:
    if past:
        return "was" if subj.person in (1, 3) and not subj.plural else "were"
    if subj.person == 1 and not subj.plural:
        return "am"
    return "is" if subj.person == 3 and not subj.plural else "are"


def _verb_group(rng: random.Random, verb: Verb, subj: _Subject, tense: str, neg: bool, question: bool):
    """(auxiliary, main) words; statements join them, questions put the subject between."""
    third = subj.person == 3 and not subj.plural
    support = neg or question
    if tense == "present":
        if support:
            aux, main = ["does" if third else "do"], [verb.base]
        else:
            aux, main = [], [verb.third if third else verb.base]
    elif tense == "past":
        aux, main = (["did"], [verb.base]) if support else ([], [verb.past])
    elif tense in ("progressive", "past_progressive") and verb.base not in _STATIVE:
        aux, main = [_be(subj, tense == "past_progressive")], [verb.gerund]
    elif tense == "perfect":
        aux, main = ["has" if third else "have"], [verb.participle]
    else:
        aux, main = ["will" if tense == "future" else rng.choice(_MODALS)], [verb.base]
    if neg and not question:
        aux = ["cannot"] if aux == ["can"] else [*aux, "not"]
    return aux, main


def _time(rng: random.Random, tense: str, p: float) -> list[str]:
    key = {"past": "past", "past_progressive": "past", "present": "present", "future": "future"}.get(tense)
    if key is None or rng.random() >= p:
        return []
    return rng.choice(load().times[key]).split()


def _pp(rng: random.Random, motion: bool = False) -> list:
    if motion:
        prep = rng.choice(
            ("into", "toward", "across", "through", "along", "around", "past", "over", "from", "to")
        )
    else:
        prep = rng.choice(("in", "on", "under", "near", "behind", "beside", "above", "inside", "at", "by"))
    return [prep, _np(rng, "l" if motion else "lt", plural=False)]


def _manner(rng: random.Random, p: float) -> list[str]:
    return [rng.choice(load().words["manner"])] if rng.random() < p else []


def _clause(
    rng: random.Random,
    question: bool = False,
    tense: str | None = None,
    rich: bool = True,
    copula: bool = True,
) -> list:
    """A transitive, intransitive or copular clause; a yes/no question when `question`."""
    tense = tense or rng.choices(_TENSES, _TENSE_WEIGHTS)[0]
    neg = not question and rng.random() < 0.15
    kind = rng.choices(("transitive", "intransitive", "copula"), (50, 30, 20 if copula else 0))[0]
    if kind == "copula":
        subj = _subject(rng, rng.choice(("p", "a", "t", "f", "l", "pa")))
        past = tense in ("past", "past_progressive")
        aux = [_be(subj, past)] if tense != "future" else ["will"]
        main = [] if tense != "future" else ["be"]
        if neg:
            aux = [*aux, "not"]
        degree = [rng.choice(load().words["degree"])] if rng.random() < 0.3 else []
        pred = [*main, *degree, rng.choice(adjectives_for(subj.cls))]
        if rng.random() < 0.25 and rich:
            pred = [*main, *_pp(rng)]
    else:
        verbs = load().transitive if kind == "transitive" else load().intransitive
        verb = rng.choice(verbs)
        subj = _subject(rng, verb.subjects)
        aux, main = _verb_group(rng, verb, subj, tense, neg, question)
        if verb.objects:
            main += _object(rng, verb.objects)
        main += _manner(rng, 0.25 if rich else 0.1)
        if rich and rng.random() < (0.45 if verb.motion else 0.3):
            main += _pp(rng, verb.motion)
        pred = main
    tail = _time(rng, tense, 0.25 if rich else 0.1)
    if question:
        return [*aux, *subj.items, *pred, *tail]
    return [*subj.items, *aux, *pred, *tail]


def _wh_question(rng: random.Random) -> list:
    tense = rng.choice(("past", "present", "future", "progressive", "perfect", "modal"))
    form = rng.random()
    if form < 0.3:  # who broke the window / which dog chased the cat
        verb = rng.choice(load().transitive + load().intransitive)
        if "p" in verb.subjects and rng.random() < 0.6:
            head = ["who"]
        else:
            head = ["which", rng.choice(nouns_of(verb.subjects)).word]
        aux, main = _verb_group(rng, verb, _Subject([], 3, False), tense, False, False)
        rest = _object(rng, verb.objects) if verb.objects else _pp(rng, verb.motion)
        return [*head, *aux, *main, *rest]
    if form < 0.55:  # what did the children find in the garden
        verb = rng.choice(load().transitive)
        wh = "who" if verb.objects == "p" else "what"
        subj = _subject(rng, verb.subjects)
        aux, main = _verb_group(rng, verb, subj, tense, False, True)
        return [wh, *aux, *subj.items, *main, *(_pp(rng) if rng.random() < 0.3 else [])]
    wh = rng.choice(("where", "when", "why", "how"))  # why is the baby crying
    return [wh, *_clause(rng, question=True, tense=tense, rich=False, copula=wh == "why")]


def _statement(rng: random.Random) -> list:
    shape = rng.choices(
        ("clause", "there", "compound", "subordinate", "relative", "report", "imperative"),
        (40, 8, 12, 12, 10, 8, 10),
    )[0]
    if shape == "there":  # there is a small bird in the garden
        tense = rng.choice(("past", "present"))
        np = _np(rng, "patvgfl")
        if np.noun.plural is None:
            np.det = rng.choice(("some", None))
        else:
            np.det = rng.choice(("some", "many", "several", "two", "three")) if np.plural else "a"
        be = _be(_Subject([], 3, np.plural), tense == "past")
        return ["there", be, np, *_pp(rng), *_time(rng, tense, 0.3)]
    if shape == "compound":
        tense = rng.choice(("past", "present", "future"))
        conj = rng.choice(("and", "but", "so"))
        return [*_clause(rng, tense=tense, rich=False), conj, *_clause(rng, tense=tense, rich=False)]
    if shape == "subordinate":  # the dog barked because the door was open
        tense = rng.choice(("past", "present"))
        conj = rng.choice(("because", "while", "when", "before", "after", "although", "until"))
        return [*_clause(rng, tense=tense, rich=False), conj, *_clause(rng, tense=tense, rich=False)]
    if shape == "relative":  # the man who lives in the city bought a car
        np = _np(rng, "pa")
        rel_verb = rng.choice(tuple(v for v in load().intransitive if np.noun.cls in v.subjects))
        who = "who" if np.noun.cls == "p" else "that"
        rel_tense = rng.choice(("past", "present"))
        _, rel = _verb_group(rng, rel_verb, _Subject([], 3, np.plural), rel_tense, False, False)
        main_verb = rng.choice(tuple(v for v in load().transitive if np.noun.cls in v.subjects))
        subj = _Subject([np, who, *rel, *_pp(rng, rel_verb.motion)], 3, np.plural, np.noun.cls)
        aux, main = _verb_group(rng, main_verb, subj, rng.choices(_TENSES, _TENSE_WEIGHTS)[0], False, False)
        return [*subj.items, *aux, *main, *_object(rng, main_verb.objects)]
    if shape == "report":  # she said that the train was late
        verb = rng.choice(load().words["report"])
        return [*_subject(rng, "p").items, verb, "that", *_clause(rng, tense="past", rich=False)]
    if shape == "imperative":  # please put the red box on the table
        verb = rng.choice(tuple(v for v in load().transitive if "p" in v.subjects and v.base not in _STATIVE))
        lead = rng.choices((["please"], ["please", "do", "not"], []), (45, 15, 40))[0]
        return [*lead, verb.base, *_object(rng, verb.objects), *(_pp(rng) if rng.random() < 0.4 else [])]
    return _clause(rng)


_QUESTION_STARTS = frozenset(
    "is am are was were do does did have has will would can could should must might may "
    "who what where when why how which".split()
)


def is_question(text: str) -> bool:
    """Whether a generated sentence is a question (statements never start like one)."""
    return text.split(" ", 1)[0] in _QUESTION_STARTS


def _render(items: list) -> tuple[list[str], list[tuple[_NP, int]]]:
    words: list[str] = []
    nps: list[tuple[_NP, int]] = []
    for item in items:
        if isinstance(item, _NP):
            nps.append((item, len(words)))
            words.extend(item.words())
        else:
            words.append(item)
    return words, nps


def _sentence_items(rng: random.Random, min_words: int, max_words: int, question: bool | None) -> list:
    if not 3 <= min_words <= max_words or min_words > 18:
        raise EvalkitError(
            f"sentence length range [{min_words}, {max_words}] is not possible: "
            "use 3 <= min_words <= max_words and min_words <= 18."
        )
    for _ in range(50_000):
        q = rng.random() < 0.2 if question is None else question
        if q:
            items = _wh_question(rng) if rng.random() < 0.5 else _clause(rng, question=True)
        else:
            items = _statement(rng)
        if min_words <= len(_render(items)[0]) <= max_words:
            return items
    raise EvalkitError(f"could not generate a sentence of {min_words} to {max_words} words; widen the range.")


def sentence(
    rng: random.Random, min_words: int = 4, max_words: int = 16, question: bool | None = None
) -> str:
    """A grammatical-looking sentence; `question` forces a question (True) or a statement (False).

    Lengths are drawn by rejection, so a narrow range far from the usual 5-10 words is slow, and
    one that the grammar rarely reaches (questions over 14 words) raises EvalkitError.
    """
    return " ".join(_render(_sentence_items(rng, min_words, max_words, question))[0])


# --------------------------------------------------------------------------- query by example

# Pronounced differently by sense or part of speech, so a spoken query may not match its document.
_HETERONYMS = frozenset(
    "close content desert minute object present record refuse wound tear lead live wind".split()
)
# Said inside another lexicon word ("purse" in "person", "juice" in "juicy"); tests/synth/test_text.py
# checks with eSpeak NG that no other term is.
_SOUND_ALIKE = frozenset(
    "seller purse earring smoke juice shore cellar cinema answer noise taste angry hungry sleepy bored "
    "clumsy noisy merry white heavy library".split()
)


@functools.cache
def _forms() -> dict[str, tuple[str, ...]]:
    """Every surface form of each lemma: a spoken-term detector rightly fires on "tables" for "table"."""
    forms: dict[str, dict[str, None]] = {}
    lex = load()
    for n in lex.nouns:
        forms.setdefault(n.word, {n.word: None})[n.plural or n.word] = None
    for v in lex.transitive + lex.intransitive:
        entry = forms.setdefault(v.base, {v.base: None})
        for f in (v.third, v.past, v.participle, v.gerund):
            entry[f] = None
    return {w: tuple(f) for w, f in forms.items()}


@functools.cache
def _qbe_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(nouns, adjectives) usable as query terms: long, unambiguous, not hidden inside other words."""
    lex = load()
    candidates = {
        w
        for w in [n.word for n in lex.nouns] + [w for w, _ in lex.adjectives]
        if len(w) >= 5 and len(re.findall(r"[aeiouy]+", w)) >= 2 and w not in _HETERONYMS | _SOUND_ALIKE
    }
    hidden = set()  # "garden" is said in "gardener"
    for word in {w for words in lexicon().values() for w in words}:
        for i in range(len(word) - 4):
            for j in range(i + 5, len(word) + 1):
                if word[i:j] in candidates and word not in _forms().get(word[i:j], (word[i:j],)):
                    hidden.add(word[i:j])
    nouns = tuple(dict.fromkeys(n.word for n in lex.nouns if n.word in candidates - hidden))
    adjectives = tuple(
        dict.fromkeys(w for w, _ in lex.adjectives if w in candidates - hidden and w not in nouns)
    )
    return nouns, adjectives


def qbe_terms(rng: random.Random, n: int) -> list[str]:
    """`n` distinct query terms (nouns, adjectives, or "adjective noun") sharing no word."""
    nouns, adjectives = _qbe_pool()
    if not 1 <= n <= len(nouns) // 2:
        raise EvalkitError(f"qbe_terms: n={n} is out of range; use 1 to {len(nouns) // 2} terms.")
    terms: list[str] = []
    used: set[str] = set()
    while len(terms) < n:
        kind = rng.choices(("noun", "adjective", "phrase"), (6, 2, 2))[0]
        if kind == "noun":
            words = [rng.choice(nouns)]
        elif kind == "adjective":
            words = [rng.choice(adjectives)]
        else:
            noun = rng.choice(tuple(x for x in load().nouns if x.word in nouns))
            words = [rng.choice(tuple(a for a in adjectives_for(noun.cls) if a in adjectives)), noun.word]
        if used.isdisjoint(words):
            terms.append(" ".join(words))
            used.update(words)
    return terms


def occurrences(text: str, term: str) -> list[tuple[int, int]]:
    """Word spans [start, end) where `term` (or an inflected form of its words) is spoken in `text`."""
    words, parts = text.split(), term.split()
    allowed = [set(_forms().get(p, (p,))) for p in parts]
    return [
        (i, i + len(parts))
        for i in range(len(words) - len(parts) + 1)
        if all(w in a for w, a in zip(words[i : i + len(parts)], allowed))
    ]


def contains(text: str, term: str) -> bool:
    """Whether `text` says `term`; whole words only, so "art" is not in "party"."""
    return bool(occurrences(text, term))


def document_with(
    rng: random.Random,
    term: str,
    min_words: int = 4,
    max_words: int = 16,
    avoid: tuple[str, ...] | list[str] = (),
) -> tuple[str, int, int]:
    """A sentence that says `term` exactly once: (text, first word index, last word index + 1).

    It says none of the terms in `avoid` (pass all the queries to keep a document to one term).
    """
    nouns, adjectives = _qbe_pool()
    parts = term.split()
    noun = parts[-1] if parts[-1] in nouns else None
    adj = parts[0] if parts[0] in adjectives else None
    if not ((len(parts) == 1 and (noun or adj)) or (len(parts) == 2 and noun and adj)):
        raise EvalkitError(f"document_with: {term!r} is not a term from qbe_terms(); pass one of those.")
    head = next((x for x in load().nouns if x.word == noun), None)
    fits = "".join(c for c in CLASSES if adj is None or adj in adjectives_for(c))
    for attempt in range(2000):
        items = _sentence_items(rng, max(3, min_words - 1), max_words, None)
        slots = [
            i
            for i, x in enumerate(items)
            if isinstance(x, _NP)
            and x.noun.cls in fits
            and not (head and x.plural)
            and (head is None or attempt >= 500 or x.noun.cls == head.cls)  # keep the verb's choice of class
        ]
        if not slots:
            continue
        i = rng.choice(slots)
        old: _NP = items[i]
        if head is None:
            new = replace(old, adjs=[adj])
        else:
            dets = _MASS_DETS if head.plural is None else _SG_DETS
            adjs = [adj] if adj else [a for a in old.adjs if a in adjectives_for(head.cls)]
            new = replace(
                old, noun=head, adjs=adjs, det=old.det if old.det in dets else _det(rng, head, False)
            )
        items[i] = new
        words, nps = _render(items)
        text = " ".join(words)
        start = next(s for np, s in nps if np is new) + new.words().index(parts[0])
        if (
            min_words <= len(words) <= max_words
            and occurrences(text, term) == [(start, start + len(parts))]
            and not any(contains(text, t) for t in avoid if t != term)
        ):
            return text, start, start + len(parts)
    raise EvalkitError(
        f"document_with: could not place {term!r} in a sentence of {min_words}-{max_words} words."
    )


# --------------------------------------------------------------------------- task templates


@functools.cache
def _fsc() -> tuple[tuple[tuple[str, str, str], tuple[str, ...]], ...]:
    """(intent, phrasings) pairs with the {location}/{language} placeholders expanded."""
    expand = {
        "{location}": ("kitchen", "bedroom", "washroom"),
        "{language}": ("Chinese", "Korean", "English", "German"),
    }
    intents: dict[tuple[str, str, str], list[str]] = {}
    for action, obj, location, phrasing in rows("fsc_commands.txt", 4, "|"):
        key = next((k for k in expand if k in (obj, location)), None)
        for value in expand.get(key, (None,)):
            obj_, location_, text = (s.replace(key, value) if key else s for s in (obj, location, phrasing))
            intents.setdefault((action, obj_, location_), []).append(text.lower())
    return tuple((k, tuple(v)) for k, v in intents.items())


def command_intents() -> list[tuple[str, str, str]]:
    """Every (action, object, location) that `command` produces, in a fixed order."""
    return [intent for intent, _ in _fsc()]


def command(rng: random.Random) -> dict:
    """A Fluent Speech Commands style command, intents drawn uniformly."""
    (action, obj, location), phrasings = rng.choice(_fsc())
    return {"text": rng.choice(phrasings), "action": action, "object": obj, "location": location}


@functools.cache
def _snips() -> tuple[tuple[tuple[str, tuple[str, ...]], ...], dict[str, tuple[str, ...]]]:
    templates: dict[str, list[str]] = {}
    for intent, template in rows("snips_templates.txt", 2, "|"):
        templates.setdefault(intent, []).append(template)
    values = grouped([[k, v] for k, v in rows("snips_values.txt", 2, "|")])
    for intent, ts in templates.items():
        for slot in re.findall(r"\{(\w+)\}", " ".join(ts)):
            if f"{intent}.{slot}" not in values and slot not in values:
                raise EvalkitError(
                    f"{DATA / 'snips_values.txt'}: no values for slot {slot!r} of {intent}; add some."
                )
    return tuple((k, tuple(v)) for k, v in templates.items()), values


def slot_intents() -> list[str]:
    """The intents of `slot_request`, in a fixed order."""
    return [intent for intent, _ in _snips()[0]]


def slot_request(rng: random.Random) -> dict:
    """A SNIPS style request; each slot's start/end are character offsets of its value in text."""
    templates, values = _snips()
    intent, options = rng.choice(templates)
    pieces = re.split(r"\{(\w+)\}", rng.choice(options))  # literal, slot, literal, slot, ...
    chosen = {slot: rng.choice(values.get(f"{intent}.{slot}") or values[slot]) for slot in pieces[1::2]}
    if "rating_value" in chosen and "best_rating" in chosen:  # a rating never exceeds the scale
        numbers = load().words["number"]
        best = numbers.index(chosen["best_rating"])
        chosen["rating_value"] = rng.choice([v for v in values["rating_value"] if numbers.index(v) <= best])
    text, slots = "", []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            text += piece
            continue
        value = chosen[piece]
        if text.endswith(" a ") or text == "a ":
            text = text[:-2] + article(value) + " "
        slots.append({"type": piece, "value": value, "start": len(text), "end": len(text) + len(value)})
        text += value
    return {"text": text, "intent": intent, "slots": slots}


KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The auxiliary words of Speech Commands v0.01, recorded to be confused with the keywords.
AUXILIARY_WORDS: tuple[str, ...] = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "eight",
    "five",
    "four",
    "nine",
    "one",
    "seven",
    "six",
    "three",
    "two",
    "zero",
)
# Sound like a keyword, or are one with an ending or in a compound: never "unknown". Words that
# merely share sounds with one ("goat", "cup") stay: they are the confusable unknowns.
_KEYWORD_LIKE = frozenset(
    "know knows write rite stops stopped stopping goes going gone ups downs upstairs downstairs onto".split()
)


@functools.cache
def _unknown_pool() -> tuple[str, ...]:
    words = dict.fromkeys(w for ws in lexicon().values() for w in ws)
    return tuple(w for w in words if len(w) > 1 and w not in KEYWORDS and w not in _KEYWORD_LIKE)


def unknown_word(rng: random.Random) -> str:
    """A non-keyword: half from the confusable auxiliary words, half from the whole lexicon."""
    return rng.choice(AUXILIARY_WORDS if rng.random() < 0.5 else _unknown_pool())
