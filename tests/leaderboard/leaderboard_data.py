"""Result files for leaderboard tests, written with the real writer and schema, metrics computed from the
samples with the real metric functions (so a samples file always reproduces its result's number)."""

from __future__ import annotations

import random
from pathlib import Path

from evalkit.core.results import write_result
from evalkit.metrics.classification import accuracy
from evalkit.metrics.detection import eer, mtwv
from evalkit.metrics.text import parse_tagged_slots, slot_type_f1, slot_value_cer, wer

KS_LABELS = ["yes", "no", "up", "down"]
SUITE = {"profile": "smoke", "seed": 0, "corpora": ["ks", "asr", "asv"]}


def task_config(task: str) -> dict:
    metric = {"ks": "accuracy", "asr": "wer", "asv": "eer", "sf": "slot_type_f1", "qbe": "mtwv"}[task]
    kind = {"ks": "classification", "asr": "ctc", "asv": "verification", "sf": "ctc", "qbe": "qbe"}[task]
    return {
        "name": task,
        "version": 1,
        "kind": kind,
        "corpus": task,
        "labels": {"unit": "chars"} if task == "asr" else {"unit": "slot_chars"} if task == "sf" else {},
        "heads": [{"name": "linear", "type": "mean_pool_linear", "args": {}}],
        "metrics": [{"name": metric, "primary": True, "options": {"beta": QBE_BETA} if task == "qbe" else {}}]
        + ([{"name": "slot_value_cer", "primary": False, "options": {}}] if task == "sf" else []),
    }


def ks_samples(n_wrong: int, n: int = 200, flip_first: int = 0) -> list[dict]:
    """n utterances; items [flip_first, flip_first + n_wrong) are wrong, the rest right."""
    rows = []
    for i in range(n):
        ref = KS_LABELS[i % 4]
        wrong = flip_first <= i < flip_first + n_wrong
        rows.append(
            {
                "head": "linear",
                "id": f"ks-test-{i:05d}",
                "ref": ref,
                "pred": KS_LABELS[(i + 1) % 4] if wrong else ref,
            }
        )
    return rows


def asr_samples(seed: int, error_rate: float, n: int = 40) -> list[dict]:
    rng, refs = random.Random(seed), random.Random(100)  # one test set; outputs differ by upstream
    words = ["play", "the", "music", "call", "laura", "now", "turn", "up"]
    rows = []
    for i in range(n):
        ref = " ".join(refs.choice(words) for _ in range(6))
        hyp = " ".join(w if rng.random() > error_rate else "uh" for w in ref.split())
        rows.append({"head": "linear", "id": f"asr-test-{i:05d}", "ref": ref, "pred": hyp})
    return rows


def sf_samples(seed: int, error_rate: float, n: int = 40) -> list[dict]:
    """Tagged transcripts ("play B-artist laura E-artist now"); a wrong slot gets another type and value."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ref = f"play B-artist laura E-artist now B-time {i} pm E-time"
        wrong = rng.random() < error_rate
        pred = f"play B-album lara E-album now B-time {i} pm E-time" if wrong else ref
        rows.append({"head": "linear", "id": f"sf-test-{i:05d}", "ref": ref, "pred": pred})
    return rows


def asv_samples(seed: int, separation: float, n: int = 120) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        rows.append(
            {
                "head": "linear",
                "enroll": f"spk{i % 7}-a",
                "test": f"spk{i}-b",
                "label": label,
                "score": round(rng.gauss(separation * label, 1.0), 6),
            }
        )
    return rows


QBE_BETA = 12.49


def qbe_samples(seed: int, separation: float, n_terms: int = 15, n_docs: int = 30) -> list[dict]:
    """Query-document pairs; each query is found with its own skill (its pairs are alike), scaled by
    `separation`; one test set (which documents hold which query) for every upstream."""
    rng, truth = random.Random(seed), random.Random(100)
    rows = []
    for q in range(n_terms):
        skill = separation * rng.uniform(0.3, 1.7)
        for d in range(n_docs):
            label = int(truth.random() < 0.15)
            score = round(rng.gauss(skill * label, 1.0), 6)
            rows.append(
                {"query": f"q{q}", "document": f"d{d}", "term": f"q{q}", "label": label, "score": score}
            )
    return rows


def write_task(
    root: Path,
    upstream: str,
    task: str,
    samples: list[dict],
    *,
    folder: str | None = None,
    version: int = 1,
    params: int = 1_000_000,
    pretraining=None,
    fingerprint: str | None = None,
    layer_weights: list[float] | None = None,
    name: str | None = None,
    suite: dict | None = None,
    protocol: str = "sweep",
    checkpoint: str | None = None,
) -> Path:
    """One result + samples file; `name` renames the task (e.g. a real-corpus variant), keeping its metric."""
    if task == "ks":
        value = accuracy([r["ref"] for r in samples], [r["pred"] for r in samples])
        metric = "accuracy"
    elif task == "asr":
        value = wer([r["ref"] for r in samples], [r["pred"] for r in samples])
        metric = "wer"
    elif task == "sf":
        refs, preds = ([parse_tagged_slots(r[k]) for r in samples] for k in ("ref", "pred"))
        value, metric = slot_type_f1(refs, preds), "slot_type_f1"
    elif task == "qbe":
        columns = ([r[k] for r in samples] for k in ("term", "score", "label"))
        value, metric = mtwv(*columns, beta=QBE_BETA), "mtwv"
    else:
        value = eer([r["score"] for r in samples], [r["label"] for r in samples])
        metric = "eer"
    cfg = task_config(task)
    cfg["version"] = version
    cfg["name"] = name or task
    weights = layer_weights or [0.2, 0.3, 0.5]
    metrics = {metric: value}
    if task == "sf":  # SUPERB scores SF on its slot-value CER too
        metrics["slot_value_cer"] = slot_value_cer(
            *([parse_tagged_slots(r[k]) for r in samples] for k in ("ref", "pred"))
        )
    result = {
        "metrics": {"dev": dict(metrics), "test": dict(metrics)},
        "ci95": {"test": {metric: [value * 0.9, value * 1.1]}},
        "primary_metric": metric,
        "higher_is_better": metric in ("accuracy", "slot_type_f1", "mtwv"),
        "head": "linear",
        "lr": 1e-3,
        "lr_grid": [1e-4, 1e-3],
        "protocol": protocol,
        "layer_weights": weights,
        "heads": {
            "linear": {
                "type": "mean_pool_linear",
                "lr": 1e-3,
                "best_step": 20,
                "steps": 40,
                "layer_weights": weights,
            }
        },
        "task": name or task,
        "upstream": upstream,
        "task_version": version,
        "task_config": cfg,
        "seed": 0,
        "suite": suite or SUITE,
        "upstream_info": {
            "name": upstream,
            "class": "X",
            "fingerprint": fingerprint or f"fp-{upstream}",
            "num_layers": len(weights) - 1,
            "hidden_size": 8,
            "frame_rate": 50.0,
            "parameters": params,
            "checkpoint": checkpoint,
            "pretraining": pretraining,
        },
        "wall_time_s": 1.0,
        "samples": {"train": 10, "dev": 10, "test": len(samples)},
    }
    folder = folder or upstream.replace("/", "_").replace("<", "_").replace(">", "_")
    path = Path(root) / folder / f"{name or task}.json"
    write_result(path, result, samples)
    return path


def make_results(root: Path, evil_name: str = "<script>alert(1)</script>") -> dict[str, str]:
    """Four upstreams: `best` (clearly best), `close` (1 of 200 KS items worse: tied with best), `weak`
    (clearly worse) and `fbank` (the score's zero); plus an upstream with a hostile name."""
    root = Path(root)
    write_task(root, "fbank", "ks", ks_samples(150), params=0)
    write_task(root, "fbank", "asr", asr_samples(1, 0.6), params=0)
    write_task(root, "fbank", "asv", asv_samples(1, 0.2), params=0)
    write_task(root, "best", "ks", ks_samples(10), params=94_700_000, pretraining={"gpu_hours": 12.5})
    write_task(root, "best", "asr", asr_samples(2, 0.1), params=94_700_000, pretraining={"gpu_hours": 12.5})
    write_task(root, "best", "asv", asv_samples(2, 3.0), params=94_700_000, pretraining={"gpu_hours": 12.5})
    write_task(root, "close", "ks", ks_samples(11), params=23_000_000)
    write_task(root, "close", "asr", asr_samples(3, 0.3), params=23_000_000)
    write_task(root, "weak", "ks", ks_samples(70), params=5_000_000)
    write_task(root, "weak", "asr", asr_samples(4, 0.5), params=5_000_000)
    write_task(root, evil_name, "ks", ks_samples(100), folder="evil", params=1)
    return {"evil": evil_name}
