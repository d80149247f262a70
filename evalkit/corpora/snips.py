"""Audio SNIPS for slot filling, laid out as s3prl's SF recipe prepares it.

Layout read (what s3prl's `preprocess/snips_prepare_data.sh` leaves in SNIPS/):
    <src>/all.iob.snips.txt
        "<uid> BOS w1 w2 ... EOS\tO t1 t2 ... <intent>" per line, where
        uid = "<Speaker>-snips-<train|valid|test>-<n>" and t_i is the IOB tag of
        w_i ("O", "B-<slot>", "I-<slot>"; bare "<slot>" tags are read as IO)
    <src>/{train,valid,test}/**/<uid>.wav

SUPERB's split is by synthetic voice: s3prl's default speakers below, each
split drawn from its own folder (the valid/ and test/ folders hold every
voice's rendering; only the listed voices are used). Assumption: every
transcript of a selected voice has its audio file; a missing one is an error
naming it. Text is lower-cased and, as s3prl's encoder reads it
(downstream/ctc/text.py:106-127), a word that is a substring of "?!.,;-" is
dropped with its tag and the word "&" is spelled "and". Slots carry character
offsets into the text; the intent is kept as `intent`.

`<out>/slots.txt` lists the slot types, the outside tag `O` first, for the faithful SF
task's output layer (labels.vocab s3prl): a copy of `<src>/slots.txt` when s3prl's
preparation left one there (`preprocess/snips_preprocess.py:255-256`), else made as
that script makes it, every tag of the transcripts counted and listed by falling count.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    first_existing,
    is_prepared,
    manifest_paths,
    require_dir,
    write_prepared,
)

TRAIN_SPEAKERS = ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli")
DEV_SPEAKERS = ("Aditi", "Amy", "Geraint", "Nicole")
TEST_SPEAKERS = ("Brian", "Emma", "Raveena", "Russell")
SPLIT_DIRS = {"train": "train", "dev": "valid", "test": "test"}
TRANSCRIPTS = "all.iob.snips.txt"
CORPUS = "snips"
S3PRL_PUNCTUATION = "?!.,;-"  # s3prl skips a word `if wrd in "?!.,;-"` (a substring test)
SLOTS = "slots.txt"


def prepare_snips(
    src: str | os.PathLike,
    out: str | os.PathLike,
    train_speakers: Sequence[str] = TRAIN_SPEAKERS,
    dev_speakers: Sequence[str] = DEV_SPEAKERS,
    test_speakers: Sequence[str] = TEST_SPEAKERS,
) -> dict[str, Path]:
    """Write `<out>/{train,dev,test}.jsonl` with text, slots and intent."""
    src, out = Path(src).resolve(), Path(out)
    speakers = {"train": list(train_speakers), "dev": list(dev_speakers), "test": list(test_speakers)}
    # format 2: s3prl's punctuation rule and "&" as "and"; 3: slots.txt
    options = {"src": str(src), "speakers": speakers, "format": 3}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    transcripts = first_existing([src / TRANSCRIPTS, src / "SNIPS" / TRANSCRIPTS], f"SNIPS {TRANSCRIPTS}")
    root = transcripts.parent
    utterances = _read_transcripts(transcripts)
    manifests = {}
    for split, folder in SPLIT_DIRS.items():
        audio_dir = require_dir(root / folder, f"SNIPS {folder}/ audio folder")
        wanted = [u for u in utterances if u["split"] == folder and u["speaker"] in speakers[split]]
        if not wanted:
            raise EvalkitError(
                f"{transcripts}: no '{folder}' utterance of speakers {', '.join(speakers[split])}. "
                "Check the speaker lists."
            )
        audio = {p.stem: p for p in audio_dir.rglob("*.wav")}
        records = []
        for u in wanted:
            path = audio.get(u["id"])
            if path is None:
                raise EvalkitError(
                    f"{audio_dir / (u['id'] + '.wav')}: audio file listed in {transcripts}:{u['line']} is "
                    "missing. Re-extract the SNIPS audio."
                )
            rec = {"id": u["id"], "path": str(path), "duration": duration(path), "speaker": u["speaker"]}
            rec.update(text=u["text"], slots=u["slots"], intent=u["intent"])
            records.append(rec)
        manifests[split] = records
    return write_prepared(out, CORPUS, options, manifests, {SLOTS: slot_types(root, transcripts)})


def slot_types(root: Path, transcripts: Path) -> str:
    """slots.txt: s3prl's file when its preparation left one in `root`, else made from the transcripts' tags."""
    given = root / SLOTS
    if given.is_file():
        text = given.read_text(encoding="utf-8")
        if not text.strip():
            raise EvalkitError(f"{given}: empty. Delete it to have the slot types read from {transcripts}.")
        return text if text.endswith("\n") else text + "\n"
    counts: Counter[str] = Counter()
    for line in transcripts.read_text(encoding="utf-8").splitlines():
        tags = line.partition("\t")[2].split()[1:-1]  # the words' tags, without BOS's O and the intent
        counts.update(t.partition("-")[2] if t[:2] in ("B-", "I-") else t for t in tags)
    counts.setdefault("O", 0)
    types = ["O", *(t for t, _ in counts.most_common() if t != "O")]  # s3prl reads every line after the first
    return "\n".join(types) + "\n"


def _read_transcripts(path: Path) -> list[dict]:
    utterances = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        left, sep, right = line.strip().partition("\t")
        words, tags = left.split(), right.split()
        if not sep or len(words) < 3 or len(tags) != len(words) - 1:
            raise EvalkitError(
                f"{path}:{lineno}: expected '<uid> BOS words EOS<TAB>O tags <intent>' with one tag per word."
            )
        uid, words, tags, intent = words[0], words[2:-1], tags[1:-1], tags[-1]
        kept = [("and" if w == "&" else w, t) for w, t in zip(words, tags) if w not in S3PRL_PUNCTUATION]
        parts = uid.split("-")
        utterances.append(
            {
                "id": uid,
                "speaker": parts[0],
                "split": parts[2] if len(parts) >= 4 else "",
                "line": lineno,
                "intent": intent,
                **iob_to_slots([w.lower() for w, _ in kept], [t for _, t in kept]),
            }
        )
    if not utterances:
        raise EvalkitError(f"{path}: holds no utterances. Re-create it with s3prl's SNIPS preparation.")
    return utterances


def iob_to_slots(words: Sequence[str], tags: Sequence[str]) -> dict:
    """Text (words joined by spaces) and slots with character offsets from per-word IOB tags."""
    text = " ".join(words)
    slots: list[dict] = []
    offset, prev = 0, "O"
    for word, tag in zip(words, tags):
        kind, _, name = tag.partition("-") if tag[:2] in ("B-", "I-") else ("I", "", tag)
        if tag != "O":
            if kind == "B" or prev == "O" or slots[-1]["type"] != name:
                slots.append({"type": name, "value": word, "start": offset, "end": offset + len(word)})
            else:
                slots[-1]["end"] = offset + len(word)
                slots[-1]["value"] = text[slots[-1]["start"] : slots[-1]["end"]]
        prev = tag
        offset += len(word) + 1
    return {"text": text, "slots": slots}
