"""`--upstream s3prl:NAME`: s3prl's baselines through our contract, and the error without s3prl.

s3prl is optional and not a CI dependency. The tests that need it run when it
is importable, or when EVALKIT_S3PRL_SITE (default /tmp/s3prl_site) names a
`pip install --no-deps --target` folder holding s3prl and omegaconf; else
they skip, saying so. The references are s3prl's own S3PRLUpstream, and
torchaudio's Kaldi fbank computed here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
import torchaudio

from evalkit.core.errors import EvalkitError
from upstreams.load import load_upstream
from upstreams.s3prl import apply_torchaudio_shims

SITE = Path(os.environ.get("EVALKIT_S3PRL_SITE", "/tmp/s3prl_site"))
SKIP_REASON = (
    "s3prl is not installed (optional): `pip install s3prl`, or set EVALKIT_S3PRL_SITE to a folder made by "
    "`pip install --no-deps --target DIR s3prl==0.4.18 omegaconf antlr4-python3-runtime==4.9.3`"
)


@pytest.fixture(scope="module")
def s3prl_path():
    """Makes s3prl importable for this module (from EVALKIT_S3PRL_SITE if needed), or skips."""
    added = False
    if importlib.util.find_spec("s3prl") is None and (SITE / "s3prl").is_dir():
        sys.path.insert(0, str(SITE))
        added = True
    if importlib.util.find_spec("s3prl") is None:
        pytest.skip(SKIP_REASON)
    yield
    if added:
        sys.path.remove(str(SITE))


@pytest.fixture(scope="module")
def batch():
    lens = torch.tensor([16_000, 8_000])
    wavs = 0.1 * torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0))
    wavs[1, 8_000:] = 0.0
    return wavs, lens


def reference_fbank(wav: torch.Tensor) -> torch.Tensor:
    """s3prl's fbank.yaml by hand: 80 log-mel (Kaldi), CMVN per utterance (std + 1e-10)."""
    fbank = torchaudio.compliance.kaldi.fbank(
        wav[None], num_mel_bins=80, frame_length=25.0, frame_shift=10.0, sample_frequency=16_000
    )
    return (fbank - fbank.mean(0)) / (1e-10 + fbank.std(0))


def test_fbank_baseline_matches_s3prl_and_kaldi(s3prl_path, batch):
    wavs, lens = batch
    up = load_upstream("s3prl:fbank")
    from s3prl.nn import S3PRLUpstream

    assert (up.num_layers, up.hidden_size, up.frame_rate) == (1, 240, 100.0)
    assert up.checkpoint == "s3prl:fbank"
    hidden, frames = up(wavs, lens)
    assert frames.tolist() == up.frames_for(lens).tolist() == [100, 50]

    ref_hidden, ref_lens = S3PRLUpstream("fbank").eval()(wavs, lens)
    assert ref_lens[0].tolist() == [100, 50]
    for ours, theirs in zip(hidden, ref_hidden):
        assert torch.equal(ours[0], theirs[0])
        assert torch.equal(ours[1, :50], theirs[1, :50]) and not ours[1, 50:].any()

    for i, n in enumerate(lens.tolist()):
        kaldi_frames = reference_fbank(wavs[i, :n])
        assert torch.allclose(hidden[0][i, : len(kaldi_frames), :80], kaldi_frames, atol=1e-4)


def test_mfcc_baseline_and_frozen(s3prl_path, batch):
    wavs, lens = batch
    up = load_upstream("s3prl:mfcc")
    assert (up.num_layers, up.hidden_size, up.frame_rate) == (1, 39, 100.0)
    up.train()
    assert not up.upstream.training and not any(p.requires_grad for p in up.parameters())
    hidden, frames = up(wavs, lens)
    assert hidden[0].shape == (2, 100, 39) and frames.tolist() == [100, 50]
    alone, _ = up(wavs[1:, :8_000], lens[1:])
    # Kaldi computes 48 frames of 8000 samples; s3prl pads its 50 with zeros in a batch, the last frame alone.
    assert torch.allclose(alone[0][0, :48], hidden[0][1, :48], atol=1e-5)


def test_cache_fingerprint_tells_weightless_baselines_apart(s3prl_path):
    from evalkit.evaluation.fingerprint import upstream_fingerprint

    fbank, no_cmvn = load_upstream("s3prl:fbank"), load_upstream("s3prl:fbank_no_cmvn")
    assert (fbank.hidden_size, fbank.frame_rate) == (no_cmvn.hidden_size, no_cmvn.frame_rate)
    assert upstream_fingerprint(fbank) != upstream_fingerprint(no_cmvn)
    assert upstream_fingerprint(fbank) == upstream_fingerprint(load_upstream("s3prl:fbank"))


def test_unknown_name_suggests(s3prl_path):
    with pytest.raises(EvalkitError, match="no upstream 'fbnk'.*Did you mean.*'fbank'"):
        load_upstream("s3prl:fbnk")


def test_without_s3prl_the_error_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3prl", None)
    monkeypatch.setitem(sys.modules, "s3prl.nn", None)
    with pytest.raises(EvalkitError, match="pip install s3prl"):
        load_upstream("s3prl:fbank")


def test_torchaudio_shims():
    apply_torchaudio_shims()
    apply_torchaudio_shims()
    assert torchaudio.set_audio_backend("sox_io") is None
    sox_effects = sys.modules["torchaudio.sox_effects"]
    if tuple(int(x) for x in torchaudio.__version__.split(".")[:2]) >= (2, 9):
        with pytest.raises(EvalkitError, match="removed in torchaudio 2.9"):
            sox_effects.apply_effects_tensor(torch.zeros(1, 10), 16_000, [])
