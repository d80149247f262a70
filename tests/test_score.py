"""The SUPERB score, the suite score with stored references, and the mean-rank score."""

from __future__ import annotations

import json

import pytest

from evalkit.errors import ConfigError, EvalkitError
from evalkit.score import (
    REFERENCES_DIR,
    SUPERB_FBANK,
    SUPERB_SOTA,
    Reference,
    load_reference,
    normalized_points,
    rank_score,
    reference_from_fbank,
    stored_reference,
    superb_metrics_from_results,
    superb_points,
    superb_reference,
    superb_score,
)


def test_fbank_scores_zero_and_sota_one_thousand_exactly():
    assert superb_score(SUPERB_FBANK) == 0.0
    assert superb_score(SUPERB_SOTA) == 1000.0
    assert set(superb_points(SUPERB_SOTA).values()) == {1000.0}
    assert list(superb_points(SUPERB_SOTA)) == ["PR", "KS", "IC", "SID", "ER", "ASR", "QbE", "SF", "ASV", "SD"]


def test_hand_worked_points_both_directions():
    # KS (higher is better): 41.38 -> 96.66; 69.02 is the midpoint -> 500 points.
    assert normalized_points(69.02, 41.38, 96.66) == pytest.approx(500.0)
    # PR (lower is better): 82.01 -> 3.53; PER 42.77 is the midpoint -> 500 points, improving is positive.
    assert normalized_points(42.77, 82.01, 3.53) == pytest.approx(500.0)
    assert normalized_points(3.0, 82.01, 3.53) > 1000  # beyond SOTA: scores may leave [0, 1000]
    assert normalized_points(90.0, 82.01, 3.53) < 0


def test_slot_filling_metrics_are_averaged_before_the_task_mean():
    metrics = dict(SUPERB_SOTA)
    metrics["SF-CER"] = SUPERB_FBANK["SF-CER"]  # SF: F1 at SOTA (1000), CER at FBANK (0) -> SF = 500
    points = superb_points(metrics)
    assert points["SF"] == pytest.approx(500.0)
    # 9 tasks at 1000 and SF at 500, over 10 tasks (not 11 metrics): 950, not 11000/11 - 1000/11
    assert superb_score(metrics) == pytest.approx(950.0)


def test_a_made_up_model_by_hand():
    m = {"PR": 5.41, "KS": 96.30, "IC": 98.34, "SID": 81.42, "ER": 64.92, "ASR": 6.42, "QbE": 7.36,
         "SF-F1": 88.53, "SF-CER": 25.20, "ASV": 5.11, "SD": 5.88}
    by_hand = {
        "PR": (82.01 - 5.41) / (82.01 - 3.53), "KS": (96.30 - 41.38) / (96.66 - 41.38),
        "IC": (98.34 - 9.65) / (98.76 - 9.65), "SID": (81.42 - 20.06) / (90.3 - 20.06),
        "ER": (64.92 - 48.24) / (67.62 - 48.24), "ASR": (23.18 - 6.42) / (23.18 - 3.62), "QbE": 1.0,
        "SF": ((88.53 - 69.64) / (89.81 - 69.64) + (52.94 - 25.20) / (52.94 - 21.76)) / 2,
        "ASV": 1.0, "SD": (10.05 - 5.88) / (10.05 - 5.62),
    }
    assert superb_points(m) == pytest.approx({k: 1000 * v for k, v in by_hand.items()})
    assert superb_score(m) == pytest.approx(100 * sum(by_hand.values()))


def test_missing_tasks_raise_unless_partial():
    metrics = {k: v for k, v in SUPERB_SOTA.items() if k not in ("SD", "ASV")}
    with pytest.raises(EvalkitError, match="ASV, SD"):
        superb_score(metrics)
    assert superb_score(metrics, partial=True) == 1000.0
    assert set(superb_points(metrics, partial=True)) == set(superb_points(SUPERB_SOTA)) - {"ASV", "SD"}
    with pytest.raises(EvalkitError, match="unknown SUPERB key"):
        superb_score({**SUPERB_SOTA, "XYZ": 1.0})


def test_results_in_fractions_map_onto_the_official_score():
    test = {"pr": {"per": 0.0541}, "ks": {"accuracy": 0.963}, "qbe": {"mtwv": 0.0736},
            "sf": {"slot_type_f1": 0.8853, "slot_value_cer": 0.2520}}
    pct = superb_metrics_from_results(test)
    assert pct == pytest.approx({"PR": 5.41, "KS": 96.3, "QbE": 7.36, "SF-F1": 88.53, "SF-CER": 25.2})
    # the generic Reference path (fractions) agrees with the official function (percent)
    fractions = {"pr": 0.0541, "ks": 0.963, "qbe": 0.0736, "sf": 0.8853, "sf/slot_value_cer": 0.2520}
    assert superb_reference().score(fractions, partial=True) == pytest.approx(superb_score(pct, partial=True))


def _fbank_result(task, primary, value, version=1, extra=None):
    test = {primary: value, **(extra or {})}
    return {"primary_metric": primary, "metrics": {"test": test}, "task_version": version}


def test_suite_reference_from_fbank_uses_perfect_values_and_is_stable(tmp_path):
    fbank = {"ks": _fbank_result("ks", "accuracy", 0.4), "pr": _fbank_result("pr", "per", 0.8),
             "sf": _fbank_result("sf", "slot_type_f1", 0.5, extra={"slot_value_cer": 0.6, "wer": 0.9})}
    ref = reference_from_fbank("synthetic-smoke", fbank, seed=0)
    assert ref.best == {"ks": 1.0, "pr": 0.0, "sf": 1.0, "sf/slot_value_cer": 0.0}
    assert ref.metric["sf/slot_value_cer"] == "slot_value_cer"
    # fbank itself scores 0, a perfect model 1000; SF halves average first
    assert ref.score(ref.fbank) == 0.0
    assert ref.score(ref.best) == 1000.0
    model = {"ks": 0.7, "pr": 0.4, "sf": 0.75, "sf/slot_value_cer": 0.6}
    assert ref.points(model) == pytest.approx({"ks": 500.0, "pr": 500.0, "sf": 250.0})
    # round trip through the stored file format
    path = tmp_path / "synthetic-smoke.json"
    path.write_text(ref.to_json())
    back = stored_reference("synthetic-smoke", tmp_path)
    assert back == ref
    assert json.loads(path.read_text())["version"] == 1


def test_reference_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"suite": "x", "fbank": {"ks": 0.4}, "best": {"ks": "one"}, "metric": {"ks": "a"}}))
    with pytest.raises(ConfigError, match=r"x\.json.*'best'"):
        load_reference(bad)
    bad.write_text(json.dumps({"suite": "x", "fbank": {"ks": 0.4}, "best": {}, "metric": {}}))
    with pytest.raises(ConfigError, match="same entries"):
        load_reference(bad)
    assert stored_reference("no-such-suite", tmp_path) is None


def test_coinciding_reference_points_are_refused():
    ref = Reference("s", {"ks": 1.0}, {"ks": 1.0}, {"ks": "accuracy"})
    with pytest.raises(EvalkitError, match="coincide"):
        ref.score({"ks": 1.0})


@pytest.mark.parametrize("path", sorted(REFERENCES_DIR.glob("*.json")), ids=lambda p: p.name)
def test_stored_reference_files_are_well_formed(path):
    ref = load_reference(path)
    assert ref.suite == path.stem
    assert ref.score(ref.fbank) == 0.0 and ref.score(ref.best) == 1000.0


def test_rank_score_averages_ties_and_respects_direction():
    table = {"a": {"ks": 0.9, "pr": 0.2}, "b": {"ks": 0.9, "pr": 0.1}, "c": {"ks": 0.5, "pr": 0.3}}
    ranks = rank_score(table, {"ks": True, "pr": False})
    # KS: a and b tie for 1-2 -> 1.5 each, c 3; PR (lower better): b 1, a 2, c 3
    assert ranks == {"a": pytest.approx(1.75), "b": pytest.approx(1.25), "c": pytest.approx(3.0)}
    # an upstream missing a task is ranked on the tasks it has
    ranks = rank_score({"a": {"ks": 0.9}, "b": {"ks": 0.5, "pr": 0.1}}, {"ks": True, "pr": False})
    assert ranks == {"a": 1.0, "b": pytest.approx(1.5)}
