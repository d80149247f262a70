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
  id>" with manifest ids. SUPERB has no dev split (s3prl scores every saved
  checkpoint on test); our recipe selects the learning rate on dev trials, so
  a seeded 2% of the training speakers (at least 2) is held out as `dev.jsonl`
  with balanced target / non-target trials in `dev_trials.txt`.

Audio is looked up under `<src>/wav/` (dev and test archives extracted into
one tree) and under `<src>/dev/wav/` and `<src>/test/wav/` (s3prl's layout);
metadata files are looked up in `<src>/` and `<src>/meta/`.
Manifest ids are the relative path with "/" -> "-" and no extension.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.corpora.prep import duration, first_existing, is_prepared, manifest_paths, write_prepared

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
            raise EvalkitError(
                f"{split_file}:{lineno}: expected '<1|2|3> <id>/<video>/<n>.wav', got {line!r}."
            )
        manifests[SID_SPLITS[parts[0]]].append(_record(roots, parts[1], f"{split_file}:{lineno}"))
    for split, recs in manifests.items():
        if not recs:
            raise EvalkitError(f"{split_file}: no utterance is marked for {split}. Is this iden_split.txt?")
    return write_prepared(out, "voxceleb1_sid", options, manifests)


def prepare_voxceleb1_asv(
    src: str | os.PathLike,
    out: str | os.PathLike,
    trials: str | None = None,
    dev_speakers: float = 0.02,
    dev_trials: int = 4000,
    seed: int = 0,
) -> dict[str, Path]:
    """Write `<out>/{train,dev,test}.jsonl` and `<out>/{dev,test}_trials.txt` for verification.

    `trials` names the trial list file (default: veri_test2.txt, else veri_test.txt).
    `dev_speakers` is the fraction of training speakers held out for dev (at
    least 2), `dev_trials` how many dev trials to draw (half target, half
    non-target, fewer if the held-out utterances do not allow as many), `seed`
    seeds both draws.
    """
    _check_asv_options(dev_speakers, dev_trials)
    src, out = Path(src).resolve(), Path(out)
    options = {
        "src": str(src),
        "trials": trials,
        "dev_speakers": dev_speakers,
        "dev_trials": dev_trials,
        "seed": seed,
    }
    if is_prepared(out, "voxceleb1_asv", options):
        return manifest_paths(out)
    trial_file = _meta_file(src, (trials,) if trials else TRIAL_FILES, "VoxCeleb1 verification trial list")
    roots = _audio_roots(src)
    test, lines = _read_trials(trial_file, roots)
    train = _asv_train(src, roots, {r["speaker"] for r in test.values()})
    train, dev = _hold_out_speakers(train, dev_speakers, random.Random(f"{seed}-voxceleb1-asv-dev-speakers"))
    by_speaker: dict[str, list[str]] = {}
    for r in dev:
        by_speaker.setdefault(r["speaker"], []).append(r["id"])
    drawn = balanced_trials(by_speaker, dev_trials, random.Random(f"{seed}-voxceleb1-asv-dev-trials"))
    texts = {
        "dev_trials.txt": "".join(f"{label} {a} {b}\n" for label, a, b in drawn),
        "test_trials.txt": "".join(lines),
    }
    manifests = {"train": train, "dev": dev, "test": list(test.values())}
    return write_prepared(out, "voxceleb1_asv", options, manifests, texts)


def _check_asv_options(dev_speakers: float, dev_trials: int) -> None:
    if not 0 < dev_speakers < 1:
        raise EvalkitError(
            f"dev_speakers must be a fraction between 0 and 1 (exclusive), got {dev_speakers}."
        )
    if dev_trials < 2:
        raise EvalkitError(f"dev_trials must be at least 2 (one target, one non-target), got {dev_trials}.")


def _read_trials(trial_file: Path, roots: list[Path]) -> tuple[dict[str, dict], list[str]]:
    """(test records by relative path, trial lines with manifest ids) from the trial list."""
    test: dict[str, dict] = {}
    lines = []
    for lineno, line in enumerate(trial_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise EvalkitError(
                f"{trial_file}:{lineno}: expected '<1|0> <enroll wav> <test wav>', got {line!r}."
            )
        for rel in parts[1:]:
            if rel not in test:
                test[rel] = _record(roots, rel, f"{trial_file}:{lineno}")
        lines.append(f"{parts[0]} {test[parts[1]]['id']} {test[parts[2]]['id']}\n")
    if not lines:
        raise EvalkitError(f"{trial_file}: holds no trials. Re-fetch the trial list.")
    return test, lines


def _asv_train(src: Path, roots: list[Path], test_speakers: set[str]) -> list[dict]:
    """Every utterance of the speakers that no trial mentions (VoxCeleb1 dev)."""
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
    return train


def _hold_out_speakers(
    records: list[dict], fraction: float, rng: random.Random
) -> tuple[list[dict], list[dict]]:
    """(train, dev): a seeded `fraction` of the speakers (at least 2) moved to dev, with all their utterances."""
    speakers = sorted({r["speaker"] for r in records})
    n_dev = max(2, round(fraction * len(speakers)))
    if len(speakers) < n_dev + 2:
        raise EvalkitError(
            f"only {len(speakers)} training speakers found; holding out {n_dev} for the dev trials needs at "
            "least 2 more for training. Extract the full VoxCeleb1 dev archive (vox1_dev_wav)."
        )
    held = set(rng.sample(speakers, n_dev))
    return [r for r in records if r["speaker"] not in held], [r for r in records if r["speaker"] in held]


def balanced_trials(
    by_speaker: dict[str, list[str]], n: int, rng: random.Random
) -> list[tuple[int, str, str]]:
    """Up to n // 2 target and as many non-target trials, distinct pairs, drawn with `rng`, shuffled.

    Target pairs are uniform over same-speaker utterance pairs, non-target
    pairs uniform over cross-speaker pairs. Drawing by rejection keeps this
    cheap for thousands of utterances (millions of pairs); when most pairs are
    wanted it enumerates them instead.
    """
    speakers = sorted(by_speaker)
    utts = {s: sorted(by_speaker[s]) for s in speakers}
    everyone = [(s, u) for s in speakers for u in utts[s]]
    per_speaker = [math.comb(len(utts[s]), 2) for s in speakers]
    n_target = sum(per_speaker)
    n_nontarget = math.comb(len(everyone), 2) - n_target
    k = min(n // 2, n_target, n_nontarget)

    def draw_target() -> tuple[str, str]:
        (s,) = rng.choices(speakers, weights=per_speaker)
        a, b = rng.sample(utts[s], 2)
        return (a, b) if a < b else (b, a)

    def draw_nontarget() -> tuple[str, str] | None:
        (sa, a), (sb, b) = rng.sample(everyone, 2)
        return None if sa == sb else ((a, b) if a < b else (b, a))

    def all_target() -> list[tuple[str, str]]:
        return [p for s in speakers for p in itertools.combinations(utts[s], 2)]

    def all_nontarget() -> list[tuple[str, str]]:
        return [
            (a, b) if a < b else (b, a)
            for (sa, a), (sb, b) in itertools.combinations(everyone, 2)
            if sa != sb
        ]

    target = _distinct_pairs(k, n_target, draw_target, all_target, rng)
    nontarget = _distinct_pairs(k, n_nontarget, draw_nontarget, all_nontarget, rng)
    trials = [(1, a, b) for a, b in target] + [(0, a, b) for a, b in nontarget]
    rng.shuffle(trials)
    return trials


def _distinct_pairs(k, total, draw, enumerate_all, rng: random.Random) -> list[tuple[str, str]]:
    if 2 * k >= total:
        return rng.sample(sorted(enumerate_all()), k)
    seen: set[tuple[str, str]] = set()
    out = []
    while len(out) < k:
        pair = draw()
        if pair is not None and pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def _meta_file(src: Path, names: tuple[str, ...], what: str) -> Path:
    return first_existing([d / n for n in names for d in (src, src / "meta")], what)


def _audio_roots(src: Path) -> list[Path]:
    roots = [src / r for r in AUDIO_ROOTS if (src / r).is_dir()]
    if not roots:
        looked = ", ".join(str(src / r) for r in AUDIO_ROOTS)
        raise EvalkitError(
            f"VoxCeleb1 audio folder not found; looked for: {looked}. Extract the wav archives."
        )
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
