"""Rendering one chunk of planned utterances into WAVs and manifest records.

Runs in a worker process (spawned fresh for every chunk: eSpeak keeps state
from one utterance to the next, so a chunk starting from a fresh engine is
what makes the audio depend only on the seed). Imports no torch, so workers
start fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_open, atomic_write_text
from evalkit.synth.channel import ChannelConfig, apply_channel, colored_noise
from evalkit.synth.espeak import Speech, Voice, engine
from evalkit.synth.phones import common_phones
from evalkit.synth.speakers import Speaker

# Emotions as prosody: pitch/range shifts (eSpeak units), rate factor, volume,
# and a spectral tilt (dB/octave above 1 kHz) for voice quality.
EMOTIONS = {
    "neutral": dict(pitch=0, range=0, rate=1.0, volume=100, tilt=0.0),
    "happy": dict(pitch=12, range=25, rate=1.08, volume=115, tilt=1.0),
    "angry": dict(pitch=6, range=15, rate=1.15, volume=150, tilt=3.0),
    "sad": dict(pitch=-10, range=-25, rate=0.82, volume=75, tilt=-3.0),
}


@dataclass
class Item:
    """One utterance to render: what to say, who says it, and where it goes."""

    id: str
    kind: str  # speech | keyword | silence | query | document | mixture
    speaker: dict  # Speaker fields (for mixture: the first talker)
    text: str = ""
    labels: dict = field(default_factory=dict)  # copied into the record
    emotion: str | None = None
    turns: list = field(default_factory=list)  # mixture: [(speaker dict, text, gap_s)]
    term_words: tuple[int, int] | None = None  # document: word span of the query term


@dataclass
class Chunk:
    corpus: str
    split: str
    index: int
    items: list[Item]
    out_dir: str  # the corpus folder
    seed: int
    channel: ChannelConfig
    babble: list[dict]  # babble talkers (Speaker fields)
    # Phone alignments in the records (phones, phones_common, alignment): they cost no audio change,
    # and tests render a chunk with and without them to show it.
    with_alignment: bool = False

    @property
    def part_path(self) -> Path:
        return Path(self.out_dir) / ".parts" / f"{self.split}.{self.index:05d}.json"


def item_seed(seed: int, corpus: str, item_id: str) -> int:
    digest = hashlib.sha256(f"{seed}/{corpus}/{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def to_16k(speech: Speech) -> np.ndarray:
    x = speech.samples.astype(np.float64) / 32768.0
    if speech.sample_rate == SAMPLE_RATE:
        return x
    g = np.gcd(SAMPLE_RATE, speech.sample_rate)
    return resample_poly(x, SAMPLE_RATE // g, speech.sample_rate // g)


def speak(text: str, voice: Voice) -> tuple[np.ndarray, Speech]:
    speech = engine().speak(text, voice)
    return to_16k(speech), speech


def _tilt(x: np.ndarray, db_per_octave: float) -> np.ndarray:
    """Spectral tilt above 1 kHz: positive brightens (tense voice), negative darkens (lax)."""
    if db_per_octave == 0.0:
        return x
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(f, 1000.0) / 1000.0)
    spec *= 10 ** (db_per_octave * octaves / 20)
    return np.fft.irfft(spec, len(x))


def _babble_bank(chunk: Chunk) -> list[np.ndarray]:
    lines = [
        "the weather was cold and grey all morning",
        "she said that we should leave before dinner",
        "nobody knew where the old road used to go",
        "they bought two tickets for the late train",
    ]
    bank = []
    for k, spk in enumerate(chunk.babble):
        audio, _ = speak(lines[k % len(lines)], Speaker(**spk).voice())
        bank.append(audio)
    return bank


def _alignment(
    speech: Speech, offset: float = 0.0, window: tuple[float, float] | None = None, talker: str | None = None
) -> list[list]:
    """`[[start_s, end_s, phone(, talker)], ...]` shifted by `offset` s and clipped to `window` (s);
    phones left with no time inside the window are dropped."""
    lo, hi = window if window is not None else (-np.inf, np.inf)
    out = []
    for s, e, p in speech.alignment:
        s, e = round(max(s + offset, lo), 3), round(min(e + offset, hi), 3)
        if e > s:
            out.append([s, e, p] if talker is None else [s, e, p, talker])
    return out


def _phone_fields(alignment: list[list], accent: str | dict[str, str]) -> dict:
    """`phones` (eSpeak's symbols of the accent), `phones_common` (the accent-independent inventory,
    evalkit.synth.phones) and the `alignment` they come from; `accent` per talker for a mixture."""
    phones = [a[2] for a in alignment]
    if isinstance(accent, str):
        common = common_phones(phones, accent)
    else:
        common = [common_phones([a[2]], accent[a[3]])[0] for a in alignment]
    return {"phones": phones, "phones_common": common, "alignment": alignment}


def render_item(item: Item, chunk: Chunk, babble: list[np.ndarray]) -> dict:
    """Render one utterance to its WAV; returns its manifest record."""
    rng = np.random.default_rng(item_seed(chunk.seed, chunk.corpus, item.id))
    spk = Speaker(**item.speaker)
    if item.kind == "silence":
        audio, info = _render_silence(rng, babble), {"noise": "background"}
        rec = _phone_fields([], spk.accent) if chunk.with_alignment else {}
    elif item.kind == "mixture":
        audio, rec = _render_mixture(item, rng, chunk.with_alignment)
        audio, info = apply_channel(audio, rng, chunk.channel, babble)
    else:
        audio, info, rec = _render_speech(item, chunk, spk, rng, babble)
    rel = Path("wav") / chunk.split / f"{item.id}.wav"
    with atomic_open(Path(chunk.out_dir) / rel, "wb") as f:
        sf.write(f, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    record = {
        "id": item.id,
        "path": str(rel),
        "duration": round(len(audio) / SAMPLE_RATE, 4),
        "speaker": spk.id,
    }
    labels = {k: v for k, v in item.labels.items() if k != "term_in_doc"}
    if item.kind == "document":
        labels.setdefault("occurrences", [])
    record.update(labels)
    record.update(rec)
    record["voice"] = {**item.speaker, "channel": info}
    return record


def _render_silence(rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    """A second of quiet background noise, sometimes with faint babble (no channel)."""
    n = SAMPLE_RATE
    x = colored_noise(rng, n, float(rng.integers(0, 3))) * 10 ** (rng.uniform(-50, -20) / 20)
    if babble and rng.random() < 0.3:
        src = babble[int(rng.integers(len(babble)))]
        x = x + np.resize(src, n) * 10 ** (rng.uniform(-40, -25) / 20)
    return x.astype(np.float32)


def _voice(item: Item, spk: Speaker, rng: np.random.Generator) -> tuple[Voice, dict]:
    """The speaker's voice, with the item's emotion as prosody (jittered per utterance) if it has one,
    and the prosody drawn (empty without an emotion)."""
    if not item.emotion:
        return spk.voice(), {}
    e = EMOTIONS[item.emotion]
    jitter = lambda s: rng.normal(0, s)  # noqa: E731  (per-utterance prosody jitter)
    # drawn in this order (pitch, range, rate, volume): the audio of a seed depends on it
    drawn = {
        "pitch_shift": round(e["pitch"] + jitter(6)),
        "range_shift": round(e["range"] + jitter(12)),
        "rate_scale": e["rate"] * float(np.exp(jitter(0.08))),
        "volume": round(e["volume"] * float(np.exp(jitter(0.2)))),
    }
    return spk.voice(**drawn), drawn


def _render_speech(
    item: Item, chunk: Chunk, spk: Speaker, rng: np.random.Generator, babble: list[np.ndarray]
) -> tuple[np.ndarray, dict, dict]:
    """(audio, channel record, extra record fields) of a spoken item: speech, keyword, query, document."""
    rec: dict = {}
    voice, prosody = _voice(item, spk, rng)
    clean, speech = speak(item.text, voice)
    if item.emotion:
        tilt = EMOTIONS[item.emotion]["tilt"] + rng.normal(0, 1.5)
        clean = _tilt(clean, tilt)
        rec["emotion_params"] = {
            **prosody,
            "rate_scale": round(prosody["rate_scale"], 4),
            "tilt": round(tilt, 3),
        }
    alignment = _alignment(speech)
    if item.kind == "keyword":
        clean, shift, kept = _place_in_second(clean, rng)
        rec["word_start"] = round(shift, 3)
        # the word moved by (shift - trimmed lead) and keeps only what is inside the 1-s clip
        alignment = _alignment(speech, shift - kept[0], (shift, shift + kept[1] - kept[0]))
    audio, info = apply_channel(clean, rng, chunk.channel, babble)
    if chunk.with_alignment:
        rec.update(_phone_fields(alignment, spk.accent))
    if item.kind == "document" and item.term_words is not None:
        rec.update(_occurrences(item, speech))
    return audio, info, rec


def _occurrences(item: Item, speech: Speech) -> dict:
    """Where the query term was said in a document, timed by eSpeak's word events.

    The plan gives the term as word indices of the text, but eSpeak's word events do not follow the
    text's words one to one ("do not" and "did not" are one event), so the term is found by the
    character offsets the events carry, not by counting events. A term the events cannot time
    exactly fails the synthesis: dropping it would label a document that says the term negative.
    """
    first, last = item.term_words
    term = item.labels["term_in_doc"]
    tokens = [m.span() for m in re.finditer(r"\S+", item.text)]
    where = f"{item.id} ({item.text!r}, query term {term!r})"
    if not 0 <= first < last <= len(tokens):
        raise EvalkitError(
            f"{where}: the plan puts the term at words {first}-{last - 1}, but the text has "
            f"{len(tokens)} words. The text generator and its word span disagree: report it."
        )
    lo, hi = tokens[first][0], tokens[last - 1][1]
    after = tokens[last][0] if last < len(tokens) else None  # where the next word starts
    offsets = [pos for _, _, pos in speech.words]
    inside = [k for k, pos in enumerate(offsets) if lo <= pos < hi]
    if not inside or offsets[inside[0]] != lo or (after is not None and after not in offsets):
        raise EvalkitError(
            f"{where}: eSpeak's word events (at characters {offsets}) do not start a word where the "
            f"term starts (character {lo}) and where the next word starts ({after}), so the term "
            "cannot be timed; the suite's text generator made a sentence eSpeak reads differently: "
            "report it with the profile and seed."
        )
    start, end = speech.words[inside[0]][0], speech.words[inside[-1]][1]
    return {"occurrences": [{"term": term, "start": round(start, 3), "end": round(end, 3)}]}


def _place_in_second(
    x: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Trim silence and put the word at a random place in a 1-second clip (as Speech Commands).

    Returns the clip, where the kept audio starts in it (s), and which part of `x` was kept
    (start, end in s).
    """
    start = 0
    active = np.nonzero(np.abs(x) > 0.02 * (np.max(np.abs(x)) + 1e-12))[0]
    if len(active):
        start = int(active[0])
        x = x[active[0] : active[-1] + 1]
    x = x[:SAMPLE_RATE]
    shift = int(rng.integers(0, SAMPLE_RATE - len(x) + 1))
    out = np.zeros(SAMPLE_RATE)
    out[shift : shift + len(x)] = x
    return out, shift / SAMPLE_RATE, (start / SAMPLE_RATE, (start + len(x)) / SAMPLE_RATE)


def _render_mixture(item: Item, rng: np.random.Generator, with_alignment: bool) -> tuple[np.ndarray, dict]:
    """Two talkers taking turns, with pauses and overlaps; segments from phone timings.

    The record names every talker's voice (`voices`); with alignment, each turn's phones are
    placed where the turn was (its start minus the lead trimmed) and name their talker.
    """
    pieces, segments, alignment, voices, t = [], [], [], {}, 0.0
    own_end: dict[str, float] = {}  # where each talker's last turn ended
    for spk_fields, text, gap in item.turns:
        spk = Speaker(**spk_fields)
        clean, speech = speak(text, spk.voice())
        if not speech.alignment:
            continue
        lead, tail = speech.alignment[0][0], speech.alignment[-1][1]
        cut = int(lead * SAMPLE_RATE)
        clean = clean[cut : int(tail * SAMPLE_RATE)] * 10 ** (rng.uniform(-4, 4) / 20)
        start = max(0.0, t + gap)
        if start < own_end.get(spk.id, 0.0):  # nobody talks over themselves: they pause |gap| instead
            start = own_end[spk.id] + abs(gap)
        placed = int(round(start * SAMPLE_RATE))
        pieces.append((placed, clean))
        end = start + len(clean) / SAMPLE_RATE
        segments.append([round(start, 3), round(end, 3), spk.id])
        voices[spk.id] = dict(spk_fields)
        begin = placed / SAMPLE_RATE
        alignment += _alignment(
            speech, begin - cut / SAMPLE_RATE, (begin, begin + len(clean) / SAMPLE_RATE), spk.id
        )
        t, own_end[spk.id] = max(t, end), end
    total = max(s + len(c) for s, c in pieces) + int(0.3 * SAMPLE_RATE)
    mix = np.zeros(total)
    for s, c in pieces:
        mix[s : s + len(c)] += c
    speakers = sorted({seg[2] for seg in segments})
    rec = {"speakers": speakers, "segments": segments, "voices": {k: voices[k] for k in speakers}}
    if with_alignment:
        alignment.sort(key=lambda a: (a[0], a[1], a[3]))
        rec.update(_phone_fields(alignment, {k: v["accent"] for k, v in voices.items()}))
    return mix, rec


def render_chunk(chunk: Chunk) -> int:
    """Render every item of a chunk and write its records as one part file."""
    babble = _babble_bank(chunk)
    records = [render_item(item, chunk, babble) for item in chunk.items]
    atomic_write_text(chunk.part_path, json.dumps(records, ensure_ascii=False))
    return len(records)
