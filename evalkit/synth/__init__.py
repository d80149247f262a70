"""The synthetic speech suite: eSpeak NG speech, speakers, text, channel, corpora.

`synthesize` and `phonemes` are the two calls most users need; `suite.build_suite`
writes the whole suite (what `evalkit synth` runs).
"""

from __future__ import annotations

import numpy as np

from evalkit.synth.espeak import Voice, engine
from evalkit.synth.speakers import Speaker


def _voice(speaker: Speaker | Voice | str) -> Voice:
    if isinstance(speaker, Speaker):
        return speaker.voice()
    if isinstance(speaker, str):
        return Voice(speaker)
    return speaker


def synthesize(text: str, speaker: Speaker | Voice | str = "en-us") -> np.ndarray:
    """16 kHz float32 speech of `text` (clean: no channel) as `speaker` says it."""
    # deferred: the renderer pulls in scipy.signal (seconds), which `evalkit.synth`'s light users
    # (text, speakers, phonemes) do not need
    from evalkit.synth.render import to_16k

    return to_16k(engine().speak(text, _voice(speaker))).astype(np.float32)


def phonemes(text: str, speaker: Speaker | Voice | str = "en-us") -> list[str]:
    """IPA phones of `text` in `speaker`'s accent (stress marks removed)."""
    return engine().phonemes(text, _voice(speaker))


__all__ = ["Speaker", "Voice", "phonemes", "synthesize"]
