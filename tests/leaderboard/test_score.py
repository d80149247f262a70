"""The SUPERB score, the suite score with stored references, and the mean-rank score."""

from __future__ import annotations

import json

import pytest

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.leaderboard.score import (
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
    assert list(superb_points(SUPERB_SOTA)) == [
        "PR",
        "KS",
        "IC",
        "SID",
        "ER",
        "ASR",
        "QbE",
        "SF",
        "ASV",
        "SD",
    ]


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
    m = {
        "PR": 5.41,
        "KS": 96.30,
        "IC": 98.34,
        "SID": 81.42,
        "ER": 64.92,
        "ASR": 6.42,
        "QbE": 7.36,
        "SF-F1": 88.53,
        "SF-CER": 25.20,
        "ASV": 5.11,
        "SD": 5.88,
    }
    by_hand = {
        "PR": (82.01 - 5.41) / (82.01 - 3.53),
        "KS": (96.30 - 41.38) / (96.66 - 41.38),
        "IC": (98.34 - 9.65) / (98.76 - 9.65),
        "SID": (81.42 - 20.06) / (90.3 - 20.06),
        "ER": (64.92 - 48.24) / (67.62 - 48.24),
        "ASR": (23.18 - 6.42) / (23.18 - 3.62),
        "QbE": 1.0,
        "SF": ((88.53 - 69.64) / (89.81 - 69.64) + (52.94 - 25.20) / (52.94 - 21.76)) / 2,
        "ASV": 1.0,
        "SD": (10.05 - 5.88) / (10.05 - 5.62),
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
    test = {
        "pr": {"per": 0.0541},
        "ks": {"accuracy": 0.963},
        "qbe": {"mtwv": 0.0736},
        "sf": {"slot_type_f1": 0.8853, "slot_value_cer": 0.2520},
    }
    pct = superb_metrics_from_results(test)
    assert pct == pytest.approx({"PR": 5.41, "KS": 96.3, "QbE": 7.36, "SF-F1": 88.53, "SF-CER": 25.2})
    # the generic Reference path (fractions) agrees with the official function (percent)
    fractions = {"pr": 0.0541, "ks": 0.963, "qbe": 0.0736, "sf": 0.8853, "sf/slot_value_cer": 0.2520}
    assert superb_reference().score(fractions, partial=True) == pytest.approx(superb_score(pct, partial=True))


# An independent reference for `superb_score`: the leaderboard site's own scoring code, transcribed.
# superbbenchmark/website-react, frontend/src/overall_metrics.js (score_normalizer, interpolation,
# task_aggregate) and frontend/src/Data.js `reference_points` ([FBANK, SOTA]; the QbE pair is
# [0.0058, 0.0736] scaled by 100 there): error rates enter as 100 - x, each metric maps linearly to
# 1000 / (SOTA - FBANK + 1e-12) * (x - FBANK), metrics sharing a task prefix (SF) are averaged, and
# the score is the mean over tasks; the "Paper" view shows Math.round of it.
# These are NOT published scores (the site computes them in the browser); no published row giving
# both the ten per-task numbers and the printed score was reachable, so this checks the formula and
# reference points against the site's code, not against a printed score.
_SITE_REFERENCES = {
    "PR_per": (17.989999999999995, 96.47),
    "KS_acc": (41.3826674, 96.66),
    "IC_acc": (9.649354219, 98.76),
    "SID_acc": (20.058174, 90.3),
    "ER_acc": (48.23672168, 67.62),
    "ASR_wer": (76.82, 96.38),
    "QbE_mtwv": (0.58, 7.36),
    "SF_f1": (69.64, 89.81),
    "SF_cer": (47.06, 78.24),
    "SV_eer": (90.44, 94.89),
    "SD_der": (89.95, 94.38),
}
_SITE_KEYS = dict(zip(SUPERB_FBANK, _SITE_REFERENCES))  # PR -> PR_per, ..., ASV -> SV_eer, SD -> SD_der


def _leaderboard_site_score(metrics):
    by_task = {}
    for key, accessor in _SITE_KEYS.items():
        value = metrics[key]
        if accessor.split("_")[1] in ("per", "wer", "cer", "eer", "der"):
            value = 100 - value
        fbank, sota = _SITE_REFERENCES[accessor]
        by_task.setdefault(accessor.split("_")[0], []).append(1000 / (sota - fbank + 1e-12) * (value - fbank))
    return sum(sum(p) / len(p) for p in by_task.values()) / len(by_task)


# Per-task numbers of rows on the public leaderboard, as the site stores them (QbE = MTWV x 100):
# superbbenchmark/superbbenchmark.github.io, src/data/public.json (the SUPERB paper's rows and
# community submissions). Order: PR KS IC SID ER ASR QbE SF-F1 SF-CER ASV SD.
_LEADERBOARD_ROWS = {
    "FBANK": (82.01, 41.3826674, 9.649354219, 20.058174, 48.23672168, 23.18, 0.58, 69.64, 52.94, 9.56, 10.05),
    "TERA": (49.17, 89.48, 58.42, 57.57, 56.27, 18.17, 0.13, 67.5, 54.17, 15.89, 9.96),
    "wav2vec 2.0 Base": (5.74, 96.23, 92.35, 75.18, 63.43, 6.43, 2.33, 88.3, 24.77, 6.02, 6.08),
    "HuBERT Base": (5.41, 96.3, 98.34, 81.42, 64.92, 6.42, 7.36, 88.53, 25.2, 5.11, 5.88),
    "HuBERT Large": (3.53, 95.29, 98.76, 90.33, 67.62, 3.62, 3.53, 89.81, 21.76, 5.98, 5.75),
    "DistilHuBERT": (16.27, 95.98, 94.99, 73.54, 63.02, 13.37, 5.11, 82.57, 35.59, 8.55, 6.19),
    "WavLM Large": (3.06, 97.86, 99.31, 95.49, 70.62, 3.44, 8.86, 92.21, 18.36, 3.77, 3.24),
}


@pytest.mark.parametrize("name", sorted(_LEADERBOARD_ROWS))
def test_agrees_with_the_leaderboard_sites_scoring_code(name):
    metrics = dict(zip(SUPERB_FBANK, _LEADERBOARD_ROWS[name]))
    site = _leaderboard_site_score(metrics)
    # Our FBANK points are the site's rounded to two decimals (KS 41.3826674 -> 41.38, IC, SID, ER);
    # on these rows that moves the score by at most 0.02 points, so 0.05 bounds it and the integer
    # the leaderboard prints is the same.
    assert superb_score(metrics) == pytest.approx(site, abs=0.05)
    assert round(superb_score(metrics)) == round(site)


def _fbank_result(task, primary, value, version=1, extra=None):
    test = {primary: value, **(extra or {})}
    return {"primary_metric": primary, "metrics": {"test": test}, "task_version": version}


def test_suite_reference_from_fbank_uses_perfect_values_and_is_stable(tmp_path):
    fbank = {
        "ks": _fbank_result("ks", "accuracy", 0.4),
        "pr": _fbank_result("pr", "per", 0.8),
        "sf": _fbank_result("sf", "slot_type_f1", 0.5, extra={"slot_value_cer": 0.6, "wer": 0.9}),
    }
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
    bad.write_text(
        json.dumps({"suite": "x", "fbank": {"ks": 0.4}, "best": {"ks": "one"}, "metric": {"ks": "a"}})
    )
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
