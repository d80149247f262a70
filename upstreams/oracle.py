"""The oracle: hidden states made from the synthetic suite's ground truth, the ceiling of every task.

A representation cannot know more about an utterance of the suite than the suite's own record of
how it was made: which phone is said in each 20 ms frame (eSpeak's alignment), who says it (the
voice: speaker, variant, accent, pitch, range, rate), with which emotion and prosody (ER), and, in
an SD mixture, which talkers are active. `OracleUpstream` turns that record into 50 Hz frames
(HuBERT's rate), one layer per kind of knowledge, so that the learned weighted sum of layers can
pick what a task needs:

    0 phones      the accent-independent phone (`phones_common`), summed over talkers in overlap
    1 phones_raw  eSpeak's own symbol of the accent (what PR scores)
    2 voice       the voice factors of each active talker, summed in overlap
    3 emotion     the emotion and its drawn prosody (ER records; zero elsewhere)
    4 all         the sum of the four

Each identity (a phone, a speaker id, an accent ...) is a fixed dense random vector, drawn from a
hash of (seed, kind, name): dense rather than one-hot, because a linear CTC head on one-hot phones
learned slowly (measured on the default suite: PER 76% at 800 steps against 1.1% for a dense
embedding). Numbers (pitch, rate, ...) scale fixed random directions. Nothing is trained and
nothing is random at run time, so the same record gives the same frames in every process.

A frame belongs to the phone whose segment holds its centre; a phone shorter than a frame that
holds no centre (0.5% of the suite's phones) takes the frame holding its midpoint from a
neighbour that has frames to spare, so that CTC sees it (two such phones in one frame leave one
without: 6 of the smoke suite's 16,633 phones). The same phone twice in a row ("will like": 0.3%
of the smoke suite's PR and ASR phones) is one run of identical frames, which CTC reads as one
phone. Marking each phone's first frame with a fixed onset vector would tell them apart, but cost
more than it gained: smoke PR test PER 6.7% / 3.4% at 40 / 200 steps without it, 8.6% / 4.9% with
it (4.1% at 200 steps at half weight). Voice and emotion cover a
talker's active frames: its SD turns (`segments`), or the span from its first to its last phone.

It reads records, not audio: through `record_keys` (upstreams/base.py) the runner hands it each
utterance's manifest record, and refuses, naming the manifest and key, records that lack them (a
real corpus, a suite made before version smoke 2 / default 3).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import asdict, dataclass

import torch

from evalkit.core.errors import EvalkitError
from upstreams.base import Upstream

LAYERS = ("phones", "phones_raw", "voice", "emotion", "all")
VOICE_IDS = ("id", "variant", "accent")
# Voice and emotion numbers as (key, centre, scale): each scales a fixed random direction.
VOICE_NUMBERS = (("pitch", 50.0, 25.0), ("range", 50.0, 30.0), ("rate", 175.0, 45.0))
EMOTION_NUMBERS = (("pitch_shift", 0.0, 15.0), ("range_shift", 0.0, 30.0), ("tilt", 0.0, 3.0))
EMOTION_LOGS = (("rate_scale", 0.15), ("volume", 0.4))  # log(value / its neutral) / scale


@dataclass(frozen=True)
class OracleConfig:
    """What determines the oracle's frames (its fingerprint: change `version` when the code changes them)."""

    dim: int = 256
    seed: int = 0
    frame_rate: float = 50.0
    version: int = 2  # 2: no onset vector on a phone's first frame (see the module docstring)

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=8192)
def _vector(seed: int, dim: int, kind: str, name: str) -> torch.Tensor:
    """A fixed N(0, 1) vector for one name of one kind, the same in every process."""
    digest = hashlib.blake2b(f"{seed}/{kind}/{name}".encode(), digest_size=8).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return torch.randn(dim, generator=gen)


class OracleUpstream(Upstream):
    """Frames from each utterance's manifest record (see the module docstring); no parameters."""

    num_layers = len(LAYERS)
    record_keys = ("alignment", "phones_common", "voice")

    def __init__(self, dim: int = 256, seed: int = 0, frame_rate: float = 50.0) -> None:
        super().__init__()
        self.config = OracleConfig(dim, seed, frame_rate)
        self.hidden_size = dim
        self.frame_rate = float(frame_rate)

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor, records: list[dict] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        if records is None or len(records) != len(wavs):
            raise EvalkitError(
                "upstream 'oracle' builds its hidden states from each utterance's manifest record (phone "
                "alignment, voice, emotion), not from audio: run it with `evalkit eval --upstream oracle` on "
                "the synthetic suite; it cannot serve as a teacher or on bare waveforms."
            )
        lens = self.frames_for(wav_lens.cpu())
        out = torch.zeros(len(LAYERS), len(wavs), int(lens.max()) if len(lens) else 0, self.hidden_size)
        for b, (record, n) in enumerate(zip(records, lens.tolist())):
            layers = self._utterance(record, n)
            out[: len(layers), b, :n] = layers
        out[-1] = out[:-1].sum(0)
        hidden = [h.to(wavs.device) for h in out]
        return hidden, lens.to(wav_lens.device)

    def vector(self, kind: str, name: str) -> torch.Tensor:
        return _vector(self.config.seed, self.config.dim, kind, str(name))

    def _utterance(self, record: dict, n: int) -> torch.Tensor:
        """[4, n, D]: the phones, phones_raw, voice and emotion layers of one record."""
        layers = torch.zeros(4, n, self.hidden_size)
        by_talker = _phones_by_talker(record)
        for phones in by_talker.values():
            pairs = _frames_of_phones([(s, e) for s, e, _, _ in phones], n, self.frame_rate)
            if pairs:
                frames = torch.tensor([i for i, _ in pairs])
                for layer, (kind, field) in enumerate((("phone", 3), ("phone_raw", 2))):
                    vectors = torch.stack([self.vector(kind, phones[k][field]) for _, k in pairs])
                    layers[layer].index_add_(0, frames, vectors)
        segments = [_segment(record, seg) for seg in record.get("segments") or []]
        for who, voice in _talkers(record).items():
            if "segments" in record:
                spans = [(s, e) for s, e, w in segments if w == who]
            else:
                spans = [(by_talker[who][0][0], by_talker[who][-1][1])] if by_talker.get(who) else []
            layers[2, _active(spans, n, self.frame_rate)] += self._voice(record, voice)
        emotion = self._emotion(record)
        if emotion is not None and by_talker:
            said = [p for phones in by_talker.values() for p in phones]
            span = (min(p[0] for p in said), max(p[1] for p in said))
            layers[3, _active([span], n, self.frame_rate)] += emotion
        return layers

    def _voice(self, record: dict, voice: dict) -> torch.Tensor:
        parts = [self.vector(f"voice_{key}", _field(record, voice, key)) for key in VOICE_IDS]
        for key, centre, scale in VOICE_NUMBERS:
            parts.append(self.vector("voice_direction", key) * (_number(record, voice, key) - centre) / scale)
        return torch.stack(parts).sum(0) / math.sqrt(len(parts))

    def _emotion(self, record: dict) -> torch.Tensor | None:
        label = record.get("emotion")
        if label is None:
            return None
        params = record.get("emotion_params") or {}
        parts = [self.vector("emotion", label)]
        for key, centre, scale in EMOTION_NUMBERS:
            if key in params:
                parts.append(
                    self.vector("emotion_direction", key) * (_number(record, params, key) - centre) / scale
                )
        for key, scale in EMOTION_LOGS:
            if key in params:
                value = _number(record, params, key) / (100.0 if key == "volume" else 1.0)
                parts.append(self.vector("emotion_direction", key) * math.log(max(value, 1e-3)) / scale)
        return torch.stack(parts).sum(0) / math.sqrt(len(parts))


def _bad(record: dict, key: str, what: str) -> EvalkitError:
    return EvalkitError(
        f"record {record.get('id')!r}: key {key!r} {what}. The oracle reads the records `evalkit synth` "
        "writes; re-synthesise the suite (a new --out folder) rather than editing them."
    )


def _alignment(record: dict) -> list[list]:
    aligned, common = record["alignment"], record["phones_common"]
    if not isinstance(aligned, list) or not isinstance(common, list) or len(aligned) != len(common):
        raise _bad(record, "alignment", "and 'phones_common' must be lists of the same length")
    for entry in aligned:
        ok = isinstance(entry, list) and len(entry) in (3, 4) and isinstance(entry[2], str)
        if not ok or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in entry[:2]):
            raise _bad(record, "alignment", f"holds {entry!r:.60}, not [start_s, end_s, phone(, talker)]")
    return aligned


def _phones_by_talker(record: dict) -> dict[str, list[tuple[float, float, str, str]]]:
    """talker -> its (start, end, raw phone, inventory phone) in time order."""
    speaker = str(record.get("speaker", ""))
    out: dict[str, list[tuple[float, float, str, str]]] = {}
    for entry, common in zip(_alignment(record), record["phones_common"]):
        who = str(entry[3]) if len(entry) > 3 else speaker
        out.setdefault(who, []).append((float(entry[0]), float(entry[1]), entry[2], str(common)))
    return {who: sorted(phones) for who, phones in out.items()}


def _segment(record: dict, seg) -> tuple[float, float, str]:
    if not (isinstance(seg, list) and len(seg) == 3 and all(isinstance(t, int | float) for t in seg[:2])):
        raise _bad(record, "segments", f"holds {seg!r:.60}, not [start_s, end_s, speaker]")
    return float(seg[0]), float(seg[1]), str(seg[2])


def _talkers(record: dict) -> dict[str, dict]:
    """speaker id -> voice fields: SD's `voices`, else the record's own `voice`."""
    voices = record.get("voices")
    if voices is None:
        voices = {str(record.get("speaker", "")): record["voice"]}
    if not isinstance(voices, dict) or not all(isinstance(v, dict) for v in voices.values()):
        raise _bad(record, "voices" if "voices" in record else "voice", "is not a mapping of voice fields")
    return {str(k): v for k, v in voices.items()}


def _field(record: dict, fields: dict, key: str) -> str:
    if key not in fields:
        raise _bad(record, key, "is missing from the voice")
    return str(fields[key])


def _number(record: dict, fields: dict, key: str) -> float:
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(record, key, f"is {value!r}, not a number")
    return float(value)


def _first_frame(t: float, rate: float) -> int:
    """The first frame whose centre, (i + 0.5) / rate, is at or after t."""
    return max(0, math.ceil(t * rate - 0.5))


def _frames_of_phones(spans: list[tuple[float, float]], n: int, rate: float) -> list[tuple[int, int]]:
    """(frame, phone index) pairs of one talker: a frame takes the phone holding its centre; a phone
    that holds no centre takes the frame of its midpoint if that frame's phone keeps another."""
    owner = [-1] * n
    for k, (start, end) in enumerate(spans):
        for i in range(_first_frame(start, rate), min(n, _first_frame(end, rate))):
            owner[i] = k
    counts: dict[int, int] = {}
    for k in owner:
        counts[k] = counts.get(k, 0) + 1
    for k, (start, end) in enumerate(spans):
        i = int((start + end) / 2 * rate)
        if counts.get(k, 0) == 0 and 0 <= i < n and (owner[i] == -1 or counts[owner[i]] > 1):
            counts[owner[i]] -= 1
            owner[i], counts[k] = k, 1
    return [(i, k) for i, k in enumerate(owner) if k >= 0]


def _active(spans: list[tuple[float, float]], n: int, rate: float) -> torch.Tensor:
    """[n] bool: frames whose centre lies inside any of the spans."""
    mask = torch.zeros(n, dtype=torch.bool)
    for start, end in spans:
        mask[_first_frame(start, rate) : min(n, _first_frame(end, rate))] = True
    return mask
