"""The oracle topline on the board (issue 20): the score's upper point, a reference row never ranked.

A synthetic suite's score runs from FBANK (0) to what the oracle upstream (hidden states made from
the suite's ground truth) reaches within each task's budget (1000), as SUPERB's runs from FBANK to
the state of the art; where the oracle does not beat FBANK the metric's perfect value stays.
"""

from __future__ import annotations

import json

import pytest
from leaderboard_data import ks_samples, make_results, write_task

from evalkit.leaderboard import build_leaderboard
from evalkit.leaderboard.score import reference_from_fbank


def _table(out):
    return json.loads((out / "synthetic-smoke-seed0" / "leaderboard.json").read_text())


@pytest.fixture
def board(tmp_path):
    root = tmp_path / "results"
    make_results(root)
    write_task(root, "oracle", "ks", ks_samples(20), params=0)  # accuracy 0.9: KS's upper point
    out = tmp_path / "board"
    build_leaderboard(root, out, n_boot=50, plots=False)
    return _table(out)


def test_the_oracle_is_the_upper_point_of_the_score_where_it_beats_fbank(board):
    ref = board["reference"]
    assert ref["best"]["ks"] == pytest.approx(0.9)  # measured, not the perfect 1.0
    assert ref["best"]["asr"] == 0.0  # no oracle result: the perfect value
    assert "oracle" in ref["note"] and "ks" in ref["note"]
    rows = {r["upstream"]: r for r in board["rows"]}
    assert rows["oracle"]["cells"]["ks"]["value"] == pytest.approx(0.9)
    # best's KS accuracy 0.95 is above the topline: more than 1000 points on KS (unbounded, as SUPERB's)
    fbank_ks = ref["fbank"]["ks"]
    assert (0.95 - fbank_ks) / (0.9 - fbank_ks) > 1


def test_the_oracle_row_heads_the_table_unranked_and_unmarked(board):
    rows = board["rows"]
    assert rows[0]["upstream"] == "oracle"
    oracle = rows[0]["cells"]
    assert oracle["rank"]["value"] is None and oracle["rank"]["display"] == "topline"
    assert oracle["ks"]["mark"] == ""  # not compared with the models by the significance test
    ranked = [r["cells"]["rank"]["value"] for r in rows[1:]]
    assert all(isinstance(v, float) for v in ranked) and min(ranked) == 1.0  # models rank among themselves


def test_an_oracle_that_does_not_beat_fbank_leaves_the_perfect_value():
    def result(acc):
        return {"primary_metric": "accuracy", "metrics": {"test": {"accuracy": acc}}, "task_version": 1}

    ref = reference_from_fbank("s", {"ks": result(0.5)}, oracle_results={"ks": result(0.4)})
    assert ref.best["ks"] == 1.0 and "does not beat FBANK" in ref.note
