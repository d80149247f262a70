"""`evalkit leaderboard build` with bad inputs: malformed result files are skipped by name (the rest is
built), non-finite metrics never reach a score, missing samples files are named, a build is atomic (the
board is the old one or the new one, never a mix), and names cannot inject Markdown or spreadsheet
formulas."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys

import pytest
from leaderboard_data import ks_samples, sf_samples, write_task

from evalkit.cli import main

SUITE = "synthetic-smoke-seed0"


def build(results, out, *extra) -> int:
    return main(
        ["leaderboard", "build", "--results", str(results), "--out", str(out), "--bootstrap", "50", *extra]
    )


def strict_json(path):
    """JSON as a browser reads it: NaN and Infinity are not JSON."""

    def refuse(token):
        raise ValueError(f"{path}: {token} in JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def rows(out) -> dict[str, dict]:
    table = strict_json(out / SUITE / "leaderboard.json")
    return {r["upstream"]: r for r in table["rows"]}


def snapshot(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture()
def two(tmp_path):
    """A small folder that builds: fbank and `good` on KS."""
    root = tmp_path / "results"
    write_task(root, "fbank", "ks", ks_samples(150), params=0)
    write_task(root, "good", "ks", ks_samples(10))
    return root


def _set(key, value):
    def edit(data):
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _drop(key):
    return lambda data: data.pop(key)


MALFORMED = {
    "primary_metric is a list": (_set("primary_metric", ["accuracy"]), "primary_metric"),
    "metrics is a string": (_set("metrics", "accuracy=0.9"), "metrics"),
    "metrics.test is a list": (_set("metrics.test", [0.9]), "metrics.test"),
    "metrics.dev is a string": (_set("metrics.dev", "n/a"), "metrics.dev"),
    "primary is a string": (_set("metrics.test.accuracy", "0.9"), "metrics.test.accuracy"),
    "primary is NaN": (_set("metrics.test.accuracy", float("nan")), "metrics.test.accuracy"),
    "primary is inf": (_set("metrics.test.accuracy", float("inf")), "metrics.test.accuracy"),
    "primary is true": (_set("metrics.test.accuracy", True), "metrics.test.accuracy"),
    "task is a list": (_set("task", ["ks"]), "task"),
    "upstream is a number": (_set("upstream", 7), "upstream"),
    "higher_is_better is a string": (_set("higher_is_better", "yes"), "higher_is_better"),
    "task_version is a list": (_set("task_version", [1]), "task_version"),
    "task_config is a string": (_set("task_config", "ks"), "task_config"),
    "task_config.metrics is a number": (_set("task_config.metrics", 5), "task_config.metrics"),
    "task_config.labels is a list": (_set("task_config.labels", ["chars"]), "task_config.labels"),
    "task_config.steps is a list": (_set("task_config.steps", [40]), "task_config.steps"),
    "suite is a list": (_set("suite", ["smoke"]), "suite"),
    "suite.profile is a list": (_set("suite.profile", ["smoke"]), "suite.profile"),
    "suite.seed is a string": (_set("suite.seed", "0"), "suite.seed"),
    "head is a list": (_set("head", ["linear"]), "head"),
    "heads.linear is a string": (_set("heads.linear", "mean_pool_linear"), "heads.linear"),
    "ci95.test is a string": (_set("ci95.test", "[0.8, 0.9]"), "ci95.test"),
    "upstream_info.fingerprint is a list": (_set("upstream_info.fingerprint", ["a"]), "fingerprint"),
    "upstream_info.checkpoint is a dict": (_set("upstream_info.checkpoint", {"p": 1}), "checkpoint"),
    "layer_weights hold a string": (_set("layer_weights", [0.5, "x"]), "layer_weights"),
    "layer_weights hold NaN": (_set("layer_weights", [0.5, float("nan")]), "layer_weights"),
    "metrics missing": (_drop("metrics"), "metrics"),
    "primary_metric missing": (_drop("primary_metric"), "primary_metric"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_result_is_skipped_by_name_and_the_rest_is_built(two, tmp_path, capsys, case):
    edit, key = MALFORMED[case]
    bad = write_task(two, "bad", "ks", ks_samples(5))
    data = json.loads(bad.read_text())
    edit(data)
    bad.write_text(json.dumps(data))
    out = tmp_path / "board"
    assert build(two, out) == 0
    err = capsys.readouterr().err
    line = next((w for w in err.splitlines() if str(bad) in w), None)
    assert line is not None and line.startswith("warning: skipped"), err
    assert key in line, line
    assert set(rows(out)) == {"fbank", "good"}
    assert "Traceback" not in err


RAW = {
    "a JSON array": b"[1, 2]",
    "a JSON string": b'"result"',
    "not UTF-8": b'{"task": "ks", "upstream": "caf\xe9"}',
    "empty": b"",
    "truncated": b'{"task": "ks", "metrics": {',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "UTF-16": '{"task": "ks"}'.encode("utf-16"),
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_an_unreadable_result_file_is_skipped_by_name(two, tmp_path, capsys, case):
    bad = two / "bad" / "ks.json"
    bad.parent.mkdir()
    bad.write_bytes(RAW[case])
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    err = capsys.readouterr().err
    assert f"warning: skipped {bad}: " in err
    assert set(rows(out)) == {"fbank", "good"}


def test_every_malformed_file_at_once_leaves_the_good_ones(two, tmp_path, capsys):
    for i, (edit, _) in enumerate(MALFORMED.values()):
        bad = write_task(two, f"bad{i}", "ks", ks_samples(5))
        data = json.loads(bad.read_text())
        edit(data)
        bad.write_text(json.dumps(data))
    for i, raw in enumerate(RAW.values()):
        (two / f"raw{i}.json").write_bytes(raw)
    out = tmp_path / "board"
    assert build(two, out) == 0
    err = capsys.readouterr().err
    assert err.count("warning: skipped") == len(MALFORMED) + len(RAW)
    assert set(rows(out)) == {"fbank", "good"}


def _edit(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_scored_metric_is_named_and_left_out_of_the_score(tmp_path, capsys, bad):
    """SF is scored on F1 and slot-value CER; a NaN CER is a missing entry, not a NaN score."""
    root = tmp_path / "results"
    write_task(root, "fbank", "sf", sf_samples(1, 0.9), params=0)
    write_task(root, "good", "sf", sf_samples(2, 0.1))
    m = write_task(root, "m", "sf", sf_samples(3, 0.2))
    _edit(m, _set("metrics.test.slot_value_cer", bad))
    _edit(m, _set("metrics.dev.slot_value_cer", bad))
    out = tmp_path / "board"
    assert build(out.parent / "results", out, "--no-plots") == 0
    err = capsys.readouterr().err
    named = [w for w in err.splitlines() if str(m) in w]
    assert any("metrics.test.slot_value_cer" in w for w in named), err
    assert any("metrics.dev.slot_value_cer" in w for w in named), err
    table = rows(out)  # strict JSON: no NaN anywhere
    score = table["m"]["cells"]["score"]
    assert math.isfinite(score["value"])
    fbank_f1 = table["fbank"]["cells"]["sf"]["value"]
    f1 = table["m"]["cells"]["sf"]["value"]
    assert score["value"] == pytest.approx(1000 * (f1 - fbank_f1) / (1 - fbank_f1))  # on F1 alone
    assert score["display"].startswith("(") and score["detail"]["missing"] == ["sf/slot_value_cer"]
    assert not table["good"]["cells"]["score"]["display"].startswith("(")
    assert math.isfinite(table["good"]["cells"]["score"]["value"])
    assert "nan" not in (out / SUITE / "leaderboard.md").read_text().lower()


def test_a_non_finite_reference_metric_is_named_and_not_a_reference_point(tmp_path, capsys):
    root = tmp_path / "results"
    fbank = write_task(root, "fbank", "sf", sf_samples(1, 0.9), params=0)
    _edit(fbank, _set("metrics.test.slot_value_cer", float("nan")))
    write_task(root, "good", "sf", sf_samples(2, 0.1))
    out = tmp_path / "board"
    assert build(root, out, "--no-plots") == 0
    assert any(str(fbank) in w and "slot_value_cer" in w for w in capsys.readouterr().err.splitlines())
    table = strict_json(out / SUITE / "leaderboard.json")
    assert "sf/slot_value_cer" not in table["reference"]["fbank"]
    assert all(math.isfinite(r["cells"]["score"]["value"]) for r in table["rows"])


def test_a_missing_samples_file_is_named_and_left_out_of_the_significance_tests_only(two, tmp_path, capsys):
    close = write_task(two, "close", "ks", ks_samples(11))
    weak = write_task(two, "weak", "ks", ks_samples(70))
    samples = weak.with_name("ks.samples.jsonl")
    samples.unlink()
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    err = capsys.readouterr().err
    line = next((w for w in err.splitlines() if str(samples) in w), None)
    assert line is not None and line.startswith("warning: "), err
    assert "significance" in line
    table = rows(out)
    assert table["weak"]["cells"]["ks"]["value"] == pytest.approx(0.65)  # still in the table and the score
    assert math.isfinite(table["weak"]["cells"]["score"]["value"])
    assert (
        table["weak"]["cells"]["ks"]["mark"] == ""
        and "p_best_better" not in table["weak"]["cells"]["ks"]["detail"]
    )
    assert table["close"]["cells"]["ks"]["mark"] == "tied"  # the others are still tested
    assert table["good"]["cells"]["ks"]["mark"] == "best"
    assert close.is_file()


def test_a_rebuild_removes_plots_of_upstreams_that_are_gone(two, tmp_path):
    gone = write_task(two, "gone", "ks", ks_samples(40))
    out = tmp_path / "board"
    assert build(two, out) == 0
    plots = out / SUITE / "plots"
    assert {p.name for p in plots.glob("layer_weights_*.png")} == {
        "layer_weights_fbank.png",
        "layer_weights_good.png",
        "layer_weights_gone.png",
    }
    for f in gone.parent.iterdir():
        f.unlink()
    assert build(two, out) == 0
    assert {p.name for p in plots.glob("layer_weights_*.png")} == {
        "layer_weights_fbank.png",
        "layer_weights_good.png",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "results"]  # nothing left beside it


@pytest.mark.parametrize("fail_in", ["render_page", "to_csv"])
def test_a_build_that_dies_midway_leaves_the_old_board_whole(two, tmp_path, monkeypatch, fail_in):
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    before = snapshot(out)
    write_task(two, "newcomer", "ks", ks_samples(1))

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C (or a kill) midway through writing would

    monkeypatch.setattr(f"evalkit.leaderboard.build.{fail_in}", die)
    assert build(two, out, "--no-plots") == 130  # the CLI's answer to an interrupt
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "results"]
    monkeypatch.undo()
    assert build(two, out, "--no-plots") == 0
    assert "newcomer" in rows(out)


def test_a_board_is_only_swapped_in_whole(two, tmp_path, monkeypatch):
    """While the new board is written, --out is untouched; then one rename puts it in place."""
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    before = snapshot(out)
    seen = []
    real = os.rename

    def rename(src, dst):
        seen.append((src, dst, snapshot(out) == before if out.exists() else None))
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    write_task(two, "newcomer", "ks", ks_samples(1))
    assert build(two, out, "--no-plots") == 0
    assert seen and all(unchanged in (True, None) for _, _, unchanged in seen)
    assert "newcomer" in rows(out)


def dead_pid() -> int:
    """The id of a process that has exited and been waited for: the build that a SIGKILL stopped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_build_removes_what_killed_builds_of_its_out_left_beside_it(two, tmp_path):
    """A SIGKILLed build runs no cleanup: its hidden folders beside --out go at the next build. Only
    folders of that naming pattern whose process is gone; a running build's and anything else stay."""
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    before = snapshot(out)
    pid = dead_pid()
    for name in (f".board.building-{pid}-0a1b2c3d", f".board.old-{pid}-deadbeef"):
        (tmp_path / name / SUITE).mkdir(parents=True)
        (tmp_path / name / SUITE / "leaderboard.md").write_text("half a board")
    kept = [
        f".board.building-{os.getpid()}-0a1b2c3d",  # a build still running (this process)
        f".other.old-{pid}-deadbeef",  # another --out's
        f".board.old-{pid}-deadbeef0",  # not the pattern
        f"board.old-{pid}-deadbeef",  # not hidden
    ]
    for name in kept:
        (tmp_path / name).mkdir()
    (tmp_path / f".board.old-{pid}-cafef00d").write_text("a file, not a build's folder")
    kept.append(f".board.old-{pid}-cafef00d")
    assert build(two, out, "--no-plots") == 0
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["board", "results", *kept])


def test_a_build_killed_between_the_swaps_renames_gets_its_old_board_back(two, tmp_path, monkeypatch):
    """Killed after renaming the old board away and before renaming the new one in, a build leaves no
    --out: the next build puts the old board back first, so --out is whole even if that build fails."""
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    before = snapshot(out)
    pid = dead_pid()
    os.rename(out, tmp_path / f".board.old-{pid}-0a1b2c3d")
    (tmp_path / f".board.building-{pid}-4e5f6a7b" / SUITE).mkdir(parents=True)
    write_task(two, "newcomer", "ks", ks_samples(1))

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("evalkit.leaderboard.build.render_page", die)
    assert build(two, out, "--no-plots") == 130
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "results"]
    monkeypatch.undo()
    assert build(two, out, "--no-plots") == 0
    assert "newcomer" in rows(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "results"]


def test_out_with_files_a_build_does_not_write_is_not_replaced(two, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert build(two, out, "--no-plots") == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--out" in err
    assert (out / "notes.txt").read_text() == "keep me"
    assert build(two, two, "--no-plots") == 2  # --out = --results: never replaced
    assert build(two, tmp_path, "--no-plots") == 2  # a folder above the results
    assert (two / "good" / "ks.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "results"]


MD_EVIL = "*b* `x` | [l](javascript:alert(1)) _u_ ~~s~~ &amp; \\*"
FORMULAS = ['=HYPERLINK("http://evil","click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "\rx"]


def test_names_cannot_inject_markdown(two, tmp_path):
    write_task(two, MD_EVIL, "ks", ks_samples(20), folder="evil")
    write_task(two, "good", "ks", ks_samples(10), name="ks_*t*|`c`", folder="good2")
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    for md in (out / "leaderboard.md", out / SUITE / "leaderboard.md"):
        text = md.read_text()
        assert r"\*b\* \`x\` \| \[l\](javascript:alert(1)) \_u\_ \~\~s\~\~ &amp;amp; \\\*" in text
        assert r"KS\_\*T\*\|\`C\`" in text
        assert "[l](" not in text and "*b*" not in text and "`x`" not in text
        lines = [line.replace("\\|", "") for line in text.splitlines() if line.startswith("|")]
        assert {line.count("|") for line in lines} == {lines[0].count("|")}  # no cell is split
    tex = (out / SUITE / "leaderboard.tex").read_text()
    assert r"\textbackslash{}*" in tex and r"\&amp;" in tex and r"\_u\_" in tex
    page = (out / "index.html").read_text()
    assert MD_EVIL not in page and "[l](javascript:alert(1))" in page  # plain text on the page, no link


def test_csv_cells_cannot_start_a_formula_but_negative_numbers_stay_numbers(two, tmp_path):
    for i, name in enumerate(FORMULAS):
        write_task(two, name, "ks", ks_samples(20 + i), folder=f"f{i}", pretraining={"=cmd": "|x"})
    write_task(two, "fine", "ks", ks_samples(10), name="=t", folder="t")
    write_task(two, "worse", "ks", ks_samples(160))  # below fbank: a negative score
    out = tmp_path / "board"
    assert build(two, out, "--no-plots") == 0
    text = (out / SUITE / "leaderboard.csv").read_bytes().decode()  # as written: a CR stays a CR
    table = list(csv.reader(io.StringIO(text)))
    cells = [c for row in table for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")]
    assert not [c for c in cells if c.startswith("-") and not _is_float(c)]
    upstreams = {row[0] for row in table[1:]}
    assert {"'" + n for n in FORMULAS} <= upstreams
    assert "'=t:accuracy" in table[0]
    # fbank scores 0 and a weaker entry below it: a genuine negative number, left numeric
    scores = [row[table[0].index("score")] for row in table[1:]]
    assert any(s.startswith("-") and float(s) < 0 for s in scores)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
