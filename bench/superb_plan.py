"""What the faithful SUPERB run (the ten `*_superb` tasks, s3prl's recipes) costs for HuBERT Base on a machine.

The real corpora are not on this machine, and `evalkit eval --plan` needs only their manifests' declared
durations (no audio is read), so this writes manifests of SUPERB's sizes with made-up records: as many
utterances as each split has, durations drawn around its published mean, transcripts, phones, labels,
trials and speaker turns of realistic lengths. Then it saves a randomly initialised HuBERT Base
(transformers' HubertConfig defaults; the same compute as the trained model) as a transformers folder and
runs `evalkit eval --upstream hf:<it> --plan` on every faithful task: a calibration of the upstream's
extraction speed and of each task's training step on this machine, and the table of what the run would
take. The sizes (below, per corpus) come from the corpora's published statistics, not from the corpora.

    python bench/superb_plan.py --out /tmp/superb-plan [--device cpu|cuda]

Nothing here runs in CI (the calibration runs HuBERT Base and the full-size heads).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# split -> (utterances, mean seconds); published statistics of each corpus as SUPERB splits it
SIZES = {
    # LibriSpeech train-clean-100 / dev-clean / test-clean: 28,539 / 2,703 / 2,620 utterances, 100.6 / 5.4 / 5.4 h
    "librispeech": {"train": (28539, 12.69), "dev": (2703, 7.19), "test": (2620, 7.42)},
    # Speech Commands v0.01: 51,088 train and 6,798 validation words (1 s), the 3,081-file test archive
    "speech_commands": {"train": (51088, 0.98), "dev": (6798, 0.98), "test": (3081, 1.0)},
    # Fluent Speech Commands: 23,132 / 3,118 / 3,793 utterances, 19 h in all
    "fluent_speech_commands": {"train": (23132, 2.28), "dev": (3118, 2.28), "test": (3793, 2.28)},
    # VoxCeleb1 identification split: 138,361 / 6,904 / 8,251 utterances, 8.2 s on average
    "voxceleb1_sid": {"train": (138361, 8.2), "dev": (6904, 8.2), "test": (8251, 8.2)},
    # VoxCeleb1 verification: 148,642 dev-set utterances (2% of speakers held out as evalkit's dev), 4,874 test
    "voxceleb1_asv": {"train": (145669, 8.2), "dev": (2973, 8.2), "test": (4874, 8.2)},
    # Audio SNIPS: 8 / 4 / 4 voices x 13,084 / 700 / 700 SNIPS NLU queries
    "snips": {"train": (104672, 2.9), "dev": (2800, 2.9), "test": (2800, 2.9)},
    # Libri2Mix (2 speakers, 16 kHz, max): train-100 13,900 mixtures (58 h), dev and test 3,000 each (11 h)
    "libri2mix": {"train": (13900, 15.0), "dev": (3000, 13.2), "test": (3000, 13.2)},
}
IEMOCAP_SESSIONS = (1085, 1023, 1151, 1031, 1241)  # 5,531 utterances of neu/hap(+exc)/ang/sad, 4.55 s mean
QUESST = {"documents": (12492, 6.6), "dev": (560, 1.0), "test": (555, 1.0)}  # all languages: an upper bound
ASV_TRIALS = 37611  # veri_test2.txt
ARPABET = [f"{p}{s}" for p in "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split() for s in "012"] + (
    "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
)


def durations(rng: np.random.Generator, n: int, mean: float, low: float = 0.5) -> np.ndarray:
    """`n` durations around `mean` (a gamma of shape 4), at least `low`, rounded to 10 ms."""
    return np.maximum(low, rng.gamma(4.0, mean / 4.0, n)).round(2)


def words(rng: np.random.Generator, seconds: float) -> str:
    """A transcript of about 2.7 words a second (LibriSpeech's rate), words of 3-7 letters."""
    n = max(1, int(round(2.7 * seconds)))
    return " ".join("".join(rng.choice(list("abcdefghijklmnoprstuwy"), rng.integers(3, 8))) for _ in range(n))


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def base(prefix: str, i: int, seconds: float, speaker: str = "s") -> dict:
    return {"id": f"{prefix}{i}", "path": f"{prefix}{i}.wav", "duration": float(seconds), "speaker": speaker}


def make_manifests(root: Path, seed: int = 0) -> None:
    """Every faithful task's manifests (and trials, scope files) under `root`, as the preparers lay them out."""
    rng = np.random.default_rng(seed)
    for corpus in (librispeech, speech_commands, fluent, voxceleb1, iemocap, snips, libri2mix, quesst14):
        corpus(rng, root)


def librispeech(rng: np.random.Generator, root: Path) -> None:
    for split, (n, mean) in SIZES["librispeech"].items():
        recs = []
        for i, d in enumerate(durations(rng, n, mean, low=1.0)):
            text = words(rng, d)
            arpabet = list(rng.choice(ARPABET, max(1, int(round(11 * d)))))
            recs.append(base(f"ls-{split}-", i, d, f"spk{i % 251}") | {"text": text, "arpabet": arpabet})
        write(root / "librispeech" / f"{split}.jsonl", recs)


def speech_commands(rng: np.random.Generator, root: Path) -> None:
    labels = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_"]
    noise = [
        base("noise-", k, d) | {"label": "_silence_"}
        for k, d in enumerate((95.0, 61.0, 61.0, 61.0, 61.0, 60.0))
    ]
    for split, (n, mean) in SIZES["speech_commands"].items():
        recs = [
            base(f"ks-{split}-", i, min(1.0, d), f"spk{i % 1800}") | {"label": labels[i % 11]}
            for i, d in enumerate(durations(rng, n, mean))
        ]
        name = {"train": "train_s3prl", "dev": "dev_s3prl"}.get(split, split)
        write(root / "speech_commands" / f"{name}.jsonl", recs + (noise if split != "test" else []))


def fluent(rng: np.random.Generator, root: Path) -> None:
    for split, (n, mean) in SIZES["fluent_speech_commands"].items():
        recs = [
            base(f"ic-{split}-", i, d, f"spk{i % 97}")
            | {"action": f"a{i % 6}", "object": f"o{i % 14}", "location": f"l{i % 4}"}
            for i, d in enumerate(durations(rng, n, mean))
        ]
        write(root / "fluent_speech_commands" / f"{split}.jsonl", recs)


def voxceleb1(rng: np.random.Generator, root: Path) -> None:
    for split, (n, mean) in SIZES["voxceleb1_sid"].items():
        recs = [
            base(f"sid-{split}-", i, d, f"id{i % 1251}")
            for i, d in enumerate(durations(rng, n, mean, low=4.0))
        ]
        write(root / "voxceleb1_sid" / f"{split}.jsonl", recs)
    for split, (n, mean) in SIZES["voxceleb1_asv"].items():
        speakers = {"train": 1187, "dev": 24, "test": 40}[split]
        recs = [
            base(f"asv-{split}-", i, d, f"id{split}{i % speakers}")
            for i, d in enumerate(durations(rng, n, mean, low=4.0))
        ]
        write(root / "voxceleb1_asv" / f"{split}.jsonl", recs)
        if split != "train":
            pairs = rng.integers(0, n, (ASV_TRIALS if split == "test" else 3000, 2))
            lines = [f"{k % 2} {recs[a]['id']} {recs[b]['id']}\n" for k, (a, b) in enumerate(pairs)]
            (root / "voxceleb1_asv" / f"{split}_trials.txt").write_text("".join(lines))


def iemocap(rng: np.random.Generator, root: Path) -> None:
    emotions = ["neutral", "happy", "angry", "sad"]
    sessions = {
        s: [
            base(f"er{s}-", i, d, f"Ses0{s}_{'FM'[i % 2]}") | {"emotion": emotions[i % 4], "fold": s}
            for i, d in enumerate(durations(rng, n, 4.55))
        ]
        for s, n in enumerate(IEMOCAP_SESSIONS, 1)
    }
    for k in sessions:
        rest = [r for s, recs in sessions.items() if s != k for r in recs]
        cut = int(0.8 * len(rest))  # s3prl's 80/20 split of the other sessions
        write(root / "iemocap" / f"fold{k}" / "train_s3prl.jsonl", rest[:cut])
        write(root / "iemocap" / f"fold{k}" / "dev_s3prl.jsonl", rest[cut:])
        write(root / "iemocap" / f"fold{k}" / "test.jsonl", sessions[k])


def snips(rng: np.random.Generator, root: Path) -> None:
    for split, (n, mean) in SIZES["snips"].items():
        recs = []
        for i, d in enumerate(durations(rng, n, mean)):
            text = words(rng, d)
            first = text.find(" ") if " " in text else len(text)  # the first word is a slot value
            slots = [{"start": 0, "end": first, "type": f"slot{i % 39}"}]
            recs.append(base(f"sf-{split}-", i, d, f"v{i % 16}") | {"text": text, "slots": slots})
        write(root / "snips" / f"{split}.jsonl", recs)


def libri2mix(rng: np.random.Generator, root: Path) -> None:
    for split, (n, mean) in SIZES["libri2mix"].items():
        recs = []
        for i, d in enumerate(durations(rng, n, mean, low=3.0)):
            turns = [[0.0, round(0.7 * d, 2), f"a{i}"], [round(0.3 * d, 2), float(d), f"b{i}"]]
            recs.append(base(f"sd-{split}-", i, d) | {"segments": turns})
        write(root / "libri2mix" / f"{split}.jsonl", recs)


def quesst14(rng: np.random.Generator, root: Path) -> None:
    n_docs, mean = QUESST["documents"]
    for split in ("dev", "test"):
        docs = [
            base("doc-", i, d) | {"role": "document", "text": "", "occurrences": []}
            for i, d in enumerate(durations(rng, n_docs, mean))
        ]
        n, q_mean = QUESST[split]
        queries = [
            base(f"q{split}-", i, d) | {"role": "query", "term": f"q{split}-{i}"}
            for i, d in enumerate(durations(rng, n, q_mean, low=0.3))
        ]
        for i, q in enumerate(queries):  # each query occurs in two documents
            for j in (i, i + n):
                docs[j % n_docs]["occurrences"].append({"term": q["term"], "start": 0.5, "end": 1.0})
        write(root / "quesst14" / f"{split}.jsonl", queries + docs)
        scope = {
            "queries": [q["id"] for q in queries],
            "documents": [d["id"] for d in docs],
            "occurrences": {},
        }
        (root / "quesst14" / f"{split}_scope.json").write_text(json.dumps(scope))


def random_hubert_base(folder: Path) -> Path:
    """A randomly initialised HuBERT Base saved as a transformers folder (`hf:` reads it; nothing downloaded)."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    HubertModel(HubertConfig()).save_pretrained(folder)
    return folder


FAITHFUL = (
    "pr_superb,asr_superb,ks_superb,qbe_superb,ic_superb,sf_superb,sid_superb,asv_superb,sd_superb,"
    + ",".join(f"er_superb_fold{k}" for k in range(1, 6))
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", default=FAITHFUL)
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "libri2mix" / "test.jsonl").is_file():
        make_manifests(data)
    model = args.out / "hubert-base-random"
    if not (model / "config.json").is_file():
        random_hubert_base(model)
    cmd = [
        sys.executable,
        "-m",
        "evalkit",
        "eval",
        "--upstream",
        f"hf:{model}",
        "--tasks",
        args.tasks,
        "--data",
        str(data),
        "--output",
        str(args.out / "results"),
        "--device",
        args.device,
        "--plan",
    ]
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
