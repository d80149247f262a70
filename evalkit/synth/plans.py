"""What each corpus of the suite says, and who says it: one planner per corpus, no audio.

A planner turns a profile's sizes and a seed into the `Item`s of every split: which text,
which speaker, which label. Each draws from `random.Random` seeded by (seed, corpus, split),
so a plan is the same in every process; suite.py cuts the plans into chunks and renders them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from evalkit.synth import text as T
from evalkit.synth.render import EMOTIONS, Item
from evalkit.synth.speakers import Speaker, speaker_pools

if TYPE_CHECKING:
    from evalkit.synth.suite import Profile

SPLITS = ("train", "dev", "test")


def speaker_fields(s: Speaker) -> dict:
    return asdict(s)


def plan_corpus(corpus: str, profile: Profile, seed: int) -> dict[str, list[Item]]:
    """The items of every split of one corpus (deterministic, no audio)."""
    pools = speaker_pools(seed)
    plan = PLANNERS[corpus]
    return plan(profile, pools, seed)


def _rng(seed: int, corpus: str, split: str) -> random.Random:
    return random.Random(f"{seed}/{corpus}/{split}")


def _plan_pretrain(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    rng = _rng(seed, "pretrain", "train")
    items = []
    for i in range(p.pretrain):
        spk = rng.choice(pools["pretrain"])
        text = ". ".join(T.sentence(rng) for _ in range(rng.randint(2, 5)))
        items.append(
            Item(f"pretrain-{i:06d}", "speech", speaker_fields(spk), text, {"text": text.replace(".", "")})
        )
    return {"train": items}


def _plan_transcribed(name: str) -> Callable:
    def plan(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
        out = {}
        for split, n in zip(SPLITS, getattr(p, name)):
            rng = _rng(seed, name, split)
            out[split] = [
                Item(
                    f"{name}-{split}-{i:05d}",
                    "speech",
                    speaker_fields(rng.choice(pools[split])),
                    (t := T.sentence(rng)),
                    {"text": t},
                )
                for i in range(n)
            ]
        return out

    return plan


def _plan_ks(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    classes = list(T.KEYWORDS) + ["_unknown_", "_silence_"]
    out = {}
    for split, n in zip(SPLITS, p.ks):
        rng = _rng(seed, "ks", split)
        items = []
        for i in range(n):
            label = classes[i % len(classes)]
            spk = rng.choice(pools[split])
            if label == "_silence_":
                items.append(
                    Item(f"ks-{split}-{i:05d}", "silence", speaker_fields(spk), "", {"label": label})
                )
                continue
            word = T.unknown_word(rng) if label == "_unknown_" else label
            items.append(
                Item(
                    f"ks-{split}-{i:05d}",
                    "keyword",
                    speaker_fields(spk),
                    word,
                    {"label": label, "text": word},
                )
            )
        rng.shuffle(items)
        out[split] = items
    return out


def _plan_qbe(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    out = {}
    for split, nq, nd in zip(("dev", "test"), p.qbe_queries, p.qbe_documents):
        rng = _rng(seed, "qbe", split)
        terms = T.qbe_terms(rng, nq)
        speakers = list(pools[split])
        rng.shuffle(speakers)
        query_spk, doc_spk = speakers[: len(speakers) // 3], speakers[len(speakers) // 3 :]
        items = [
            Item(
                f"qbe-{split}-q{i:04d}",
                "query",
                speaker_fields(rng.choice(query_spk)),
                term,
                {"role": "query", "term": term},
            )
            for i, term in enumerate(terms)
        ]
        for i in range(nd):
            spk = speaker_fields(rng.choice(doc_spk))
            if i % 2 == 0:  # half of the documents contain a query term
                term = terms[(i // 2) % len(terms)]
                text, first, last = T.document_with(rng, term, avoid=terms)
                items.append(
                    Item(
                        f"qbe-{split}-d{i:04d}",
                        "document",
                        spk,
                        text,
                        {"role": "document", "text": text, "term_in_doc": term},
                        term_words=(first, last),
                    )
                )
            else:
                text = T.sentence(rng)
                while any(T.contains(text, t) for t in terms):
                    text = T.sentence(rng)
                items.append(
                    Item(f"qbe-{split}-d{i:04d}", "document", spk, text, {"role": "document", "text": text})
                )
        out[split] = items
    return out


def _plan_ic(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    out = {}
    for split, n in zip(SPLITS, p.ic):
        rng = _rng(seed, "ic", split)
        items = []
        for i in range(n):
            cmd = T.command(rng)
            items.append(
                Item(
                    f"ic-{split}-{i:05d}",
                    "speech",
                    speaker_fields(rng.choice(pools[split])),
                    cmd["text"],
                    dict(cmd),
                )
            )
        out[split] = items
    return out


def _plan_sf(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    out = {}
    for split, n in zip(SPLITS, p.sf):
        rng = _rng(seed, "sf", split)
        items = []
        for i in range(n):
            req = T.slot_request(rng)
            items.append(
                Item(
                    f"sf-{split}-{i:05d}",
                    "speech",
                    speaker_fields(rng.choice(pools[split])),
                    req["text"],
                    dict(req),
                )
            )
        out[split] = items
    return out


def _plan_sid(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    rng = _rng(seed, "sid", "speakers")
    speakers = rng.sample(pools["train"], p.sid_speakers)
    out = {}
    for split, per in zip(SPLITS, p.sid):
        rng = _rng(seed, "sid", split)
        out[split] = [
            Item(
                f"sid-{split}-{k:03d}-{j:03d}",
                "speech",
                speaker_fields(s),
                (t := T.sentence(rng)),
                {"text": t},
            )
            for k, s in enumerate(speakers)
            for j in range(per)
        ]
    return out


def _plan_asv(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    out = {}
    for split, n in zip(SPLITS, p.asv_speakers):
        rng = _rng(seed, "asv", split)
        speakers = rng.sample(pools[split], n)
        out[split] = [
            Item(
                f"asv-{split}-{k:03d}-{j:03d}",
                "speech",
                speaker_fields(s),
                (t := T.sentence(rng, 3, 10)),
                {"text": t},
            )
            for k, s in enumerate(speakers)
            for j in range(p.asv_per_speaker)
        ]
    return out


def asv_trials(items: list[Item], n: int, seed: int, split: str) -> list[tuple[int, str, str]]:
    """Balanced target / non-target trials over distinct utterance pairs."""
    rng = _rng(seed, "asv-trials", split)
    by_spk: dict[str, list[str]] = {}
    for it in items:
        by_spk.setdefault(it.speaker["id"], []).append(it.id)
    target = [(1, a, b) for utts in by_spk.values() for a, b in itertools.combinations(utts, 2)]
    ids = [it.id for it in items]
    spk_of = {it.id: it.speaker["id"] for it in items}
    nontarget = [(0, a, b) for a, b in itertools.combinations(ids, 2) if spk_of[a] != spk_of[b]]
    half = n // 2
    trials = rng.sample(target, min(half, len(target))) + rng.sample(nontarget, min(n - half, len(nontarget)))
    rng.shuffle(trials)
    return trials


def _plan_sd(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    out = {}
    for split, n in zip(SPLITS, p.sd):
        rng = _rng(seed, "sd", split)
        items = []
        for i in range(n):
            a, b = rng.sample(pools[split], 2)
            turns = []
            for k in range(rng.randint(*p.sd_turns)):
                spk = (a, b)[k % 2] if rng.random() < 0.8 else rng.choice((a, b))
                gap = rng.uniform(-1.2, 1.0) if k else rng.uniform(0.1, 0.6)
                turns.append((speaker_fields(spk), T.sentence(rng, 3, 9), gap))
            items.append(Item(f"sd-{split}-{i:05d}", "mixture", speaker_fields(a), "", {}, turns=turns))
        out[split] = items
    return out


def _plan_er(p: Profile, pools, seed: int) -> dict[str, list[Item]]:
    emotions = list(EMOTIONS)
    out = {}
    for split, n in zip(SPLITS, p.er):
        rng = _rng(seed, "er", split)
        items = []
        for i in range(n):
            emo = emotions[i % len(emotions)]
            t = T.sentence(rng, 4, 10)
            items.append(
                Item(
                    f"er-{split}-{i:05d}",
                    "speech",
                    speaker_fields(rng.choice(pools[split])),
                    t,
                    {"text": t, "emotion": emo},
                    emotion=emo,
                )
            )
        rng.shuffle(items)
        out[split] = items
    return out


PLANNERS: dict[str, Callable] = {
    "pretrain": _plan_pretrain,
    "pr": _plan_transcribed("pr"),
    "asr": _plan_transcribed("asr"),
    "ks": _plan_ks,
    "qbe": _plan_qbe,
    "ic": _plan_ic,
    "sf": _plan_sf,
    "sid": _plan_sid,
    "asv": _plan_asv,
    "sd": _plan_sd,
    "er": _plan_er,
}
