"""The benchmark harness: the paired ratio and its interval, and the summary of result files.
(No timing is asserted here: benchmarks are measured by `python -m bench`, never in tests.)"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main, summary
from bench.harness import ratio, table, write


def test_ratio_is_the_median_of_paired_rounds_with_its_interval():
    times = {"a": [2.0, 4.0, 2.2, 2.0, 2.1], "b": [1.0, 2.0, 1.0, 1.0, 1.0]}  # a round both slowed by load
    r = ratio(times, "a", "b")
    assert r.ratio == pytest.approx(2.0)  # per round 2, 2, 2.2, 2, 2.1: the slow round cancels
    assert r.low <= 2.0 <= r.high <= 2.2 and r.holds(2.0) and not r.holds(1.0)
    assert r.a_median_s == pytest.approx(2.1) and r.b_median_s == pytest.approx(1.0)


def test_summary_reports_targets_and_a_failed_aa_check(tmp_path):
    rows = [{"size": "tiny", "speed-up": 1.5}]
    result = {
        "title": "A vs B",
        "setup": "batch 2",
        "rows": rows,
        "targets": [{"what": "speed-up (tiny)", "target": ">= 3.7", "measured": 1.5, "met": False}],
        "aa": {"ratio": 1.4, "low": 1.2, "high": 1.6, "passed": False},
        "markdown": table(rows, ["size", "speed-up"]),
    }
    write("distill", result, quick=True, out=tmp_path)
    stored = json.loads((tmp_path / "distill.quick.json").read_text())
    assert {"cpu", "cores", "torch", "threads", "load_average"} <= set(stored["machine"])
    text = summary(quick=True, out=tmp_path).read_text()
    assert "| tiny | 1.5 |" in text
    assert "speed-up (tiny): 1.5 (target >= 3.7): missed" in text
    assert "DOES NOT hold 1.00" in text
    assert "not run (no summarymixing.quick.json)" in text
    assert (tmp_path / "summary.quick.png").is_file()


def test_cli_runs_a_benchmark_into_its_results_folder(tmp_path, capsys):
    """`python -m bench readme --quick` reads the committed record of the README commands (nothing timed)."""
    assert main(["readme", "--quick", "--out", str(tmp_path)]) == 0
    stored = json.loads((tmp_path / "readme.quick.json").read_text())
    assert [r["command"] for r in stored["rows"]] == ["main job", "tests"]
    assert stored["record matches the README"] is True
    assert "The README's two commands" in (tmp_path / "summary.quick.md").read_text()
    with pytest.raises(SystemExit):
        main(["nonesuch", "--out", str(tmp_path)])
    assert "unknown benchmark(s) nonesuch" in capsys.readouterr().err
