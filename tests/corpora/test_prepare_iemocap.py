"""IEMOCAP: 4 classes (exc -> happy), 5 session folds, a reproducible 10% dev split."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import read_manifest
from evalkit.corpora.iemocap import prepare_iemocap

TURNS = [
    ("F000", "neu"),
    ("F001", "exc"),
    ("M000", "ang"),
    ("M001", "fru"),
    ("M002", "sad"),
    ("F002", "hap"),
    ("M003", "xxx"),
]
KEPT_PER_SESSION = 5


def build(src: Path, audio, text) -> Path:
    for s in range(1, 6):
        session = src / f"Session{s}"
        dialog = f"Ses0{s}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
        for i, (turn, emo) in enumerate(TURNS):
            utt = f"{dialog}_{turn}"
            audio(session / "sentences" / "wav" / dialog / f"{utt}.wav", 0.1, seed=s * 10 + i)
            lines.append(f"[{i}.5000 - {i + 1}.2500]\t{utt}\t{emo}\t[2.5000, 3.0000, 2.0000]\n")
            lines.append("C-E1:\tNeutral;\t()\nA-E2:\tval 3; act 2; dom  2;\t()\n\n")
        text(session / "dialog" / "EmoEvaluation" / f"{dialog}.txt", "".join(lines))
    return src


def test_folds_classes_and_dev_split(tmp_path, audio, text, idempotent):
    src = build(tmp_path / "IEMOCAP_full_release", audio, text)
    paths = idempotent(lambda: prepare_iemocap(src, tmp_path / "out"))
    assert sorted(paths) == sorted(f"fold{k}/{s}" for k in range(1, 6) for s in ("train", "dev", "test"))
    for k in range(1, 6):
        train, dev, test = (read_manifest(paths[f"fold{k}/{s}"]) for s in ("train", "dev", "test"))
        assert {r["fold"] for r in test} == {k} and len(test) == KEPT_PER_SESSION
        assert k not in {r["fold"] for r in train + dev}
        assert len(dev) == round(0.1 * 4 * KEPT_PER_SESSION) and len(train) + len(dev) == 4 * KEPT_PER_SESSION
        assert not {r["id"] for r in train} & {r["id"] for r in dev}
    test1 = {r["id"]: r for r in read_manifest(paths["fold1/test"])}
    assert Counter(r["emotion"] for r in test1.values()) == {"happy": 2, "neutral": 1, "angry": 1, "sad": 1}
    assert test1["Ses01F_impro01_F001"]["emotion"] == "happy"  # exc merged into hap
    assert "Ses01F_impro01_M001" not in test1  # fru dropped
    assert test1["Ses01F_impro01_M000"]["speaker"] == "Ses01_M"
    assert test1["Ses01F_impro01_M000"]["gender"] == "M"
    assert test1["Ses01F_impro01_M000"]["duration"] == pytest.approx(0.1)


def test_dev_split_depends_on_seed(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    devs = []
    for seed in (0, 1):
        paths = prepare_iemocap(src, tmp_path / f"seed{seed}", seed=seed)
        devs.append([{r["id"] for r in read_manifest(paths[f"fold{k}/dev"])} for k in range(1, 6)])
    assert devs[0] != devs[1]


def test_missing_label_folder_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    labels = src / "Session3" / "dialog" / "EmoEvaluation"
    (labels / "Ses03F_impro01.txt").unlink()
    labels.rmdir()
    with pytest.raises(EvalkitError, match=re.escape(str(labels))):
        prepare_iemocap(src, tmp_path / "out")


def test_label_pointing_at_missing_audio_is_named(tmp_path, audio, text):
    src = build(tmp_path / "src", audio, text)
    wav = src / "Session4" / "sentences" / "wav" / "Ses04F_impro01" / "Ses04F_impro01_M002.wav"
    wav.unlink()
    with pytest.raises(EvalkitError, match=re.escape(str(wav)) + ".*Ses04F_impro01.txt"):
        prepare_iemocap(src, tmp_path / "out")


def write_s3prl_meta(src: Path, folder: Path) -> Path:
    """s3prl's meta_data folder for the miniature corpus: per fold, the other sessions' kept utterances in
    s3prl's JSON layout, listed in an order of their own (reversed), as s3prl's files list them."""
    import json

    for k in range(1, 6):
        items = [
            {"path": f"Session{s}/sentences/wav/Ses0{s}F_impro01/Ses0{s}F_impro01_{turn}.wav", "label": emo}
            for s in range(1, 6)
            if s != k
            for turn, emo in TURNS
            if emo in ("neu", "hap", "exc", "ang", "sad")
        ][::-1]
        data = {"labels": {"neu": 0, "hap": 1, "ang": 2, "sad": 3}, "meta_data": items}
        (folder / f"Session{k}").mkdir(parents=True, exist_ok=True)
        (folder / f"Session{k}" / "train_meta_data.json").write_text(json.dumps(data))
    return folder


def test_s3prl_split_is_torchs_random_split_of_s3prls_list(tmp_path, audio, text):
    """train_s3prl / dev_s3prl are what s3prl's `torch.manual_seed(0); random_split(dataset, [int(0.8 n),
    rest])` draws from its meta file's list (torch's own random_split is the reference)."""
    import json

    import torch
    from torch.utils.data import random_split

    src = build(tmp_path / "IEMOCAP_full_release", audio, text)
    meta = write_s3prl_meta(src, tmp_path / "meta_data")
    paths = prepare_iemocap(src, tmp_path / "out", s3prl_meta=meta)
    for k in range(1, 6):
        listed = [
            Path(item["path"]).stem
            for item in json.loads((meta / f"Session{k}" / "train_meta_data.json").read_text())["meta_data"]
        ]
        torch.manual_seed(0)
        train, dev = random_split(listed, [int(0.8 * len(listed)), len(listed) - int(0.8 * len(listed))])
        assert [r["id"] for r in read_manifest(paths[f"fold{k}/train_s3prl"])] == [
            listed[i] for i in train.indices
        ]
        assert [r["id"] for r in read_manifest(paths[f"fold{k}/dev_s3prl"])] == [
            listed[i] for i in dev.indices
        ]
    (meta / "Session3" / "train_meta_data.json").write_text(
        '{"meta_data": [{"path": "Session1/x/nope.wav"}]}'
    )
    with pytest.raises(EvalkitError, match="not among this corpus's labelled"):
        prepare_iemocap(src, tmp_path / "out2", s3prl_meta=meta)
