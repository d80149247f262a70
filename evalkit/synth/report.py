"""A trivial baseline per classification task, so the suite's difficulty is visible.

Logistic regression on utterance-mean MFCCs (13 kaldi MFCCs, mean and std
over frames): if this already scores ~100%, a task is too easy to tell
encoders apart; at chance, it may be hopeless.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchaudio

from evalkit.core.audio import SAMPLE_RATE, load_audio
from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import audio_path, read_manifest

# corpus -> how a record's class label is read
LABELS = {
    "ks": lambda r: r["label"],
    "ic": lambda r: f"{r['action']}|{r['object']}|{r['location']}",
    "sid": lambda r: r["speaker"],
    "er": lambda r: r["emotion"],
}


def utterance_mfcc(path: Path) -> np.ndarray:
    wav = torch.from_numpy(load_audio(path))[None]
    feats = torchaudio.compliance.kaldi.mfcc(wav * 32768, num_ceps=13, sample_frequency=SAMPLE_RATE)
    return torch.cat([feats.mean(0), feats.std(0)]).numpy()


def _features(manifest: Path) -> tuple[np.ndarray, list[dict]]:
    records = read_manifest(manifest)
    return np.stack([utterance_mfcc(audio_path(manifest, r)) for r in records]), records


def baseline_report(suite: Path) -> dict[str, dict]:
    """Test accuracy of MFCC-mean logistic regression per classification corpus, with chance level."""
    # deferred: scikit-learn is heavy and only this report needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    present = [c for c in LABELS if (suite / c / "train.jsonl").is_file()]
    if not present:
        raise EvalkitError(
            f"--report {suite}: {'no such folder' if not suite.is_dir() else 'no classification corpus there'} "
            f"(expected {', '.join(f'{c}/train.jsonl' for c in LABELS)}). Point it at a suite made by "
            "`evalkit synth --out DIR`."
        )
    rows = {}
    for corpus, label_of in LABELS.items():
        folder = suite / corpus
        if corpus not in present:
            continue
        x_tr, r_tr = _features(folder / "train.jsonl")
        x_te, r_te = _features(folder / "test.jsonl")
        y_tr, y_te = [label_of(r) for r in r_tr], [label_of(r) for r in r_te]
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        clf.fit(x_tr, y_tr)
        acc = float(np.mean(clf.predict(x_te) == np.array(y_te)))
        majority = Counter(y_tr).most_common(1)[0][1] / len(y_tr)
        rows[corpus] = {
            "accuracy": round(acc, 4),
            "chance": round(max(1 / len(set(y_tr)), majority), 4),
            "classes": len(set(y_tr)),
            "train": len(y_tr),
            "test": len(y_te),
        }
    return rows
