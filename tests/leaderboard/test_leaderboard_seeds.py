"""Results of several head seeds on the board: `mean ± sd` in every rendering, the mean in the score, and a
significance test that counts the spread between seeds (one-seed results are tested exactly as before)."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from leaderboard_data import ks_samples, write_task

from evalkit.core.results import write_result
from evalkit.leaderboard import build_leaderboard, collect
from evalkit.leaderboard.significance import load_item_stats, mark_column, paired_bootstrap
from evalkit.metrics.classification import accuracy

SUITE_DIR = "synthetic-smoke-seed0"


def write_seeds(root: Path, upstream: str, wrong: dict[int, int]) -> Path:
    """A KS result of several head seeds: seed s gets the first `wrong[s]` of 200 test items wrong, so
    the seeds' wrong items overlap (as runs of one model on one test set do)."""
    rows = {s: ks_samples(n) for s, n in wrong.items()}
    acc = {s: accuracy([r["ref"] for r in rs], [r["pred"] for r in rs]) for s, rs in rows.items()}
    path = write_task(root, upstream, "ks", rows[min(rows)])  # the one-seed file, then its seeds
    data = json.loads(path.read_text())
    data.pop("schema_version")
    mean = sum(acc.values()) / len(acc)
    sd = statistics.stdev(acc.values())
    data |= {
        "metrics": {"dev": {"accuracy": mean}, "test": {"accuracy": mean}},
        "metrics_sd": {"dev": {"accuracy": sd}, "test": {"accuracy": sd}},
        "seed": None,
        "seeds": {
            str(s): {
                "metrics": {"dev": {"accuracy": a}, "test": {"accuracy": a}},
                "ci95": {"test": {"accuracy": [a - 0.05, a + 0.05]}},
                "lr": 1e-3,
                "best_step": 20,
                "layer_weights": [0.2, 0.3, 0.5],
            }
            for s, a in acc.items()
        },
    }
    samples = [{"head": r["head"], "seed": s, **r} for s, rs in rows.items() for r in rs]
    write_result(path, data, samples)
    return path


@pytest.fixture()
def seeded(tmp_path):
    """fbank (one seed), `a` (seeds 10 and 30 items wrong: 90.0 ± 7.1 %) and `b` (26 and 46 wrong:
    82.0 ± 7.1 %): a and b differ by 8 points, less than a's seeds differ from each other (10)."""
    root = tmp_path / "results"
    write_task(root, "fbank", "ks", ks_samples(150), params=0)
    write_seeds(root, "a", {0: 10, 1: 30})
    write_seeds(root, "b", {0: 26, 1: 46})
    return root


def _column(root: Path):
    suites, warnings = collect(root)
    assert warnings == []
    return suites[SUITE_DIR].column("ks")


def test_a_gap_smaller_than_the_seed_spread_is_not_significant_but_one_seed_alone_is(seeded, tmp_path):
    column = _column(seeded)
    assert column["a"].value == pytest.approx(0.90) and column["b"].value == pytest.approx(0.82)
    marks = mark_column(column, n=1000)
    assert marks.mark["a"] == "best" and marks.mark["b"] == "tied"
    # one seed's run drawn per resample: b's seed 0 beats a's seed 1 (26 vs 30 wrong) in about a quarter
    assert 0.6 < marks.p_better["b"] < 0.9
    # the same models with one seed each (seed 0: 10 vs 26 wrong): b is significantly worse
    single = tmp_path / "single"
    write_task(single, "fbank", "ks", ks_samples(150), params=0)
    write_task(single, "a", "ks", ks_samples(10))
    write_task(single, "b", "ks", ks_samples(26))
    marks = mark_column(_column(single), n=1000)
    assert marks.mark["b"] == "" and marks.p_better["b"] > 0.99


def test_one_seed_entries_draw_the_items_they_always_drew(tmp_path):
    """The single-seed bootstrap is the one the board has always run: same items drawn, same p."""
    root = tmp_path / "results"
    write_task(root, "x", "ks", ks_samples(20))
    write_task(root, "y", "ks", ks_samples(24, flip_first=10))
    column = _column(root)
    a, b = load_item_stats(column["x"]), load_item_stats(column["y"])
    assert a.tables == [a.table]

    def before(a, b, n=500, seed=3):  # the test as it was written before seeds existed
        common = sorted(set(a.ids) & set(b.ids))
        ia, ib = {k: i for i, k in enumerate(a.ids)}, {k: i for i, k in enumerate(b.ids)}
        ta, tb = a.table[[ia[k] for k in common]], b.table[[ib[k] for k in common]]
        rng = np.random.default_rng(seed)
        wins = 0
        for _ in range(n):
            idx = rng.integers(0, len(common), len(common))
            wins += a.aggregate(ta[idx]) > b.aggregate(tb[idx])
        return wins / n

    assert paired_bootstrap(a, b, True, n=500, seed=3) == before(a, b)


def test_the_board_shows_mean_and_sd_in_every_rendering(seeded, tmp_path):
    out = tmp_path / "board"
    report = build_leaderboard(seeded, out, n_boot=300, plots=False)
    assert report.warnings == []
    folder = out / SUITE_DIR
    table = json.loads((folder / "leaderboard.json").read_text())
    rows = {r["upstream"]: r for r in table["rows"]}
    a = rows["a"]["cells"]["ks"]
    assert a["value"] == pytest.approx(0.90) and a["display"] == "90.00 ± 7.07" and a["mark"] == "best"
    assert a["detail"]["sd"] == pytest.approx(0.0707, abs=1e-4) and set(a["detail"]["seeds"]) == {"0", "1"}
    assert rows["fbank"]["cells"]["ks"]["display"] == "25.00"  # one seed: as before
    assert rows["b"]["cells"]["ks"]["mark"] == "tied"
    # the score uses the mean: 1000 x (0.90 - 0.25) / (1 - 0.25)
    assert rows["a"]["cells"]["score"]["value"] == pytest.approx(1000 * 0.65 / 0.75)
    md = (folder / "leaderboard.md").read_text()
    assert "**90.00 ± 7.07**" in md and "| 25.00 |" in md
    assert "standard deviation over head seeds" in md
    assert r"90.00 $\pm$ 7.07" in (folder / "leaderboard.tex").read_text()
    csv_rows = {
        r["upstream"]: r for r in csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text()))
    }
    assert float(csv_rows["a"]["ks:accuracy"]) == pytest.approx(0.90)
    assert (
        float(csv_rows["a"]["ks:sd"]) == pytest.approx(0.0707, abs=1e-4) and csv_rows["fbank"]["ks:sd"] == ""
    )
    page = (out / "index.html").read_text()
    assert "90.00 ± 7.07" in page and "<th>sd</th>" in page


def test_a_board_without_seeds_has_no_sd_columns(tmp_path):
    root = tmp_path / "results"
    write_task(root, "fbank", "ks", ks_samples(150), params=0)
    write_task(root, "a", "ks", ks_samples(10))
    build_leaderboard(root, tmp_path / "board", n_boot=100, plots=False)
    folder = tmp_path / "board" / SUITE_DIR
    assert "sd" not in (folder / "leaderboard.csv").read_text().splitlines()[0]
    assert "±" not in (folder / "leaderboard.md").read_text()
    assert "<th>sd</th>" not in (tmp_path / "board" / "index.html").read_text()


def test_seed_rows_that_do_not_match_the_result_are_refused(seeded, tmp_path):
    samples = seeded / "b" / "ks.samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows if r["seed"] == 0))
    marks = mark_column(_column(seeded), n=100)
    assert "b" not in marks.p_better and marks.mark["b"] == ""
    assert any("rows of head seeds 0 but ks.json has seeds 0, 1" in n for n in marks.notes)
    # seed 1's rows labelled seed 0 and the other way round: each seed's value is checked
    samples.write_text("".join(json.dumps({**r, "seed": 1 - r["seed"]}) + "\n" for r in rows))
    marks = mark_column(_column(seeded), n=100)
    assert any(
        "head seed 1's rows give accuracy = 0.87 but seeds.1 of ks.json reports 0.77" in n
        for n in marks.notes
    )


def test_a_mean_that_is_not_the_seeds_mean_is_skipped_by_name(seeded, tmp_path):
    path = seeded / "b" / "ks.json"
    data = json.loads(path.read_text())
    data["metrics"]["test"]["accuracy"] = 0.9
    path.write_text(json.dumps(data))
    suites, warnings = collect(seeded)
    assert ("b", "ks") not in suites[SUITE_DIR].entries
    assert any(str(path) in w and "is not the mean of its seeds' values" in w for w in warnings)


def test_an_empty_samples_file_is_a_note_not_a_traceback(tmp_path):
    """An empty samples file beside the best entry stopped the build with a numpy ValueError (exit 1)."""
    root = tmp_path / "results"
    write_task(root, "fbank", "ks", ks_samples(150), params=0)
    best = write_task(root, "a", "ks", ks_samples(10))
    best.with_name("ks.samples.jsonl").write_text("")
    marks = mark_column(_column(root), n=100)
    assert marks.mark == {"a": "best", "fbank": ""}
    assert any("no rows" in n and "ks.samples.jsonl" in n for n in marks.notes)
