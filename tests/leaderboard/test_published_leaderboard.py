"""The published leaderboard (`leaderboard/`, from one `evalkit run --profile full`) is exactly what its
committed result files build: editing a result without regenerating the tables fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.leaderboard import build_leaderboard
from evalkit.pipeline.plan import PUBLISHED

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "leaderboard"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    return out, build_leaderboard(PUBLISHED_DIR / "results", out, plots=False)


@pytest.mark.slow
def test_committed_tables_are_what_the_committed_results_build(rebuilt):
    out, report = rebuilt
    assert report.warnings == []
    assert report.suites == ["synthetic-default-v2-seed0"]
    for suite in report.suites:
        for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.json"):
            assert (out / suite / name).read_text() == (PUBLISHED_DIR / "board" / suite / name).read_text(), (
                name
            )


def test_stage_times_are_published_with_the_results():
    stages = json.loads((PUBLISHED_DIR / "stages.json").read_text())
    assert {"synth", "leaderboard", "total (last invocation)"} <= set(stages)
    assert all(f"pretrain {name}" in stages and f"eval {name}" in stages for name in PUBLISHED)
