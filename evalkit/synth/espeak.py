"""eSpeak NG through ctypes: waveform, phonemes and phone alignments.

The `espeakng-loader` wheel ships libespeak-ng and its voice data, so no
system install is needed. The engine keeps global state and is not
thread-safe: one `Engine` per process, and parallelism with processes.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEMES_IPA = 0x02
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_PARAM_WORDGAP = 7

# Marks that are not phones: stress and syllable marks, pauses, linking.
_NON_PHONES = {"ˈ", "ˌ", "_", "", " ", "‿", "|", "||", "%", "=", "-"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Voice:
    """What eSpeak needs to speak as one speaker.

    `name` is an eSpeak voice spec such as ``en-us+m3`` (language + variant);
    pitch and range are eSpeak's 0-100 scales, rate is words per minute.
    """

    name: str
    pitch: int = 50
    range: int = 50
    rate: int = 175
    volume: int = 100
    word_gap: int = 0


@dataclass
class Speech:
    """One synthesised utterance at the engine's native rate.

    `alignment` holds `(start_s, end_s, phone)` for every phone, pauses left
    out; `words` holds `(start_s, end_s, char_offset)` for every word event,
    timed by eSpeak. Events are not one per word of the text: eSpeak joins
    some pairs ("do not", and "was a" in some accents), so find a word by its
    character offset, not by counting events.
    """

    samples: np.ndarray  # int16 at `sample_rate`
    sample_rate: int
    alignment: list[tuple[float, float, str]]
    words: list[tuple[float, float, int]]

    @property
    def phones(self) -> list[str]:
        return [p for _, _, p in self.alignment]


class Engine:
    """A process-wide eSpeak NG instance (create it once per process)."""

    def __init__(self) -> None:
        # deferred: the eSpeak NG library and voices load only when speech is made
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}); data path {data!r}")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, float, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)
        self._voice: Voice | None = None

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type in (_EVENT_PHONEME, _EVENT_WORD, _EVENT_END):
                name = ev.id.string.decode("utf-8", errors="replace") if ev.type == _EVENT_PHONEME else ""
                self._events.append((ev.type, ev.audio_position / 1000.0, ev.text_position - 1, name))
            i += 1
        return 0

    def _set_voice(self, voice: Voice) -> None:
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice.name!r}")
        lib = self._lib
        lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
        lib.espeak_SetParameter(_PARAM_RANGE, voice.range, 0)
        lib.espeak_SetParameter(_PARAM_VOLUME, voice.volume, 0)
        lib.espeak_SetParameter(_PARAM_WORDGAP, voice.word_gap, 0)
        self._voice = voice

    def speak(self, text: str, voice: Voice) -> Speech:
        """Synthesise `text`; returns int16 samples and timed IPA phones."""
        self._set_voice(voice)
        # Some voices (klatt) draw noise from libc's rand(): reseed so that the
        # audio depends only on (text, voice), not on what the process did before.
        self._libc.srand(1)
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
        self._chunks, self._events = [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for text {text!r}")
        self._lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        total = len(samples) / self.sample_rate
        return Speech(samples, self.sample_rate, *_timings(self._events, total))

    def phonemes(self, text: str, voice: Voice) -> list[str]:
        """IPA phones of `text` as `voice`'s accent pronounces it (no audio)."""
        self._set_voice(voice)
        raw = text.encode("utf-8")
        ptr = ctypes.c_char_p(raw)
        out: list[str] = []
        # espeak_TextToPhonemes consumes one clause per call and advances ptr.
        mode = _PHONEMES_IPA | (ord(" ") << 8)
        while ptr.value:
            res = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
            if res:
                out.extend(res.decode("utf-8").split())
        return [p for p in (strip_marks(p) for p in out) if p not in _NON_PHONES]


def _timings(events: list[tuple[int, float, int, str]], total: float):
    """Phone segments and word spans from eSpeak's event stream.

    A phone lasts until the next phone or pause event; an empty phone name is
    a pause. A word lasts until the next word starts or the utterance ends,
    minus a trailing pause.
    """
    marks = [(t, strip_marks(name)) for kind, t, _, name in events if kind == _EVENT_PHONEME]
    alignment = []
    for i, (t, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else total
        if name not in _NON_PHONES and end > t:
            alignment.append((t, min(end, total), name))
    starts = [(t, pos) for kind, t, pos, _ in events if kind == _EVENT_WORD]
    words = []
    for i, (t, pos) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else total
        inside = [end for start, end, _ in alignment if t <= start < nxt]
        words.append((t, max(inside) if inside else nxt, pos))
    return alignment, words


def strip_marks(phone: str) -> str:
    """Drop stress marks so that phones compare across stressed/unstressed."""
    return phone.replace("ˈ", "").replace("ˌ", "")


@functools.cache
def engine() -> Engine:
    """The engine of this process (created on first use)."""
    return Engine()
