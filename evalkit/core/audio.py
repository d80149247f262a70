"""Audio I/O: every waveform inside evalkit is 16 kHz mono float32.

Files are read with soundfile (WAV, FLAC, OGG and whatever else libsndfile
knows), downmixed and resampled here, and checked on the way in: a corpus with
one cut-short download or one NaN should fail at that file with a message that
names it, not hours later as a NaN loss. torch is imported inside the functions
that need it, so corpus preparers that only read durations stay light.
"""

from __future__ import annotations

import math
import os
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from evalkit.core.errors import AudioError
from evalkit.core.io import atomic_open

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16_000
"""The one sample rate of evalkit: every waveform inside it is 16 kHz mono float32."""

MAX_SECONDS = 3600.0
"""The longest utterance evalkit reads (s): longer files are refused from their header, before decoding."""

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000

# torchaudio's sinc resampler builds a kernel of about up * down values, where
# up/down is the rate ratio in lowest terms: 44.1 kHz -> 16 kHz is 160/441, but
# an odd rate such as 22051 Hz would need gigabytes. Above this size we use
# scipy's polyphase resampler, whose cost does not grow with the ratio.
_MAX_TORCHAUDIO_KERNEL = 1 << 20

_OGG_MAX_PAGE = 65_307


@dataclass(frozen=True)
class AudioInfo:
    """What the header says about a file, read without decoding the audio."""

    sample_rate: int
    frames: int
    channels: int
    duration: float


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, frame count, channels and duration (s) from the header alone.

    Corpus preparers call this for every file's duration, so it stays cheap
    but still refuses missing, unreadable, cut-short and implausible files.
    """
    path = Path(path)
    with _open_checked(path) as f:
        return AudioInfo(
            sample_rate=int(f.samplerate),
            frames=int(f.frames),
            channels=int(f.channels),
            duration=f.frames / f.samplerate,
        )


def load_audio(
    path: str | os.PathLike, *, max_seconds: float = MAX_SECONDS, min_samples: int = 1
) -> np.ndarray:
    """Read a file as validated 16 kHz mono float32 samples.

    `max_seconds` is checked on the header before decoding, so a mislabelled
    ten-hour file is refused without reading it; `min_samples` is checked on
    the 16 kHz output, the length the upstreams see.
    """
    path = Path(path)
    with _open_checked(path) as f:
        sample_rate, frames = int(f.samplerate), int(f.frames)
        if frames == 0:
            raise AudioError(
                f"{path}: holds zero samples (the audio data is empty). Re-create the file or drop it "
                "from the manifest."
            )
        if frames / sample_rate > max_seconds:
            raise AudioError(
                f"{path}: too long: {frames / sample_rate:.1f} s exceeds max_seconds={max_seconds:g}. "
                "Split it into shorter segments, or raise max_seconds if this length is intended."
            )
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(
                f"{path}: truncated or corrupt: the header promises {frames} frames but decoding failed "
                f"({_libsndfile_reason(e)}). Re-fetch or re-create the file."
            ) from None
    if data.shape[0] < frames:
        raise AudioError(
            f"{path}: truncated: the header promises {frames} frames but only {data.shape[0]} could be "
            "read. The file was cut short (interrupted download or copy); re-fetch or re-create it."
        )
    _check_finite(path, data, sample_rate)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        mono = _resample(mono, sample_rate)
    if mono.shape[0] < min_samples:
        raise AudioError(
            f"{path}: too short: {mono.shape[0]} samples at {SAMPLE_RATE} Hz, fewer than "
            f"min_samples={min_samples}. Drop it from the manifest or lower min_samples."
        )
    return np.ascontiguousarray(mono, dtype=np.float32)


def sox_silence(
    samples: np.ndarray,
    seconds: float = 0.1,
    percent: float = 0.1,
    gain_db: float = -3.0,
    rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """What sox's `gain {gain_db}` then `silence 1 {seconds} {percent}% -1 {seconds} {percent}%` leave of
    16-bit audio, the gain not applied to what is returned (s3prl's ASV reads audio through that chain,
    sv_voxceleb1/dataset.py:22-27).

    As sox's silence effect (src/silence.c) does it: the level is the RMS over the last rate / 50
    samples, read as a 16-bit value against `percent` of full scale. Audio is dropped until `seconds`
    of consecutive samples are above the level, which are kept; from there it is kept until
    `seconds` of consecutive samples are below it, which are dropped, the RMS window is cleared, and
    the search for sound starts again (the `-1`: every inner silence that long goes too). A shorter
    quiet stretch at the end is kept; sound shorter than `seconds` after the last cut is dropped.
    """
    x = np.asarray(samples, dtype=np.float64)
    power = np.concatenate([[0.0], np.cumsum((x * 10 ** (gain_db / 20)) ** 2)])
    need, window = int(seconds * rate + 0.5), rate // 50
    kept: list[np.ndarray] = []
    pos = 0  # the next sample to read; the RMS window was last cleared here
    while pos < len(x):
        start = _first_run(_above(power, pos, pos, window, percent), need)
        if start is None:  # never `seconds` of sound again: the rest goes
            break
        begin = pos + start
        scan = begin + need
        quiet = _first_run(~_above(power, pos, scan, window, percent), need)
        if quiet is None:  # sound to the end (a shorter quiet tail is kept)
            kept.append(x[begin:])
            break
        kept.append(x[begin : scan + quiet])
        pos = scan + quiet + need  # that silence is dropped, the window cleared
    return np.concatenate(kept).astype(np.asarray(samples).dtype) if kept else x[:0].astype(np.float32)


def _above(power: np.ndarray, cleared: int, start: int, window: int, percent: float) -> np.ndarray:
    """For each sample from `start`, whether the RMS over the last `window` samples (none before
    `cleared`) reads, as a 16-bit value, at least `percent` of full scale (sox's aboveThreshold)."""
    t = np.arange(start, len(power) - 1)
    total = power[t + 1] - power[np.maximum(cleared, t - window + 1)]
    rms = np.sqrt(np.maximum(total, 0.0) / window)
    # sox holds samples as 32-bit integers (16-bit audio shifted up 16 bits), truncates the RMS to one,
    # then rounds it back to 16 bits
    word = (np.floor(rms * 2.0**31) + 2.0**15) // 2.0**16
    return word / 32767.0 * 100.0 >= percent


def _first_run(mask: np.ndarray, length: int) -> int | None:
    """The first index where `length` consecutive entries of `mask` are true (None: nowhere)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_enough = np.flatnonzero(ends - starts >= length)
    return int(starts[long_enough[0]]) if len(long_enough) else None


@dataclass(frozen=True)
class AudioFilter:
    """What is done to audio before the upstream sees it, as s3prl's dataset effects do: sox's `gain`
    (`gain_db`), then its silence removal (`remove_silence`: `sox_silence`, on the attenuated audio).
    `name` keys the feature cache of filtered audio (None: the filter changes nothing)."""

    gain_db: float = 0.0
    remove_silence: bool = False

    @property
    def name(self) -> str | None:
        parts = ([f"gain{self.gain_db:g}"] if self.gain_db else []) + (
            ["sox_silence"] if self.remove_silence else []
        )
        return "_".join(parts) or None

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self.gain_db:
            samples = (samples * 10 ** (self.gain_db / 20)).astype(samples.dtype)
        if self.remove_silence:
            kept = sox_silence(samples, gain_db=0.0)  # the gain above is already in the samples
            samples = kept if len(kept) else samples  # all silence: kept whole rather than emptied
        return samples


@dataclass(frozen=True)
class Crop:
    """How training reads an utterance as s3prl's recipes do: its audio through `audio` (sox's gain and
    silence removal), then a random window of `seconds` (start drawn by `rng` over what is left) when
    it is longer (`seconds` math.inf: the filter alone)."""

    seconds: float
    rng: random.Random
    audio: AudioFilter | None = None

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self.audio is not None:
            samples = self.audio(samples)
        if len(samples) <= self.seconds * SAMPLE_RATE:  # also a window of math.inf: cut nothing
            return samples
        n = int(round(self.seconds * SAMPLE_RATE))
        start = self.rng.randint(0, len(samples) - n)  # as s3prl: random.randint(0, length - max_timestep)
        return samples[start : start + n]


def load_batch(
    paths: Sequence[str | os.PathLike],
    *,
    max_seconds: float = MAX_SECONDS,
    min_samples: int = 1,
    crop: Crop | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load files into the upstream input: zero-padded [B, S] float32 and lengths [B] int64; with `crop`,
    each file as that crop reads it."""
    import torch  # deferred: corpus preparers read audio without torch (module docstring)

    if len(paths) == 0:
        raise ValueError("load_batch needs at least one path")
    wavs = [load_audio(p, max_seconds=max_seconds, min_samples=min_samples) for p in paths]
    if crop is not None:
        wavs = [crop(w) for w in wavs]
    lens = torch.tensor([w.shape[0] for w in wavs], dtype=torch.int64)
    batch = torch.zeros(len(wavs), int(lens.max()), dtype=torch.float32)
    for i, w in enumerate(wavs):
        batch[i, : w.shape[0]] = torch.from_numpy(w)
    return batch, lens


def save_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically, clipping to [-1, 1].

    The temporary file sits beside the target and is renamed into place, so an
    interrupted writer never leaves a truncated WAV that a re-run would trust.
    """
    path = Path(path)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise AudioError(
            f"{path}: cannot save samples of shape {samples.shape}; expected [S] or [S, channels]."
        )
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: refusing to save samples that contain NaN or Inf; fix the signal first.")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{path}: cannot save at sample rate {sample_rate} Hz; use {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz."
        )
    with atomic_open(path, "wb") as f:
        sf.write(f, np.clip(samples, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")


def _open_checked(path: Path) -> sf.SoundFile:
    """Open a file with soundfile after the checks that need no decoding."""
    if not path.exists():
        raise AudioError(
            f"{path}: audio file is missing (no such file). Check the path or the manifest's folder."
        )
    if path.is_dir():
        raise AudioError(
            f"{path}: is a directory, not an audio file. Point to a WAV/FLAC/OGG file inside it."
        )
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes). Re-fetch or re-create it.")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: unreadable: permission denied. Fix the file's permissions.")
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(
            f"{path}: unreadable: not a supported audio format or the header is corrupt "
            f"({_libsndfile_reason(e)}). Convert it to WAV or FLAC, or re-fetch it."
        ) from None
    try:
        _check_header(path, f, size)
    except BaseException:
        f.close()
        raise
    return f


def _check_header(path: Path, f: sf.SoundFile, size: int) -> None:
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{path}: implausible sample rate {f.samplerate} Hz (expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} "
            "Hz); the header is probably corrupt. Re-encode the file at its true rate."
        )
    if f.format in ("WAV", "WAVEX"):
        declared_available = _wav_data_sizes(path, size)
        if declared_available is not None and declared_available[0] > declared_available[1]:
            declared, available = declared_available
            raise AudioError(
                f"{path}: truncated: the header declares {declared} bytes of audio data but only {available} "
                "follow it. The file was cut short (interrupted download or copy); re-fetch or re-create it."
            )
    elif f.format == "OGG" and _ogg_cut_short(path, size):
        raise AudioError(
            f"{path}: truncated: the Ogg stream ends without its end-of-stream page. The file was cut short "
            "(interrupted download or copy); re-fetch or re-create it."
        )


def _wav_data_sizes(path: Path, size: int) -> tuple[int, int] | None:
    """(bytes the data chunk declares, bytes the file holds after its header), or None if unknown.

    libsndfile silently shortens a cut-off WAV to what is there, so the
    declared size is the only evidence that something is missing.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack(order + "4sI", fh.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                    return None
                return chunk_size, size - pos - 8
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _ogg_cut_short(path: Path, size: int) -> bool:
    """True if the last Ogg page is incomplete or lacks the end-of-stream flag.

    Only the tail is read (one page is at most 64 KiB). libsndfile reports a
    cut-off Ogg file's length from its last complete page, so without this
    check a truncated file would load as a shorter, valid one.
    """
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _OGG_MAX_PAGE))
        tail = fh.read()
    start = tail.rfind(b"OggS")
    while start >= 0:
        if len(tail) - start >= 27 and tail[start + 4] == 0:
            n_segments = tail[start + 26]
            table = tail[start + 27 : start + 27 + n_segments]
            end = start + 27 + n_segments + sum(table)
            if len(table) < n_segments or end > len(tail):
                return True
            if end == len(tail):
                return not tail[start + 5] & 0x04
        start = tail.rfind(b"OggS", 0, start)
    return False


def _check_finite(path: Path, data: np.ndarray, sample_rate: int) -> None:
    bad = ~np.isfinite(data)
    if not bad.any():
        return
    kind = "NaN" if np.isnan(data).any() else "Inf"
    first = int(np.argmax(bad.any(axis=1)))
    raise AudioError(
        f"{path}: contains {kind} samples ({int(bad.sum())} non-finite values, the first at "
        f"{first / sample_rate:.3f} s). A float WAV was written from a broken signal; re-create it."
    )


def _resample(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    g = math.gcd(sample_rate, SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, sample_rate // g
    if up * down > _MAX_TORCHAUDIO_KERNEL:
        from scipy.signal import resample_poly  # deferred: heavy, for odd sample rates only

        return resample_poly(mono, up, down).astype(np.float32)
    # deferred: torch only where audio needs resampling (module docstring)
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(mono), sample_rate, SAMPLE_RATE).numpy()


def _libsndfile_reason(e: Exception) -> str:
    reason = getattr(e, "error_string", "") or str(e) or type(e).__name__
    return reason.strip().rstrip(".")
