"""`evalkit eval --seeds`: every trained task trains once per head seed; the result holds the mean on top,
each seed's own numbers and their spread; another set of seeds is another result, not a resume."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.evaluation.task import load_task
from evalkit.leaderboard import build_leaderboard, collect
from evalkit.leaderboard.significance import load_item_stats


def evaluate(suite: Path, out: Path, *extra: str) -> int:
    args = ["eval", "--upstream", "fbank", "--data", str(suite), "--output", str(out)]
    return main([*args, "--steps", "4", "--protocol", "quick", *extra])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_seeds(smoke_suite, tmp_path_factory) -> Path:
    """fbank on KS and QbE with head seeds 0 and 1; returns the results folder."""
    out = tmp_path_factory.mktemp("seeds")
    assert evaluate(smoke_suite, out, "--tasks", "ks,qbe", "--seeds", "0,1") == 0
    return out


def test_each_seed_is_kept_and_the_mean_is_on_top(two_seeds, smoke_suite, tmp_path):
    res = json.loads((two_seeds / "fbank" / "ks.json").read_text())
    seeds = res["seeds"]
    assert list(seeds) == ["0", "1"] and res["seed"] is None
    for split in ("dev", "test"):
        values = [seeds[s]["metrics"][split]["accuracy"] for s in seeds]
        assert res["metrics"][split]["accuracy"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert res["metrics_sd"][split]["accuracy"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert res["heads"]["linear"]["metrics"][split] == res["metrics"][split]
    for record in seeds.values():
        assert {"metrics", "ci95", "lr", "best_step", "layer_weights", "heads"} <= set(record)
    low, high = res["ci95"]["test"]["accuracy"]
    assert low <= res["metrics"]["test"]["accuracy"] <= high
    samples = rows(two_seeds / "fbank" / "ks.samples.jsonl")
    by_seed = {s: [r for r in samples if r["seed"] == s] for s in (0, 1)}
    assert len(by_seed[0]) == len(by_seed[1]) == len(samples) // 2 > 0
    assert [r["pred"] for r in by_seed[0]] != [r["pred"] for r in by_seed[1]]  # the seeds trained apart
    # each seed's numbers and rows are what a run with that seed alone makes (seed 0 is KS's own seed)
    assert load_task("ks").seed == 0
    alone = tmp_path / "alone"
    assert evaluate(smoke_suite, alone, "--tasks", "ks", "--seeds", "1") == 0
    single = json.loads((alone / "fbank" / "ks.json").read_text())
    assert single["seed"] == 1 and "seeds" not in single and "metrics_sd" not in single
    assert single["metrics"] == seeds["1"]["metrics"] and single["ci95"] == seeds["1"]["ci95"]
    assert single["heads"]["linear"]["layer_weights"] == seeds["1"]["layer_weights"]
    assert [{k: v for k, v in r.items() if k != "seed"} for r in by_seed[1]] == rows(
        alone / "fbank" / "ks.samples.jsonl"
    )
    # QbE trains nothing: one run whatever the seeds, written as always
    qbe = json.loads((two_seeds / "fbank" / "qbe.json").read_text())
    assert "seeds" not in qbe and qbe["seed"] == load_task("qbe").seed
    assert all("seed" not in r for r in rows(two_seeds / "fbank" / "qbe.samples.jsonl"))


def test_other_seeds_are_a_clash_and_the_same_ones_resume(two_seeds, smoke_suite, capsys):
    result = two_seeds / "fbank" / "ks.json"
    before = result.read_bytes()
    assert evaluate(smoke_suite, two_seeds, "--tasks", "ks", "--seeds", "0") == 2
    err = capsys.readouterr().err
    assert f"{result}: this result was made differently: head seeds [0, 1] there, [0] now" in err
    assert evaluate(smoke_suite, two_seeds, "--tasks", "ks") == 2  # no --seeds: KS's own seed 0
    assert "head seeds [0, 1] there, [0] now" in capsys.readouterr().err
    assert evaluate(smoke_suite, two_seeds, "--tasks", "ks,qbe", "--seeds", "1,0") == 0
    assert capsys.readouterr().out.count("result exists") == 2
    assert result.read_bytes() == before


def test_the_board_shows_mean_and_sd_and_tests_the_seed_rows(two_seeds, tmp_path):
    res = json.loads((two_seeds / "fbank" / "ks.json").read_text())
    mean, sd = res["metrics"]["test"]["accuracy"], res["metrics_sd"]["test"]["accuracy"]
    build_leaderboard(two_seeds, tmp_path / "board", n_boot=100, plots=False)
    md = next((tmp_path / "board").glob("*/leaderboard.md")).read_text()
    assert f"{100 * mean:.2f} ± {100 * sd:.2f}" in md
    suites, _ = collect(two_seeds)
    entry = next(iter(suites.values())).entries[("fbank", "ks")]
    stats = load_item_stats(entry)  # every seed's rows reproduce that seed's value, and their mean the top
    assert len(stats.tables) == 2


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("0,0", "--seeds 0,0 names seed 0 twice"),
        ("-1", "--seeds must be >= 0; got -1"),
        ("1,x", "--seeds '1,x': give comma-separated non-negative integers"),
        (",", "--seeds is empty"),
    ],
)
def test_bad_seeds_exit_2_before_any_work(smoke_suite, tmp_path, capsys, seeds, message):
    assert evaluate(smoke_suite, tmp_path / "out", "--tasks", "ks", f"--seeds={seeds}") == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_full_profile_trains_three_head_seeds(tmp_path):
    from evalkit.pipeline.profiles import RUN_PROFILES
    from evalkit.pipeline.run import eval_options, twin_options

    opts = {name: eval_options(p, tmp_path, tmp_path) for name, p in RUN_PROFILES.items()}
    assert {name: o.seeds for name, o in opts.items()} == {"smoke": None, "default": None, "full": [0, 1, 2]}
    assert opts["full"].seed_rates == "chosen" and opts["full"].protocol == "superb"
    twins = {name: twin_options(RUN_PROFILES[name], o) for name, o in opts.items()}
    assert twins["full"].seeds == [0] and twins["full"].seed_rates == "grid"  # one seed: no later seeds
    assert twins["default"] is opts["default"]


@pytest.fixture(scope="module")
def chosen(smoke_suite, tmp_path_factory) -> Path:
    """fbank on KS, superb protocol, head seeds 0, 1 and 2, the later seeds at the rate seed 0 chose."""
    out = tmp_path_factory.mktemp("chosen")
    args = ("--tasks", "ks", "--protocol", "superb", "--seeds", "0,1,2", "--seed-rates", "chosen")
    assert evaluate(smoke_suite, out, *args) == 0
    return out


def test_chosen_seed_rates_search_the_grid_once(chosen, smoke_suite, tmp_path):
    res = json.loads((chosen / "fbank" / "ks.json").read_text())
    assert res["seed_rates"] == "chosen" and list(res["seeds"]) == ["0", "1", "2"]
    grid = load_task("ks").lr_grid
    first = res["seeds"]["0"]["heads"]["linear"]
    assert sorted(map(float, first["lr_grid"])) == sorted(grid)  # seed 0 searched the whole grid
    for s in ("1", "2"):
        later = res["seeds"][s]["heads"]["linear"]
        assert list(later["lr_grid"]) == [f"{first['lr']:g}"] and later["lr"] == first["lr"]
    # seed 0 is exactly the run that one seed alone makes; seed 1 the run of seed 1 alone at that rate
    alone = tmp_path / "alone"
    assert evaluate(smoke_suite, alone, "--tasks", "ks", "--protocol", "superb", "--seeds", "0") == 0
    single = json.loads((alone / "fbank" / "ks.json").read_text())
    assert single["metrics"] == res["seeds"]["0"]["metrics"] and "seed_rates" not in single
    at_rate = tmp_path / "at_rate"
    rate = ("--lr-grid", f"{first['lr']:g}", "--seeds", "1")
    assert evaluate(smoke_suite, at_rate, "--tasks", "ks", "--protocol", "superb", *rate) == 0
    assert json.loads((at_rate / "fbank" / "ks.json").read_text())["metrics"] == res["seeds"]["1"]["metrics"]


def test_other_seed_rates_are_a_clash(chosen, smoke_suite, capsys):
    result = chosen / "fbank" / "ks.json"
    before = result.read_bytes()
    assert evaluate(smoke_suite, chosen, "--tasks", "ks", "--protocol", "superb", "--seeds", "0,1,2") == 2
    assert "seed rates 'chosen' there, 'grid' now" in capsys.readouterr().err
    assert result.read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--seed-rates", "chosen"), "--seed-rates chosen says how the head seeds after the first train"),
        (("--seeds", "3", "--seed-rates", "chosen"), "there is one head seed: give several with --seeds"),
        (("--seeds", "0,1", "--seed-rates", "chosen"), "with --protocol quick changes nothing"),
    ],
)
def test_seed_rates_that_change_nothing_exit_2(smoke_suite, tmp_path, capsys, extra, message):
    assert evaluate(smoke_suite, tmp_path / "out", "--tasks", "ks", *extra) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
