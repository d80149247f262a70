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
training. With `s3prl_meta` (s3prl's downstream/emotion/meta_data folder, from
the s3prl repository: the corpus does not have it), each fold also gets
`train_s3prl` and `dev_s3prl`: s3prl's own split, its meta file's utterances in
its order, `torch.manual_seed(0)` and `random_split` into 80% / 20%
(s3prl/downstream/emotion/expert.py:47-52), which the faithful `er_superb_fold<k>`
tasks read. Speaker ids are session + the gender of the speaking turn
(`Ses01F_impro01_M003` is "Ses01_M"): the letter after "Ses01" names who
wore the motion capture, not who speaks.
"""

from __future__ import annotations

import json
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


S3PRL_VALID_RATIO = 0.2  # s3prl/downstream/emotion/config.yaml:34


def prepare_iemocap(
    src: str | os.PathLike,
    out: str | os.PathLike,
    dev_ratio: float = 0.1,
    seed: int = 0,
    s3prl_meta: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write `<out>/fold{k}/{train,dev,test}.jsonl` (k = 1..5) with `emotion`, `fold`, `gender`, and with
    `s3prl_meta` also `fold{k}/{train_s3prl,dev_s3prl}.jsonl`, s3prl's own split."""
    if not 0 < dev_ratio < 1:
        raise EvalkitError(f"dev_ratio must be between 0 and 1 (exclusive), got {dev_ratio}.")
    src, out = Path(src).resolve(), Path(out)
    meta = Path(s3prl_meta).resolve() if s3prl_meta is not None else None
    options = {"src": str(src), "dev_ratio": dev_ratio, "seed": seed} | (
        {"s3prl_meta": str(meta)} if meta is not None else {}
    )
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
        if meta is not None:
            train, dev = _s3prl_split(meta, k, {r["id"]: r for r in train})
            manifests[f"fold{k}/train_s3prl"], manifests[f"fold{k}/dev_s3prl"] = train, dev
    return write_prepared(out, CORPUS, options, manifests)


def _s3prl_split(meta: Path, fold: int, records: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """s3prl's train and dev utterances of a fold: its meta file's list, in its order, split by
    `torch.manual_seed(0); random_split(dataset, [int(0.8 * n), rest])` (torch's randperm)."""
    path = meta / f"Session{fold}" / "train_meta_data.json"
    try:
        listed = [
            Path(item["path"]).stem for item in json.loads(path.read_text(encoding="utf-8"))["meta_data"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EvalkitError(
            f"{path}: s3prl's IEMOCAP meta file could not be read ({type(e).__name__}: {e}). Pass s3prl_meta= "
            "the folder s3prl/downstream/emotion/meta_data of the s3prl repository (it holds Session1..5)."
        ) from None
    unknown = [u for u in listed if u not in records]
    if unknown:
        raise EvalkitError(
            f"{path}: {len(unknown)} utterance(s) s3prl trains on are not among this corpus's labelled "
            f"utterances of the other sessions, e.g. {unknown[:3]}. Is src the same IEMOCAP release?"
        )
    import torch  # deferred: `evalkit prepare` reads no tensor otherwise (torch takes seconds to import)

    n = len(listed)
    generator = torch.Generator().manual_seed(0)  # what torch.manual_seed(0) does to random_split's draw
    order = torch.randperm(n, generator=generator).tolist()
    cut = int((1 - S3PRL_VALID_RATIO) * n)
    return [records[listed[i]] for i in order[:cut]], [records[listed[i]] for i in order[cut:]]


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
