"""Scoring steps between a model's output and the metric: SD's threshold and median filter, QbE's normalisations."""

from pathlib import Path

import numpy as np
import torch

from evalkit.core.manifest import write_manifest
from evalkit.evaluation.kinds.diarization import Diarization, median_frames
from evalkit.evaluation.kinds.qbe import QbE
from evalkit.evaluation.task import load_task_file

ROOT = Path(__file__).resolve().parents[2]


def test_median_window_is_odd_and_about_the_asked_seconds():
    assert median_frames(0.11, 100.0) == 11  # s3prl's 11 frames of 10 ms
    assert median_frames(0.11, 25.0) == 3
    assert median_frames(0.11, 50.0) == 7  # round(5.5) = 6, made odd
    assert median_frames(0.0, 25.0) == 1


def _sd_recipe(tmp_path) -> Diarization:
    # 4 s at 100 frames/s: speaker a speaks 1.0-3.0 s, speaker b 2.5-4.0 s (overlap 2.5-3.0)
    segs = [[1.0, 3.0, "a"], [2.5, 4.0, "b"]]
    for split in ("train", "dev", "test"):
        write_manifest(
            tmp_path / "toy" / f"{split}.jsonl",
            [
                {"id": f"{split}{i}", "path": "x.wav", "duration": 4.0, "speaker": "a", "segments": segs}
                for i in range(3)
            ],
        )
    task = load_task_file(ROOT / "tasks" / "sd" / "task.yaml")
    task.corpus = "toy"
    recipe = Diarization(task, tmp_path, frame_rate=100.0)
    return recipe


def _probs(rng: np.random.Generator) -> np.ndarray:
    """Under-confident activity (0.45 where a speaker talks) with one-frame false alarms (0.9) every 20 frames."""
    p = np.full((400, 2), 0.05, dtype=np.float32)
    p[100:300, 0] = 0.45
    p[250:400, 1] = 0.45
    blips = np.arange(5, 100, 20)
    p[blips, rng.integers(0, 2, len(blips))] = 0.9
    return p


def test_sd_tune_picks_threshold_and_median_filter_on_dev(tmp_path):
    recipe = _sd_recipe(tmp_path)
    rng = np.random.default_rng(0)
    dev = {r["id"]: _probs(rng) for r in recipe.records("dev")}
    default_der = recipe.score("dev", dev)[0][0].compute()  # threshold 0.5, no filter: all speech missed
    assert default_der > 0.9
    chosen = recipe.tune(dev)
    assert chosen["threshold"] in (0.3, 0.4) and chosen["median_s"] == 0.11 and chosen["median_frames"] == 11
    assert chosen["dev_by_setting"]["threshold 0.5, median 0 s"] == default_der
    metrics, rows = recipe.score("test", {r["id"]: _probs(rng) for r in recipe.records("test")}, chosen)
    assert metrics[0].compute() < 0.01  # blips filtered out, speech found, overlap kept
    assert rows[0]["pred"] == [[1.0, 3.0, 0], [2.5, 4.0, 1]]


def test_sd_predict_keeps_only_valid_frames():
    recipe = Diarization.__new__(Diarization)
    out = torch.zeros(2, 6, 2)
    probs = recipe.predict(out, torch.tensor([6, 4]))
    assert [p.shape for p in probs] == [(6, 2), (4, 2)] and np.allclose(probs[0], 0.5)


class _Feats:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def get(self, utt_id: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[utt_id])[None]  # one layer


def _qbe_recipe(tmp_path, rng) -> tuple[QbE, dict[str, np.ndarray]]:
    """Three terms (random 8-frame patterns); document j says term j inside noise."""
    terms = [rng.normal(size=(8, 6)) for _ in range(3)]
    recs, arrays = [], {}
    for t, pattern in enumerate(terms):
        recs.append(
            {
                "id": f"q{t}",
                "path": "x.wav",
                "duration": 1.0,
                "speaker": "s",
                "role": "query",
                "term": f"t{t}",
            }
        )
        arrays[f"q{t}"] = pattern + 0.1 * rng.normal(size=pattern.shape)
    for j in range(5):
        doc = rng.normal(size=(40, 6))
        occ = []
        if j < 3:
            doc[10:18] = terms[j]
            occ = [{"term": f"t{j}"}]
        recs.append(
            {
                "id": f"d{j}",
                "path": "x.wav",
                "duration": 2.0,
                "speaker": "s",
                "role": "document",
                "occurrences": occ,
            }
        )
        arrays[f"d{j}"] = doc
    write_manifest(tmp_path / "qbe" / "dev.jsonl", recs)
    task = load_task_file(ROOT / "tasks" / "qbe" / "task.yaml")
    return QbE(task, tmp_path), arrays


def test_qbe_scores_are_z_normalised_per_query_and_find_the_term(tmp_path):
    recipe, arrays = _qbe_recipe(tmp_path, np.random.default_rng(0))
    scores = recipe.pair_scores("dev", recipe.layer_scores("dev", _Feats(arrays), [0])[0])
    table = np.array([[scores[(f"q{t}", f"d{j}")] for j in range(5)] for t in range(3)])
    assert np.allclose(table.mean(1), 0) and np.allclose(table.std(1), 1)
    assert list(table.argmax(1)) == [0, 1, 2]


def test_qbe_scores_ignore_a_dimension_s_scale_and_offset(tmp_path):
    # Standardising each dimension over the split first: one loud dimension cannot swamp cosine distance
    recipe, arrays = _qbe_recipe(tmp_path, np.random.default_rng(1))
    scale, shift = np.array([1000.0, 1, 1, 1, 1, 0.01]), np.array([50.0, 0, 0, -3, 0, 0])
    before = recipe.layer_scores("dev", _Feats(arrays), [0])[0]
    after = recipe.layer_scores("dev", _Feats({k: v * scale + shift for k, v in arrays.items()}), [0])[0]
    assert np.allclose(before, after, atol=1e-6)


def test_sd_in_frames_and_selected_on_test_as_a_labelled_extra(tmp_path):
    """s3prl's median filters are frames (1 and 11 at the upstream's rate); SUPERB's reported DER, the grid's
    best on test, is kept beside the dev-selected one, never in its place."""
    recipe = _sd_recipe(tmp_path)
    recipe.task.labels = {"speakers": 2, "median_frames": [1, 11]}
    recipe = Diarization(recipe.task, tmp_path, frame_rate=50.0)
    assert recipe.windows == [(None, 1), (None, 11)]
    rng = np.random.default_rng(0)
    dev = {r["id"]: _probs(rng)[1::2] for r in recipe.records("dev")}
    chosen = recipe.tune(dev)
    assert chosen["median_frames"] == 11 and chosen["median_s"] == 0.22
    assert "threshold 0.3, median 11 frames" in chosen["dev_by_setting"]
    test = {r["id"]: _probs(rng)[1::2] for r in recipe.records("test")}
    extra = recipe.selected_on_test(test)
    values = [
        recipe.score("test", test, {"threshold": t, "median_frames": k})[0][0].compute()
        for t in (0.3, 0.4, 0.5, 0.6, 0.7)
        for k in (1, 11)
    ]
    assert extra["der"] == min(values) and "chosen on test" in extra["note"]
