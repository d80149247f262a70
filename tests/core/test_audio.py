"""evalkit.core.audio: 16 kHz mono float32 in, one clear AudioError per bad file."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from evalkit.core.audio import SAMPLE_RATE, AudioInfo, audio_info, load_audio, load_batch, save_wav
from evalkit.core.errors import AudioError, EvalkitError


def sine(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sample_rate / len(x))


def noise(n: int, seed: int = 0, channels: int | None = None) -> np.ndarray:
    shape = (n,) if channels is None else (n, channels)
    return np.random.default_rng(seed).uniform(-0.9, 0.9, shape).astype(np.float32)


# --- reading and writing -------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    x = noise(12_345)
    path = tmp_path / "nested" / "dir" / "clip.wav"
    save_wav(path, x)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.wav"]  # no temp file left behind
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32_000)


def test_save_wav_clips_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    save_wav(path, noise(100))
    save_wav(path, np.array([2.0, -3.0, 0.25], dtype=np.float32))
    y = load_audio(path)
    assert y.shape == (3,)
    np.testing.assert_allclose(y, [1.0, -1.0, 0.25], atol=1.0 / 32_000)


def test_save_wav_refuses_nan(tmp_path: Path) -> None:
    path = tmp_path / "bad.wav"
    with pytest.raises(AudioError, match="NaN"):
        save_wav(path, np.array([0.0, np.nan], dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_stereo_is_downmixed_to_the_mean(tmp_path: Path) -> None:
    x = noise(8_000, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape == (8_000,)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("rate", [8_000, 44_100, 22_051])
def test_resampled_to_16k_keeping_pitch(tmp_path: Path, rate: int) -> None:
    # 22 051 Hz is coprime with 16 kHz: the path that avoids torchaudio's huge kernel.
    x = sine(440.0, 1.0, rate)
    path = tmp_path / f"sine_{rate}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape == (math.ceil(len(x) * SAMPLE_RATE / rate),)
    assert y.dtype == np.float32
    assert abs(peak_hz(y, SAMPLE_RATE) - 440.0) <= 1.0
    assert abs(np.sqrt(np.mean(y[1000:-1000] ** 2)) - 0.5 / math.sqrt(2)) < 0.01


def test_resampling_matches_torchaudio(tmp_path: Path) -> None:
    import torchaudio.functional as AF

    x = noise(4_410)
    path = tmp_path / "noise.wav"
    sf.write(path, x, 44_100, subtype="FLOAT")
    expected = AF.resample(torch.from_numpy(x), 44_100, SAMPLE_RATE).numpy()
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-6)


def test_flac(tmp_path: Path) -> None:
    x = noise(10_000, channels=2)
    path = tmp_path / "clip.flac"
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    reference = sf.read(path, dtype="float32")[0].mean(axis=1)
    y = load_audio(path)
    np.testing.assert_allclose(y, reference, atol=1e-7)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1.0 / 32_000)


def test_ogg_vorbis(tmp_path: Path) -> None:
    x = sine(440.0, 1.0, 48_000)
    path = tmp_path / "clip.ogg"
    sf.write(path, x, 48_000, format="OGG", subtype="VORBIS")
    y = load_audio(path)
    assert y.shape == (SAMPLE_RATE,)
    assert abs(peak_hz(y, SAMPLE_RATE) - 440.0) <= 1.0


def test_audio_info(tmp_path: Path) -> None:
    path = tmp_path / "stereo.flac"
    sf.write(path, noise(22_050, channels=2), 44_100)
    assert audio_info(path) == AudioInfo(sample_rate=44_100, frames=22_050, channels=2, duration=0.5)


def test_load_batch_pads_with_zeros(tmp_path: Path) -> None:
    a, b = noise(8_000, seed=1), noise(8_000, seed=2, channels=2)
    save_wav(tmp_path / "a.wav", a)
    sf.write(tmp_path / "b.wav", b, 8_000, subtype="FLOAT")  # 1 s at 8 kHz -> 16 000 samples
    wavs, lens = load_batch([tmp_path / "a.wav", tmp_path / "b.wav"])
    assert wavs.shape == (2, 16_000) and wavs.dtype == torch.float32
    assert lens.tolist() == [8_000, 16_000] and lens.dtype == torch.int64
    assert torch.equal(wavs[0, :8_000], torch.from_numpy(load_audio(tmp_path / "a.wav")))
    assert torch.equal(wavs[1], torch.from_numpy(load_audio(tmp_path / "b.wav")))
    assert not wavs[0, 8_000:].any()


def test_load_batch_needs_paths() -> None:
    with pytest.raises(ValueError, match="at least one"):
        load_batch([])


def test_odd_rate_does_not_build_a_huge_torchaudio_kernel(tmp_path: Path, monkeypatch) -> None:
    import torchaudio.functional as AF

    def refuse(waveform, orig_freq, new_freq, **kwargs):
        raise AssertionError(f"torchaudio asked to resample {orig_freq} -> {new_freq}")

    monkeypatch.setattr(AF, "resample", refuse)
    path = tmp_path / "odd.wav"
    sf.write(path, noise(2_205), 22_051, subtype="FLOAT")
    assert load_audio(path).shape == (math.ceil(2_205 * SAMPLE_RATE / 22_051),)


# --- bad inputs ----------------------------------------------------------------


def _truncated_wav(tmp_path: Path) -> Path:
    path = tmp_path / "cut.wav"
    save_wav(path, noise(16_000))
    data = path.read_bytes()
    path.write_bytes(data[:-1001])
    return path


def _truncated(tmp_path: Path, name: str, **write_kwargs) -> Path:
    path = tmp_path / name
    sf.write(path, sine(300.0, 2.0, SAMPLE_RATE), SAMPLE_RATE, **write_kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    return path


def _ogg_without_last_page(tmp_path: Path) -> Path:
    # Cut exactly at a page boundary: every remaining page is whole, only the end-of-stream page is gone.
    path = tmp_path / "no_eos.ogg"
    sf.write(path, sine(300.0, 2.0, SAMPLE_RATE), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"OggS")])
    return path


def _empty_wav(tmp_path: Path) -> Path:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    return path


def _float_wav_with(tmp_path: Path, value: float) -> Path:
    path = tmp_path / "broken.wav"
    x = noise(4_000)
    x[1_234] = value
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    return path


def _wav_with_rate(tmp_path: Path, rate: int) -> Path:
    path = tmp_path / f"rate{rate}.wav"
    sf.write(path, noise(100), rate)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES = {
    "missing": (lambda d: d / "nope.wav", "missing"),
    "directory": (lambda d: (d / "clips.wav").mkdir() or d / "clips.wav", "directory"),
    "empty": (lambda d: _write_bytes(d / "empty.wav", b""), "empty"),
    "text": (lambda d: _write_bytes(d / "notes.wav", b"this is not audio\n" * 20), "unreadable"),
    "bad_header": (lambda d: _write_bytes(d / "garbage.flac", b"fLaC" + bytes(range(256)) * 4), "unreadable"),
    "truncated_wav": (_truncated_wav, "truncated"),
    "truncated_flac": (lambda d: _truncated(d, "cut.flac"), "truncated"),
    "truncated_ogg": (lambda d: _truncated(d, "cut.ogg", format="OGG", subtype="VORBIS"), "truncated"),
    "ogg_without_end": (_ogg_without_last_page, "truncated"),
    "zero_samples": (_empty_wav, "zero samples"),
    "nan": (lambda d: _float_wav_with(d, np.nan), "NaN"),
    "inf": (lambda d: _float_wav_with(d, np.inf), "Inf"),
    "rate_too_low": (lambda d: _wav_with_rate(d, 500), "sample rate"),
    "rate_too_high": (lambda d: _wav_with_rate(d, 400_000), "sample rate"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_clear_audio_error(tmp_path: Path, case: str) -> None:
    make, word = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(AudioError) as excinfo:
        load_audio(path)
    message = str(excinfo.value)
    assert path.name in message
    assert word in message
    assert isinstance(excinfo.value, EvalkitError)


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "text",
        "truncated_wav",
        "truncated_ogg",
        "ogg_without_end",
        "rate_too_low",
    ],
)
def test_audio_info_refuses_what_the_header_shows(tmp_path: Path, case: str) -> None:
    make, word = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(AudioError, match=word) as excinfo:
        audio_info(path)
    assert path.name in str(excinfo.value)


def test_silently_short_read_is_truncated(tmp_path: Path, monkeypatch) -> None:
    # Some decoders stop early without an error; the header's frame count must still catch it.
    path = tmp_path / "short.flac"
    sf.write(path, noise(4_000), SAMPLE_RATE)
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **kw: real_read(self, *a, **kw)[:-100])
    with pytest.raises(AudioError, match="truncated.*4000 frames but only 3900") as excinfo:
        load_audio(path)
    assert "short.flac" in str(excinfo.value)


def test_too_long_and_too_short(tmp_path: Path) -> None:
    path = tmp_path / "one_second.wav"
    save_wav(path, noise(16_000))
    with pytest.raises(AudioError, match="too long") as excinfo:
        load_audio(path, max_seconds=0.5)
    assert "one_second.wav" in str(excinfo.value)
    with pytest.raises(AudioError, match="too short") as excinfo:
        load_audio(path, min_samples=16_001)
    assert "one_second.wav" in str(excinfo.value)
    assert load_audio(path, max_seconds=1.0, min_samples=16_000).shape == (16_000,)


def test_wav_with_trailing_chunk_is_not_truncated(tmp_path: Path) -> None:
    # A LIST chunk after the data is legal; only a data chunk longer than the file is not.
    path = tmp_path / "tagged.wav"
    save_wav(path, noise(1_000))
    data = path.read_bytes()
    info = b"INFOISFT" + struct.pack("<I", 6) + b"tests\x00"
    data += b"LIST" + struct.pack("<I", len(info)) + info
    path.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    assert load_audio(path).shape == (1_000,)
