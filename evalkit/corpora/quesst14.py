"""QUESST 2014, English subset, for query by example (SUPERB QbE).

Layout read (quesst14Database.tgz):
    <src>/Audio/quesst14_<n>.wav                   search documents (8 kHz)
    <src>/dev_queries/quesst14_dev_<n>.wav, <src>/eval_queries/quesst14_eval_<n>.wav
    <src>/scoring/language_key_{utterances,dev,eval}.lst
        "<prefix>/Audio/quesst14_00001.wav nnenglish" per line; as in s3prl,
        the first path component is dropped and the rest is relative to src
        (a path that is already relative to src is accepted too)
    <src>/scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.rttm
        NIST RTTM LEXEME lines: field 2 the document, fields 4-5 onset and
        duration (s), and the query id (quesst14_dev_0001) in a later field

SUPERB keeps only the queries and documents whose language key is
"nnenglish" (non-native English). Each split (dev = dev queries, test = eval
queries) holds its queries (`role: query`, `term`: the query id) and all
English documents (`role: document`, `text`: "" as QUESST ships no document
transcripts, `occurrences`: where that split's queries occur).

`<split>_scope.json` keeps what SUPERB's scoring sees beyond that subset: QUESST's
scorer (`score-TWV-Cnxe.sh`, run by s3prl on the English subset's detections)
counts a trial for every query of the split and every document, in every
language, from the all-language ground truth, and gives the trials the system
did not score a default score (s3prl passes -10). The file lists those query
and document ids and where each query occurs (ids only: no audio is needed);
the QbE kind's `labels.scope: quesst` scores that way.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import (
    duration,
    first_existing,
    is_prepared,
    manifest_paths,
    require_file,
    write_prepared,
)

SPLITS = {"dev": "dev", "test": "eval"}
CORPUS = "quesst14"
_QUERY_ID = re.compile(r"^quesst14_(dev|eval)_\d+$")


def prepare_quesst14(
    src: str | os.PathLike, out: str | os.PathLike, language: str = "nnenglish"
) -> dict[str, Path]:
    """Write `<out>/{dev,test}.jsonl` (queries + documents) for one language (default English)."""
    src, out = Path(src).resolve(), Path(out)
    # format 2: the scope files (QUESST's all-language trials) came in
    options = {"src": str(src), "language": language, "format": 2}
    if is_prepared(out, CORPUS, options):
        return manifest_paths(out)
    scoring = first_existing(
        [src / "scoring", src / "quesst14Database" / "scoring"], "QUESST14 scoring/ folder"
    )
    root = scoring.parent
    documents = _read_list(root, scoring / "language_key_utterances.lst", language)
    all_documents = _all_ids(scoring / "language_key_utterances.lst")
    manifests, scopes = {}, {}
    for split, name in SPLITS.items():
        queries = _read_list(root, scoring / f"language_key_{name}.lst", language)
        rttm = require_file(
            scoring / f"groundtruth_quesst14_{name}" / f"quesst14_{name}.rttm",
            f"QUESST14 {name} ground truth",
        )
        occurrences = _read_rttm(rttm)
        records = [{**q, "role": "query", "term": q["id"]} for q in queries]
        query_ids = {q["id"] for q in queries}
        for doc in documents:
            occ = [o for o in occurrences.get(doc["id"], []) if o["term"] in query_ids]
            records.append({**doc, "role": "document", "text": "", "occurrences": occ})
        manifests[split] = records
        all_queries = _all_ids(scoring / f"language_key_{name}.lst")
        where: dict[str, list[str]] = {}
        for doc, found in sorted(occurrences.items()):
            for term in sorted({o["term"] for o in found}):
                where.setdefault(term, []).append(doc)
        scope = {"queries": all_queries, "documents": all_documents, "occurrences": where}
        scopes[f"{split}_scope.json"] = json.dumps(scope, indent=0) + "\n"
    return write_prepared(out, CORPUS, options, manifests, texts=scopes)


def _all_ids(lst: Path) -> list[str]:
    """Every audio id a language key list names, whatever its language (no audio is read)."""
    return [
        Path(line.split()[0]).stem for line in lst.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _read_list(root: Path, lst: Path, language: str) -> list[dict]:
    require_file(lst, "QUESST14 language key list")
    records = []
    for lineno, line in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise EvalkitError(f"{lst}:{lineno}: expected '<audio path> <language>', got {line!r}.")
        if parts[1] != language:
            continue
        candidates = [root / parts[0].split("/", 1)[1]] if "/" in parts[0] else []
        candidates.append(root / parts[0])
        audio = next((c for c in candidates if c.is_file()), candidates[0])
        if not audio.is_file():
            raise EvalkitError(
                f"{audio}: audio file listed in {lst}:{lineno} is missing. Re-extract the corpus."
            )
        records.append({"id": audio.stem, "path": str(audio), "duration": duration(audio), "speaker": ""})
    if not records:
        raise EvalkitError(f"{lst}: lists no {language!r} audio. Check the language name (e.g. nnenglish).")
    return records


def _read_rttm(rttm: Path) -> dict[str, list[dict]]:
    """Document id -> [{"term", "start", "end"}, ...] from the LEXEME lines."""
    found: dict[str, list[dict]] = {}
    for lineno, line in enumerate(rttm.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "LEXEME":
            continue
        term = next((f for f in fields[5:] if _QUERY_ID.match(f)), None)
        try:
            start, length = float(fields[3]), float(fields[4])
        except (IndexError, ValueError):
            term = None
        if term is None:
            raise EvalkitError(
                f"{rttm}:{lineno}: expected 'LEXEME <document> <channel> <onset> <duration> ... <query id> ...', "
                f"got {line!r}."
            )
        found.setdefault(fields[1], []).append(
            {"term": term, "start": round(start, 4), "end": round(start + length, 4)}
        )
    return found
