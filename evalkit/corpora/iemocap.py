"""IEMOCAP for emotion recognition (SUPERB ER: 4 classes, 5 folds by session).

Layout read (IEMOCAP_full_release):
    <src>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
        lines "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
    <src>/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

Classes: neu, hap, ang, sad, with exc merged into hap; every other label
(fru, sur, fea, dis, oth, xxx) is dropped, as in SUPERB. Fold k tests on
Session k and trains on the other four. Its dev split is a random 10% of
those training utterances (seeded by the fold, so it is reproducible), as in
s3prl, which also draws dev at random from the training sessions; a
speaker-disjoint dev would take a whole speaker (1/8 of the data) out of
training. Speaker ids are session + the gender of the speaking turn
(`Ses01F_impro01_M003` is "Ses01_M"): the letter after "Ses01" names who
wore the motion capture, not who speaks.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    first_existing,
    is_prepared,
    manifest_paths,
    require_audio,
    require_dir,
    write_prepared,
)

EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
SESSIONS = (1, 2, 3, 4, 5)
CORPUS = "iemocap"
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(\S+)\t(\S+)\t")


def prepare_iemocap(
    src: str | os.PathLike, out: str | os.PathLike, dev_ratio: float = 0.1, seed: int = 0
) -> dict[str, Path]:
    """Write `<out>/fold{k}/{train,dev,test}.jsonl` (k = 1..5) with `emotion`, `fold`, `gender`."""
    if not 0 < dev_ratio < 1:
        raise EvalkitError(f"dev_ratio must be between 0 and 1 (exclusive), got {dev_ratio}.")
    src, out = Path(src).resolve(), Path(out)
    options = {"src": str(src), "dev_ratio": dev_ratio, "seed": seed}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    root = first_existing(
        [src / "Session1", src / "IEMOCAP_full_release" / "Session1"], "IEMOCAP Session1"
    ).parent
    by_session = {s: _read_session(root / f"Session{s}", s) for s in SESSIONS}
    manifests = {}
    for k in SESSIONS:
        train = [r for s in SESSIONS if s != k for r in by_session[s]]
        rng = random.Random(f"{seed}-fold{k}")
        dev_ids = set(rng.sample(sorted(r["id"] for r in train), max(1, round(dev_ratio * len(train)))))
        manifests[f"fold{k}/train"] = [r for r in train if r["id"] not in dev_ids]
        manifests[f"fold{k}/dev"] = [r for r in train if r["id"] in dev_ids]
        manifests[f"fold{k}/test"] = by_session[k]
    return write_prepared(out, CORPUS, options, manifests)


def _read_session(session: Path, number: int) -> list[dict]:
    labels = require_dir(session / "dialog" / "EmoEvaluation", f"Session{number} emotion labels", "*.txt")
    wav_root = session / "sentences" / "wav"
    records = []
    for label_file in sorted(labels.glob("*.txt")):
        for lineno, line in enumerate(
            label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        ):
            m = _LINE.match(line)
            if not m or m.group(2) not in EMOTIONS:
                continue
            utt = m.group(1)
            dialog, _, turn = utt.rpartition("_")
            audio = require_audio(wav_root / dialog / f"{utt}.wav", f"{label_file}:{lineno}")
            gender = turn[:1]
            records.append(
                {
                    "id": utt,
                    "path": str(audio),
                    "duration": duration(audio),
                    "speaker": f"{utt[:5]}_{gender}",
                    "emotion": EMOTIONS[m.group(2)],
                    "fold": number,
                    "gender": gender,
                }
            )
    if not records:
        raise EvalkitError(f"{labels}: no utterance with a neu/hap/exc/ang/sad label. Is this IEMOCAP?")
    return records
