"""The acoustic channel: reverberation, additive noise at a chosen SNR, gain.

Clean eSpeak output is too easy (every token of a word is nearly identical),
so every utterance of the suite goes through a random channel. All
randomness comes from the `np.random.Generator` passed in, so an utterance's
audio depends only on its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from evalkit.core.audio import SAMPLE_RATE


@dataclass(frozen=True)
class ChannelConfig:
    """Ranges the channel draws from (per corpus)."""

    snr_db: tuple[float, float] = (5.0, 30.0)
    babble_prob: float = 0.3  # otherwise stationary coloured noise
    reverb_prob: float = 0.5
    rt60_s: tuple[float, float] = (0.15, 0.7)
    gain_db: tuple[float, float] = (-12.0, 0.0)


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spectrum /= f ** (exponent / 2)
    x = np.fft.irfft(spectrum, n)
    return x / (np.std(x) + 1e-12)


def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic RIR: direct path, then exponentially decaying noise (60 dB in rt60 s)."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    delay = int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)  # the first reflection comes a little late
    tail[:delay] = 0.0
    rir = 0.4 * tail / (np.sqrt(np.sum(tail**2)) + 1e-12)
    rir[0] = 1.0
    return rir


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve, keeping the length and timing of the dry signal (direct path at t=0)."""
    y = fftconvolve(x, rir)[: len(x)]
    return y * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(y**2)) + 1e-12))


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix `noise` into `x` at `snr_db`, speech power measured over its active part."""
    if len(noise) < len(x):
        noise = np.tile(noise, int(np.ceil(len(x) / max(len(noise), 1))))
    noise = noise[: len(x)]
    active = np.abs(x) > 0.01 * (np.max(np.abs(x)) + 1e-12)
    p_speech = np.mean(x[active] ** 2) if active.any() else np.mean(x**2)
    p_noise = np.mean(noise**2) + 1e-12
    return x + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))


def apply_channel(
    x: np.ndarray, rng: np.random.Generator, cfg: ChannelConfig, babble: list[np.ndarray] | None = None
) -> tuple[np.ndarray, dict]:
    """Reverb → noise → gain; returns the audio and a record of what was applied."""
    info: dict = {}
    if rng.random() < cfg.reverb_prob:
        rt60 = float(rng.uniform(*cfg.rt60_s))
        x = reverberate(x, room_impulse_response(rng, rt60))
        info["rt60"] = round(rt60, 3)
    snr = float(rng.uniform(*cfg.snr_db))
    if babble and rng.random() < cfg.babble_prob:
        talkers = rng.choice(len(babble), size=min(len(babble), int(rng.integers(3, 7))), replace=False)
        noise = np.zeros(len(x))
        for k in talkers:
            src = babble[k]
            start = int(rng.integers(0, max(1, len(src) - len(x))))
            seg = np.resize(src[start : start + len(x)], len(x))
            noise += seg / (np.std(seg) + 1e-12)
        info["noise"] = "babble"
    else:
        kind = int(rng.integers(0, 3))
        noise = colored_noise(rng, len(x), float(kind))
        info["noise"] = ("white", "pink", "brown")[kind]
    x = add_noise(x, noise, snr)
    info["snr"] = round(snr, 2)
    gain_db = float(rng.uniform(*cfg.gain_db))
    peak = np.max(np.abs(x)) + 1e-12
    x = x * (0.9 / peak) * 10 ** (gain_db / 20)
    info["gain_db"] = round(gain_db, 2)
    return x.astype(np.float32), info
