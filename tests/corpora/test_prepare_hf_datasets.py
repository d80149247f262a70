"""Hugging Face datasets (save_to_disk) and audiofolders -> manifests + 16 kHz WAVs, without torchcodec."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.manifest import audio_path, read_manifest
from evalkit.corpora import prepare
from evalkit.corpora.hf_datasets import load_mapping, prepare_hf_dataset

datasets = pytest.importorskip("datasets")


def sine(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def audio_dataset(rows: list[dict]):
    """A Dataset whose `audio` column has the Audio feature, built without torchcodec.

    datasets encodes Audio values through torchcodec, so the column is written
    as its storage struct ({bytes, path}) and then cast to Audio.
    """
    features = datasets.Features(
        {
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "file_id": datasets.Value("string"),
            "transcription": datasets.Value("string"),
            "speaker_id": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )
    columns = {k: [r[k] for r in rows] for k in features}
    return datasets.Dataset.from_dict(columns, features=features).cast_column("audio", datasets.Audio())


def test_saved_dataset_dict(tmp_path):
    stereo = np.stack([sine(0.5, 8000), 0.5 * sine(0.5, 8000)], axis=1)
    on_disk = tmp_path / "clip.wav"
    sf.write(on_disk, sine(0.25, 16000), 16000, subtype="FLOAT")
    train = audio_dataset(
        [
            {
                "audio": {"bytes": wav_bytes(stereo, 8000), "path": "a.wav"},
                "file_id": "utt-a",
                "transcription": "hello there",
                "speaker_id": "s1",
                "label": 1,
            },
            {
                "audio": {"bytes": None, "path": str(on_disk)},
                "file_id": "utt-b",
                "transcription": "bye",
                "speaker_id": "s2",
                "label": 0,
            },
        ]
    )
    valid = audio_dataset(
        [
            {
                "audio": {"bytes": wav_bytes(sine(0.1, 16000), 16000), "path": "c.wav"},
                "file_id": "utt-c",
                "transcription": "ok",
                "speaker_id": "s3",
                "label": 0,
            }
        ]
    )
    assert isinstance(train.features["audio"], datasets.Audio)
    datasets.DatasetDict({"train": train, "validation": valid}).save_to_disk(str(tmp_path / "saved"))
    on_disk.unlink()  # save_to_disk embedded the file's bytes: the source path is no longer needed
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("id: file_id\ntext: transcription\nspeaker: speaker_id\nlabel: label\n")

    out = tmp_path / "out"
    paths = prepare("hf_dataset", tmp_path / "saved", out, mapping=mapping)
    assert sorted(paths) == ["dev", "train"]
    a, b = read_manifest(paths["train"])
    assert {k: a[k] for k in ("id", "speaker", "text", "label", "duration")} == {
        "id": "utt-a",
        "speaker": "s1",
        "text": "hello there",
        "label": "pos",
        "duration": 0.5,
    }
    assert b["label"] == "neg" and b["duration"] == 0.25
    samples, rate = sf.read(audio_path(paths["train"], a), dtype="float32")
    assert rate == 16000 and samples.ndim == 1 and len(samples) == 8000
    # Mono mix of (x, x/2) resampled 8 -> 16 kHz is 0.75 x at 16 kHz (edges aside).
    np.testing.assert_allclose(samples[400:-400], 0.75 * sine(0.5, 16000)[400:-400], atol=0.01)
    (c,) = read_manifest(paths["dev"])
    assert c["id"] == "utt-c" and c["path"] == "audio/dev/000000.wav"
    assert prepare_hf_dataset(tmp_path / "saved", out, mapping=mapping) == paths  # idempotent


def test_single_saved_dataset_without_mapping(tmp_path):
    ds = audio_dataset(
        [
            {
                "audio": {"bytes": wav_bytes(sine(0.2, 16000), 16000), "path": "x.wav"},
                "file_id": "x",
                "transcription": "t",
                "speaker_id": "s",
                "label": 0,
            }
        ]
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    paths = prepare_hf_dataset(tmp_path / "saved", tmp_path / "out")
    (rec,) = read_manifest(paths["train"])
    assert rec["id"] == "train_000000" and rec["speaker"] == "" and rec["duration"] == 0.2


def build_audiofolder(root: Path) -> Path:
    for split, names in (("train", ["a", "b"]), ("test", ["c"])):
        (root / split).mkdir(parents=True)
        lines = ["file_name,transcription,speaker_id\n"]
        for i, name in enumerate(names):
            sf.write(root / split / f"{name}.wav", sine(0.1 * (i + 1), 22050), 22050)
            lines.append(f"{name}.wav,say {name},spk{i}\n")
        (root / split / "metadata.csv").write_text("".join(lines))
    return root


def test_audiofolder_with_split_folders(tmp_path, idempotent):
    src = build_audiofolder(tmp_path / "af")
    mapping = {"id": "file_name_stem", "text": "transcription"}
    with pytest.raises(EvalkitError, match=r"/metadata\.csv:2: no column 'file_name_stem'"):
        prepare_hf_dataset(src, tmp_path / "out", mapping=mapping)
    mapping = {"text": "transcription", "speaker": "speaker_id"}
    paths = idempotent(lambda: prepare_hf_dataset(src, tmp_path / "out", mapping=mapping))
    assert sorted(paths) == ["test", "train"]
    train = read_manifest(paths["train"])
    assert [(r["text"], r["speaker"], r["duration"]) for r in train] == [
        ("say a", "spk0", 0.1),
        ("say b", "spk1", 0.2),
    ]
    assert sf.info(str(audio_path(paths["train"], train[1]))).samplerate == 16000


def test_audiofolder_with_top_level_metadata(tmp_path):
    root = tmp_path / "af"
    for rel in ("train/a.wav", "test/b.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, sine(0.3, 16000), 16000)
    (root / "metadata.jsonl").write_text(
        '{"file_name": "train/a.wav", "label": "x"}\n{"file_name": "test/b.wav", "label": "y"}\n'
    )
    paths = prepare_hf_dataset(root, tmp_path / "out", mapping={"label": "label"})
    assert [r["label"] for r in read_manifest(paths["train"])] == ["x"]
    assert [r["label"] for r in read_manifest(paths["test"])] == ["y"]


def test_audiofolder_row_pointing_at_missing_audio_is_named(tmp_path):
    src = build_audiofolder(tmp_path / "af")
    (src / "test" / "c.wav").unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(src.resolve() / "test" / "c.wav"))):
        prepare_hf_dataset(src, tmp_path / "out")


def test_missing_metadata_is_named(tmp_path):
    src = tmp_path / "af"
    src.mkdir()
    sf.write(src / "a.wav", sine(0.1, 16000), 16000)
    with pytest.raises(EvalkitError, match=re.escape(str(src.resolve())) + ".*metadata.csv"):
        prepare_hf_dataset(src, tmp_path / "out")


def test_mapping_file_must_be_a_mapping(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("- id\n- text\n")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        load_mapping(bad)
