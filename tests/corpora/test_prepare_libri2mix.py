"""Libri2Mix from Kaldi-style data dirs: speakers, segments and RTTM per recording."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora.libri2mix import prepare_libri2mix

MIX_A = "103-1240-0000_1034-121119-0001"
MIX_B = "19-198-0001_26-495-0002"


def data_dir(root: Path, split: str, recordings: dict[str, tuple[str, list]], text) -> None:
    d = root / split
    text(d / "wav.scp", "".join(f"{rec} {path}\n" for rec, (path, _) in recordings.items()))
    segs = [
        (f"{rec}_{int(s * 1000):06d}_{int(e * 1000):06d}", rec, s, e, spk)
        for rec, (_, items) in recordings.items()
        for s, e, spk in items
    ]
    text(d / "segments", "".join(f"{u} {r} {s} {e}\n" for u, r, s, e, _ in segs))
    text(d / "utt2spk", "".join(f"{u} {spk}\n" for u, _, _, _, spk in segs))
    text(d / "reco2dur", "".join(f"{rec} 1.0\n" for rec in recordings))  # derived: ignored


def build(root: Path, audio, text) -> Path:
    wavs = root.parent / "Libri2Mix" / "wav16k" / "max"
    for i, name in enumerate(("train/mix_both/a", "train/mix_both/b", "dev/mix_both/c", "test/mix_both/d")):
        audio(wavs / f"{name}.wav", 1.0 + 0.25 * i, seed=i)
    data_dir(
        root,
        "train",
        {
            MIX_A: (
                str(wavs / "train/mix_both/a.wav"),
                [(0.3, 1.0, "1034"), (0.0, 0.6, "103"), (0.75, 0.9, "103")],
            ),
            MIX_B: ("../../Libri2Mix/wav16k/max/train/mix_both/b.wav", [(0.1, 1.2, "19"), (0.2, 0.8, "26")]),
        },
        text,
    )
    data_dir(
        root, "dev", {"mixc": (str(wavs / "dev/mix_both/c.wav"), [(0.0, 1.5, "84"), (0.5, 1.0, "174")])}, text
    )
    data_dir(root, "test", {"mixd": (str(wavs / "test/mix_both/d.wav"), [(0.25, 1.0, "1089")])}, text)
    return root


def test_records_segments_and_rttm(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "data", audio, text)
    out = tmp_path / "out"
    paths = idempotent(lambda: prepare_libri2mix(src, out))
    train = {r["id"]: r for r in read_manifest(paths["train"])}
    a = train[MIX_A]
    assert a["speakers"] == ["103", "1034"] and a["speaker"] == ""
    assert a["segments"] == [[0.0, 0.6, "103"], [0.3, 1.0, "1034"], [0.75, 0.9, "103"]]
    assert a["duration"] == pytest.approx(1.0)
    b = train[MIX_B]
    assert Path(b["path"]) == (tmp_path / "Libri2Mix/wav16k/max/train/mix_both/b.wav").resolve()
    assert b["duration"] == pytest.approx(1.25)
    rttm = (out / "train.rttm").read_text().splitlines()
    assert rttm[0] == f"SPEAKER {MIX_A} 1 0.000 0.600 <NA> <NA> 103 <NA> <NA>"
    assert len(rttm) == 5 and all(len(line.split()) == 10 for line in rttm)
    assert (out / "test.rttm").read_text() == "SPEAKER mixd 1 0.250 0.750 <NA> <NA> 1089 <NA> <NA>\n"
    assert read_manifest(paths["dev"])[0]["speakers"] == ["174", "84"]


def test_missing_segments_file_is_named(tmp_path, audio, text):
    src = build(tmp_path / "data", audio, text)
    (src / "dev" / "segments").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src / "dev" / "segments"))):
        prepare_libri2mix(src, tmp_path / "out")


def test_wav_scp_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "data", audio, text)
    wav = tmp_path / "Libri2Mix" / "wav16k" / "max" / "test" / "mix_both" / "d.wav"
    wav.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(wav)) + r".*wav\.scp:1"):
        prepare_libri2mix(src, tmp_path / "out")


def test_segment_of_unknown_recording_is_named(tmp_path, audio, text):
    src = build(tmp_path / "data", audio, text)
    with open(src / "test" / "segments", "a") as f:
        f.write("ghost_000000_000500 ghost 0.0 0.5\n")
    with pytest.raises(EvalkitError, match=r"segments:2: recording 'ghost'"):
        prepare_libri2mix(src, tmp_path / "out")
