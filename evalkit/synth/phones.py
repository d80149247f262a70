"""One accent-independent phone inventory: each accent's eSpeak symbols mapped to one set of classes.

eSpeak NG writes each accent in its own symbols ("train" is ``t ɹ eɪ n`` in en-us and
``t r eː n`` in en-gb-scotland), so phone identity compared across speakers (QbE, the
oracle upstream) would be capped by the symbols rather than by the speech. The map is
data-driven: every word the suite's text uses is phonemised in en-us and in each accent,
words whose two phone sequences have the same length are aligned position by position,
and each accent symbol maps to its most frequent en-us counterpart (ties: the symbol
itself if it is a candidate, then the first in code-point order).

Where an accent symbol splits almost evenly between two en-us symbols (British ``ə`` is
en-us ``ə`` in "the" and ``ɚ`` in "water": 432 and 452 of 895 aligned positions), either
choice leaves half of its words spelled differently from en-us; so two en-us symbols that
share at least `MERGE_SHARE` of some accent symbol's aligned positions become one
inventory class, named by its most frequent en-us member, and en-us maps onto the classes
too. That merges four pairs (ə/ɚ, ɔː/ɔːɹ, aɪə/aɪɚ, uː/ʊ) and raises the words spelled as
in en-us after mapping, e.g. en from 72% to 83%, en-us-nyc from 84% to 97%; a lower share
chains unrelated vowels together (at 0.3, æ joins ə through en-029's ``a``).

The map is stored in ``data/phone_map.txt`` (read by `phone_map`); regenerate it with
``python -m evalkit.synth.phones`` after a change to the lexicon, the grammar or eSpeak
(and bump `Profile.version` in suite.py: manifests record the mapped phones).
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.synth.lexicon import DATA, rows

MAP_FILE = "phone_map.txt"
REFERENCE_ACCENT = "en-us"
TEXTS_SEED = "phone-map"
MERGE_SHARE = 0.4
CONNECTED_TEXTS = 400


def common_phones(phones: list[str], accent: str) -> list[str]:
    """`phones` (eSpeak symbols of `accent`) as inventory classes; a symbol the map lacks stays as it is."""
    table = phone_map().get(accent, {})
    return [table.get(p, p) for p in phones]


@functools.cache
def phone_map() -> dict[str, dict[str, str]]:
    """accent -> {accent symbol: inventory class}, from ``data/phone_map.txt``."""
    out: dict[str, dict[str, str]] = {}
    for accent, symbol, mapped, *_ in rows(MAP_FILE, 5):
        out.setdefault(accent, {})[symbol] = mapped
    if REFERENCE_ACCENT not in out:
        raise EvalkitError(
            f"{DATA / MAP_FILE}: no {REFERENCE_ACCENT} rows. Regenerate it: python -m evalkit.synth.phones"
        )
    return out


@dataclass(frozen=True)
class MapRow:
    """One accent symbol, the inventory class it maps to, and the evidence for it."""

    accent: str
    symbol: str
    mapped: str
    agree: int  # aligned positions whose en-us symbol is of class `mapped`
    aligned: int  # aligned positions of `symbol` in all


def map_texts() -> list[str]:
    """A fixed sample of the suite's text: sentences, commands and slot requests."""
    # deferred: the grammar is only needed when the map is rebuilt
    from evalkit.synth import text as T

    rng = random.Random(TEXTS_SEED)
    texts = [T.sentence(rng) for _ in range(1500)]
    return (
        texts
        + [T.command(rng)["text"] for _ in range(300)]
        + [T.slot_request(rng)["text"] for _ in range(300)]
    )


def map_words() -> list[str]:
    """The words the map is built from: the lexicon's and those of `map_texts`."""
    # deferred: the grammar is only needed when the map is rebuilt
    from evalkit.synth import text as T

    words = {w for ws in T.lexicon().values() for w in ws} | {w for t in map_texts() for w in t.split()}
    return sorted(words | set(T.KEYWORDS))


def _connected_speech_symbols(accent: str, n_texts: int = CONNECTED_TEXTS) -> set[str]:
    """Symbols of the phone events of spoken sentences: connected speech has a few that isolated
    words lack (en-gb-scotland's linking ``ʲ`` in "happy otters"); they get a row of their own."""
    # deferred: eSpeak loads only when the map is rebuilt
    from evalkit.synth.espeak import Voice, engine

    return {p for t in map_texts()[:n_texts] for p in engine().speak(t, Voice(accent)).phones}


def _phonemised(accents: tuple[str, ...]) -> tuple[list[str], dict[str, list[list[str]]]]:
    """The map words and their phones in en-us and in each accent."""
    # deferred: eSpeak loads only when the map is rebuilt
    from evalkit.synth.espeak import Voice, engine

    eng = engine()
    words = map_words()
    return words, {a: [eng.phonemes(w, Voice(a)) for w in words] for a in (REFERENCE_ACCENT, *accents)}


def _aligned_counts(reference: list[list[str]], phones: list[list[str]]) -> dict[str, Counter]:
    """accent symbol -> Counter of the en-us symbols at its positions in equal-length words."""
    pairs: dict[str, Counter] = {}
    for seq, ref in zip(phones, reference):
        for k, s in enumerate(seq):
            counts = pairs.setdefault(s, Counter())  # every symbol gets a row, even one never aligned
            if len(seq) == len(ref):
                counts[ref[k]] += 1
    return pairs


def _top(symbol: str, counts: Counter) -> str:
    """The most frequent counterpart (ties: the symbol itself, then code-point order)."""
    if not counts:
        return symbol
    best = sorted(r for r, n in counts.items() if n == max(counts.values()))
    return symbol if symbol in best else best[0]


def _classes(pairs: dict[str, dict[str, Counter]], reference: list[list[str]]) -> dict[str, str]:
    """en-us symbol -> its inventory class: symbols an accent symbol splits between are merged."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for table in pairs.values():
        for symbol, counts in table.items():
            top = _top(symbol, counts)
            for r, n in counts.items():
                if r != top and n >= MERGE_SHARE * sum(counts.values()):
                    parent[root(r)] = root(top)
    frequency = Counter(p for seq in reference for p in seq)
    members: dict[str, list[str]] = {}
    for symbol in sorted(frequency):
        members.setdefault(root(symbol), []).append(symbol)
    return {s: min(group, key=lambda m: (-frequency[m], m)) for group in members.values() for s in group}


def build_phone_map(accents: tuple[str, ...] | None = None) -> list[MapRow]:
    """One row per symbol of every accent (en-us included): the inventory class it maps to."""
    # deferred: eSpeak loads only when the map is rebuilt
    from evalkit.synth.speakers import ACCENTS

    others = tuple(a for a in (accents or ACCENTS) if a != REFERENCE_ACCENT)
    _, phones = _phonemised(others)
    reference = phones[REFERENCE_ACCENT]
    pairs = {a: _aligned_counts(reference, phones[a]) for a in others}
    for accent in others:
        for symbol in _connected_speech_symbols(accent) - set(pairs[accent]):
            pairs[accent][symbol] = Counter()
    cls = _classes(pairs, reference)
    own = Counter(p for seq in reference for p in seq)
    for symbol in _connected_speech_symbols(REFERENCE_ACCENT) - set(own):
        own[symbol] = 0
        cls[symbol] = symbol
    out = [MapRow(REFERENCE_ACCENT, s, cls[s], own[s], own[s]) for s in sorted(own)]
    for accent in others:
        for symbol, counts in sorted(pairs[accent].items()):
            mapped = cls.get(_top(symbol, counts), _top(symbol, counts))
            agree = sum(n for r, n in counts.items() if cls.get(r, r) == mapped)
            out.append(MapRow(accent, symbol, mapped, agree, sum(counts.values())))
    return out


def map_statistics(table: list[MapRow]) -> dict[str, dict[str, float]]:
    """Per accent: symbols, how many keep their symbol, how many map 1:1 (no other symbol of the
    accent shares their class), the share of aligned positions the map agrees with, and the share of
    the map words spelled as in en-us before and after mapping."""
    accents = tuple(dict.fromkeys(r.accent for r in table))
    words, phones = _phonemised(tuple(a for a in accents if a != REFERENCE_ACCENT))
    maps = {a: {r.symbol: r.mapped for r in table if r.accent == a} for a in accents}
    reference = phones[REFERENCE_ACCENT]
    ref_mapped = [[maps[REFERENCE_ACCENT].get(p, p) for p in seq] for seq in reference]
    stats = {}
    for accent in accents:
        mine = [r for r in table if r.accent == accent]
        targets = Counter(r.mapped for r in mine)
        seqs = phones[accent]
        stats[accent] = {
            "symbols": len(mine),
            "identity": sum(r.symbol == r.mapped for r in mine),
            "one_to_one": sum(targets[r.mapped] == 1 for r in mine),
            "classes": len(targets),
            "agreement": round(sum(r.agree for r in mine) / max(1, sum(r.aligned for r in mine)), 4),
            "words_same_raw": round(sum(a == b for a, b in zip(seqs, reference)) / len(words), 4),
            "words_same_mapped": round(
                sum([maps[accent].get(p, p) for p in a] == b for a, b in zip(seqs, ref_mapped)) / len(words),
                4,
            ),
        }
    return stats


def write_phone_map(table: list[MapRow]) -> str:
    """Write ``data/phone_map.txt``; returns its path."""
    header = (
        "# eSpeak NG phone symbols of each accent mapped to one inventory of classes named by en-us symbols:\n"
        "# accent, symbol, class, aligned positions agreeing with the class, aligned positions.\n"
        "# Made by `python -m evalkit.synth.phones` (evalkit/synth/phones.py says how); do not edit.\n"
    )
    lines = "".join(f"{r.accent} {r.symbol} {r.mapped} {r.agree} {r.aligned}\n" for r in table)
    path = DATA / MAP_FILE
    atomic_write_text(path, header + lines)
    phone_map.cache_clear()
    return str(path)


def main() -> None:
    table = build_phone_map()
    print(f"wrote {write_phone_map(table)}")
    for accent, s in map_statistics(table).items():
        print(
            f"{accent:16s} {s['symbols']:3d} symbols, {s['identity']:3d} unchanged, {s['one_to_one']:3d} "
            f"map 1:1, onto {s['classes']:3d} classes; aligned positions agreeing {s['agreement']:.3f}; "
            f"words as in en-us {s['words_same_raw']:.3f} raw, {s['words_same_mapped']:.3f} mapped"
        )


if __name__ == "__main__":
    main()
