"""VoxCeleb1 for speaker identification (SID) and verification (ASV): two preparers.

The two tasks split the corpus differently, so each has its own function and
its own output folder:

* `prepare_voxceleb1_sid`: train/dev/test from `iden_split.txt`, whose lines
  "<1|2|3> id10001/1zcIwhmdeo4/00001.wav" mean train/dev/test (1,251 speakers
  in all three splits; the speaker is the label).
* `prepare_voxceleb1_asv`: test = every utterance named in the trial list
  (`veri_test2.txt`, the cleaned list SUPERB uses, else `veri_test.txt`),
  train = every utterance of the speakers that no trial mentions (VoxCeleb1
  dev). Trials are written to `test_trials.txt` as "<1|0> <enroll id> <test
  id>" with manifest ids. There is no dev split, as in SUPERB.

Audio is looked up under `<src>/wav/` (dev and test archives extracted into
one tree) and under `<src>/dev/wav/` and `<src>/test/wav/` (s3prl's layout);
metadata files are looked up in `<src>/` and `<src>/meta/`.
Manifest ids are the relative path with "/" -> "-" and no extension.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.corpora.prep import duration, first_existing, is_prepared, manifest_paths, write_prepared
from evalkit.errors import EvalkitError

AUDIO_ROOTS = ("wav", "dev/wav", "test/wav", "vox1_dev_wav/wav", "vox1_test_wav/wav")
TRIAL_FILES = ("veri_test2.txt", "veri_test.txt")
SID_SPLITS = {"1": "train", "2": "dev", "3": "test"}


def prepare_voxceleb1_sid(src: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Write `<out>/{train,dev,test}.jsonl` for speaker identification."""
    src, out = Path(src).resolve(), Path(out)
    options = {"src": str(src)}
    if is_prepared(out, "voxceleb1_sid", options):
        return manifest_paths(out)
    split_file = _meta_file(src, ("iden_split.txt",), "VoxCeleb1 identification split")
    roots = _audio_roots(src)
    manifests: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for lineno, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in SID_SPLITS:
            raise EvalkitError(f"{split_file}:{lineno}: expected '<1|2|3> <id>/<video>/<n>.wav', got {line!r}.")
        manifests[SID_SPLITS[parts[0]]].append(_record(roots, parts[1], f"{split_file}:{lineno}"))
    for split, recs in manifests.items():
        if not recs:
            raise EvalkitError(f"{split_file}: no utterance is marked for {split}. Is this iden_split.txt?")
    return write_prepared(out, "voxceleb1_sid", options, manifests)


def prepare_voxceleb1_asv(
    src: str | os.PathLike, out: str | os.PathLike, trials: str | None = None
) -> dict[str, Path]:
    """Write `<out>/{train,test}.jsonl` and `<out>/test_trials.txt` for verification.

    `trials` names the trial list file (default: veri_test2.txt, else veri_test.txt).
    """
    src, out = Path(src).resolve(), Path(out)
    options = {"src": str(src), "trials": trials}
    if is_prepared(out, "voxceleb1_asv", options):
        return manifest_paths(out)
    trial_file = _meta_file(src, (trials,) if trials else TRIAL_FILES, "VoxCeleb1 verification trial list")
    roots = _audio_roots(src)
    test: dict[str, dict] = {}
    lines = []
    for lineno, line in enumerate(trial_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise EvalkitError(f"{trial_file}:{lineno}: expected '<1|0> <enroll wav> <test wav>', got {line!r}.")
        for rel in parts[1:]:
            if rel not in test:
                test[rel] = _record(roots, rel, f"{trial_file}:{lineno}")
        lines.append(f"{parts[0]} {test[parts[1]]['id']} {test[parts[2]]['id']}\n")
    if not lines:
        raise EvalkitError(f"{trial_file}: holds no trials. Re-fetch the trial list.")
    test_speakers = {r["speaker"] for r in test.values()}
    train = [
        _record(roots, rel, "the audio tree")
        for rel in _all_utterances(roots)
        if rel.split("/")[0] not in test_speakers
    ]
    if not train:
        raise EvalkitError(
            f"{src}: no training audio found: every speaker under {', '.join(map(str, roots))} is in the "
            "trial list. Extract the VoxCeleb1 dev archive (vox1_dev_wav) too."
        )
    manifests = {"train": train, "test": list(test.values())}
    return write_prepared(out, "voxceleb1_asv", options, manifests, {"test_trials.txt": "".join(lines)})


def _meta_file(src: Path, names: tuple[str, ...], what: str) -> Path:
    return first_existing([d / n for n in names for d in (src, src / "meta")], what)


def _audio_roots(src: Path) -> list[Path]:
    roots = [src / r for r in AUDIO_ROOTS if (src / r).is_dir()]
    if not roots:
        looked = ", ".join(str(src / r) for r in AUDIO_ROOTS)
        raise EvalkitError(f"VoxCeleb1 audio folder not found; looked for: {looked}. Extract the wav archives.")
    return roots


def _all_utterances(roots: list[Path]) -> list[str]:
    rels = {str(p.relative_to(root)).replace(os.sep, "/") for root in roots for p in root.glob("*/*/*.wav")}
    return sorted(rels)


def _record(roots: list[Path], rel: str, referenced_by: str) -> dict:
    for root in roots:
        audio = root / rel
        if audio.is_file():
            break
    else:
        raise EvalkitError(
            f"{roots[0] / rel}: audio file listed in {referenced_by} is missing (also looked under "
            f"{', '.join(map(str, roots[1:])) or 'no other folder'}). Re-extract the wav archives."
        )
    return {
        "id": rel.removesuffix(".wav").replace("/", "-"),
        "path": str(audio),
        "duration": duration(audio),
        "speaker": rel.split("/")[0],
    }
