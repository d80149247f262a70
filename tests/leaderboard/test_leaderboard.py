"""`evalkit leaderboard build` on result files made here: tables, scores, significance marks, refusals
of malformed or inconsistent files (by name), and escaping of names from result files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from leaderboard_data import asv_samples, ks_samples, make_results, qbe_samples, write_task

from evalkit.cli import main
from evalkit.core.errors import EvalkitError
from evalkit.leaderboard import build_leaderboard, collect, write_references
from evalkit.leaderboard.score import load_reference
from evalkit.leaderboard.significance import load_item_stats, mark_column, paired_bootstrap

EVIL = "<script>alert(1)</script>"


@pytest.fixture()
def results(tmp_path):
    root = tmp_path / "results"
    make_results(root, EVIL)
    return root


def _table(out):
    return json.loads((out / "synthetic-smoke-seed0" / "leaderboard.json").read_text())


def _row(table, upstream):
    return next(r for r in table["rows"] if r["upstream"] == upstream)


def test_build_writes_every_format_and_the_table_holds_the_numbers(results, tmp_path):
    out = tmp_path / "board"
    report = build_leaderboard(results, out, n_boot=300, plots=True)
    assert report.warnings == []
    folder = out / "synthetic-smoke-seed0"
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.tex",
        "leaderboard.json",
        "plots/scores.png",
    ):
        assert (folder / name).is_file(), name
    assert (out / "index.html").is_file()
    assert (out / "leaderboard.md").read_text() == (folder / "leaderboard.md").read_text()
    assert len(list((folder / "plots").glob("layer_weights_*.png"))) == 5
    table = _table(out)
    assert [c["id"] for c in table["columns"]] == [
        "upstream",
        "ks",
        "asr",
        "asv",
        "score",
        "rank",
        "params",
        "pretraining",
    ]
    assert {r["upstream"] for r in table["rows"]} == {"fbank", "best", "close", "weak", EVIL}
    best = _row(table, "best")
    assert best["cells"]["ks"]["value"] == pytest.approx(0.95)
    assert best["cells"]["ks"]["display"] == "95.00"
    assert best["cells"]["params"]["display"] == "94.70"
    assert best["cells"]["pretraining"]["display"] == "gpu_hours=12.5"
    detail = best["cells"]["ks"]["detail"]
    assert detail["task_version"] == 1 and detail["lr"] == 1e-3 and detail["steps"] == 40
    assert detail["head"] == "linear (mean_pool_linear)" and detail["ci95"] == pytest.approx([0.855, 1.045])
    assert detail["file"] == "best/ks.json"  # relative to --results: the published page names no local path
    rows = list(csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text())))
    assert float(next(r for r in rows if r["upstream"] == "weak")["ks:accuracy"]) == pytest.approx(0.65)


def test_suite_score_uses_fbank_in_the_folder_and_perfect_values(results, tmp_path):
    out = tmp_path / "board"
    build_leaderboard(results, out, n_boot=200, plots=False)
    table = _table(out)
    assert _row(table, "fbank")["cells"]["score"]["value"] == 0.0
    # best: KS 0.95 vs fbank 0.25 -> 1000 * 0.70/0.75; the ASR/ASV points from the files themselves
    rows = {r["upstream"]: r for r in table["rows"]}
    ks = 1000 * (0.95 - 0.25) / (1 - 0.25)
    asr_f, asr_b = rows["fbank"]["cells"]["asr"]["value"], rows["best"]["cells"]["asr"]["value"]
    asv_f, asv_b = rows["fbank"]["cells"]["asv"]["value"], rows["best"]["cells"]["asv"]["value"]
    expected = (ks + 1000 * (asr_f - asr_b) / asr_f + 1000 * (asv_f - asv_b) / asv_f) / 3
    assert rows["best"]["cells"]["score"]["value"] == pytest.approx(expected)
    assert rows["best"]["cells"]["score"]["display"] == f"{expected:.1f}"
    # `weak` has no ASV: its score is partial and shown in parentheses
    assert rows["weak"]["cells"]["score"]["display"].startswith("(")
    assert rows["weak"]["cells"]["score"]["detail"]["tasks"] == "2/3"
    # rows are ordered by score; mean rank: best is first on every task
    assert table["rows"][0]["upstream"] == "best"
    assert rows["best"]["cells"]["rank"]["value"] == 1.0


def test_significance_marks_best_tied_and_worse(results, tmp_path):
    out = tmp_path / "board"
    build_leaderboard(results, out, n_boot=500, plots=False)
    rows = {r["upstream"]: r for r in _table(out)["rows"]}
    assert rows["best"]["cells"]["ks"]["mark"] == "best"
    assert rows["close"]["cells"]["ks"]["mark"] == "tied"  # one item of 200 apart
    assert rows["weak"]["cells"]["ks"]["mark"] == ""  # 60 items worse
    assert rows["fbank"]["cells"]["ks"]["mark"] == ""
    assert rows["close"]["cells"]["ks"]["detail"]["p_best_better"] < 0.95
    assert rows["weak"]["cells"]["ks"]["detail"]["p_best_better"] == 1.0
    md = (out / "synthetic-smoke-seed0" / "leaderboard.md").read_text()
    assert "**95.00**" in md and "**94.50**" in md and "**65.00**" not in md


def test_paired_bootstrap_pairs_items_by_id_not_by_order(tmp_path):
    a = write_task(tmp_path, "a", "ks", ks_samples(10))
    rows = ks_samples(10)
    b = write_task(tmp_path, "b", "ks", list(reversed(rows)))  # same outputs, other order: identical
    suites, _ = collect(tmp_path)
    col = next(iter(suites.values())).column("ks")
    sa, sb = load_item_stats(col["a"]), load_item_stats(col["b"])
    assert paired_bootstrap(sa, sb, True, n=200) == 0.0
    assert a.exists() and b.exists()


def test_trial_tasks_bootstrap_over_trials(tmp_path):
    write_task(tmp_path, "good", "asv", asv_samples(5, 3.0))
    write_task(tmp_path, "bad", "asv", asv_samples(6, 0.3))
    suites, _ = collect(tmp_path)
    marks = mark_column(next(iter(suites.values())).column("asv"), n=300)
    assert marks.mark == {"good": "best", "bad": ""}
    assert marks.p_better["bad"] > 0.99


def test_qbe_bootstrap_draws_queries_jointly_for_both_entries(tmp_path):
    """MTWV's paired test resamples queries (terms), each with all of its pairs, jointly for the two entries,
    whose samples number their terms each in its own order: identical outputs are never better."""
    rows = qbe_samples(1, 2.5)
    write_task(tmp_path, "a", "qbe", rows)
    write_task(tmp_path, "b", "qbe", list(reversed(rows)))  # other row order: terms numbered otherwise
    write_task(tmp_path, "weak", "qbe", qbe_samples(2, 0.5))
    suites, _ = collect(tmp_path)
    col = next(iter(suites.values())).column("qbe")
    sa, sb = load_item_stats(col["a"]), load_item_stats(col["b"])
    assert sa.by_group is not None
    assert paired_bootstrap(sa, sb, True, n=200) == 0.0
    assert paired_bootstrap(sa, load_item_stats(col["weak"]), True, n=200) > 0.99
    marks = mark_column(col, n=200)
    assert marks.mark["weak"] == ""


def test_malformed_and_inconsistent_files_are_named_and_skipped(results, tmp_path):
    bad_json = results / "broken" / "ks.json"
    bad_json.parent.mkdir()
    bad_json.write_text("{not json")
    no_metrics = results / "nometrics" / "ks.json"
    no_metrics.parent.mkdir()
    no_metrics.write_text(json.dumps({"task": "ks", "upstream": "x"}))
    wrong_type = write_task(results, "typed", "ks", ks_samples(5))
    data = json.loads(wrong_type.read_text())
    data["higher_is_better"] = "yes"
    wrong_type.write_text(json.dumps(data))
    other_version = write_task(results, "best", "ks", ks_samples(0), folder="rerun/best", version=2)
    other_model = write_task(
        results,
        "close",
        "asv",
        asv_samples(9, 1.0),
        folder="elsewhere/close",
        fingerprint="another-checkpoint",
    )
    out = tmp_path / "board"
    report = build_leaderboard(results, out, n_boot=100, plots=False)
    text = "\n".join(report.warnings)
    for path in (bad_json, no_metrics, wrong_type, other_version, other_model):
        assert str(path) in text, f"{path} not named in the warnings"
    assert "higher_is_better" in text and "version 2" in text and "fingerprint" in text
    assert len(report.warnings) == 5
    rows = {r["upstream"]: r for r in _table(out)["rows"]}
    assert "typed" not in rows and "x" not in rows
    assert rows["best"]["cells"]["ks"]["value"] == pytest.approx(0.95)  # the version-2 rerun was not counted
    assert rows["close"]["cells"]["asv"]["value"] is None
    page = (out / "index.html").read_text()
    assert "Skipped files (5)" in page and str(bad_json) in page


def test_samples_that_do_not_reproduce_the_result_are_refused(tmp_path):
    write_task(tmp_path, "a", "ks", ks_samples(10))
    b = write_task(tmp_path, "b", "ks", ks_samples(12))
    data = json.loads(b.read_text())
    data["metrics"]["test"]["accuracy"] = 0.945  # not what its samples say (0.94)
    b.write_text(json.dumps(data))
    suites, _ = collect(tmp_path)
    marks = mark_column(next(iter(suites.values())).column("ks"), n=100)
    assert marks.mark["b"] == "" and "b" not in marks.p_better
    assert any("do not belong" in n and str(b.with_name("ks.samples.jsonl")) in n for n in marks.notes)


def test_names_from_result_files_are_escaped_everywhere(results, tmp_path):
    out = tmp_path / "board"
    build_leaderboard(results, out, n_boot=100, plots=True)
    page = (out / "index.html").read_text()
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 1  # ours only
    assert "<script>alert" not in (out / "synthetic-smoke-seed0" / "leaderboard.md").read_text()
    tex = (out / "synthetic-smoke-seed0" / "leaderboard.tex").read_text()
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex


def test_stored_references_keep_the_score_fixed_when_entries_change(results, tmp_path):
    ref_file = tmp_path / "refs" / "synthetic-smoke.json"
    write_references(results, ref_file)
    ref = load_reference(ref_file)
    assert ref.version == 1
    write_references(results, ref_file)  # same points: same version
    assert load_reference(ref_file).version == 1
    assert (
        ref.suite == "synthetic-smoke" and ref.seed == 0 and ref.task_version == {"asr": 1, "asv": 1, "ks": 1}
    )
    assert ref.fbank["ks"] == pytest.approx(0.25) and ref.best == {"asr": 0.0, "asv": 0.0, "ks": 1.0}
    build_leaderboard(results, tmp_path / "b1", references_dir=ref_file.parent, n_boot=50, plots=False)
    before = _row(_table(tmp_path / "b1"), "best")["cells"]["score"]["value"]
    # remove fbank's results and add a new entry: with stored references the score does not move
    write_task(results, "fbank", "ks", ks_samples(140), params=0)  # remeasured: a new version of the file
    other = tmp_path / "refs2" / "synthetic-smoke.json"
    other.parent.mkdir()
    other.write_text(ref_file.read_text())
    write_references(results, other)
    assert load_reference(other).version == 2 and load_reference(other).fbank["ks"] == pytest.approx(0.3)
    for f in (results / "fbank").iterdir():
        f.unlink()
    write_task(results, "newcomer", "ks", ks_samples(1))
    build_leaderboard(results, tmp_path / "b2", references_dir=ref_file.parent, n_boot=50, plots=False)
    table = _table(tmp_path / "b2")
    assert _row(table, "best")["cells"]["score"]["value"] == before
    assert "stored file synthetic-smoke.json" in table["score_note"]


def test_quick_protocol_results_are_a_suite_of_their_own_scored_on_their_own_fbank(results, tmp_path):
    """`--protocol quick` numbers (one head, one LR) never share a table, or FBANK points, with swept ones."""
    ref_file = tmp_path / "refs" / "synthetic-smoke.json"
    write_references(results, ref_file)  # stored points of the swept protocol
    write_task(results, "fbank", "ks", ks_samples(120), folder="quick/fbank", protocol="quick")
    write_task(results, "best", "ks", ks_samples(1), folder="quick/best", protocol="quick")
    suites, _ = collect(results)
    assert set(suites) == {"synthetic-smoke-seed0", "synthetic-smoke-seed0-quick"}
    assert set(suites["synthetic-smoke-seed0-quick"].upstreams) == {"fbank", "best"}
    build_leaderboard(results, tmp_path / "b", references_dir=ref_file.parent, n_boot=50, plots=False)
    table = json.loads((tmp_path / "b" / "synthetic-smoke-seed0-quick" / "leaderboard.json").read_text())
    assert "fbank results in this folder" in table["score_note"]
    assert _row(table, "fbank")["cells"]["score"]["value"] == pytest.approx(0.0)


def test_checkpoint_folders_are_shown_by_their_name_when_unique(results, tmp_path):
    for spec in ("/runs/a/upstreams/hubert", "/runs/a/upstreams/bestrq", "/runs/b/upstreams/bestrq"):
        write_task(
            results, spec, "ks", ks_samples(5), folder=spec.strip("/").replace("/", "_"), checkpoint=spec
        )
    build_leaderboard(results, tmp_path / "b", n_boot=20, plots=False)
    shown = {r["upstream"]: r["cells"]["upstream"]["display"] for r in _table(tmp_path / "b")["rows"]}
    assert shown["/runs/a/upstreams/hubert"] == "hubert"
    assert shown["/runs/a/upstreams/bestrq"] == "/runs/a/upstreams/bestrq"  # two folders named bestrq
    assert shown[EVIL] == EVIL  # not a checkpoint: shown as given (and escaped on the page)


def test_cli_build_prints_warnings_and_fails_cleanly(results, tmp_path, capsys):
    (results / "junk.json").write_text("[]")
    assert (
        main(
            [
                "leaderboard",
                "build",
                "--results",
                str(results),
                "--out",
                str(tmp_path / "o"),
                "--bootstrap",
                "50",
                "--no-plots",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "junk.json" in err
    ref = tmp_path / "refs" / "synthetic-smoke.json"
    assert main(["leaderboard", "references", "--results", str(results), "--out", str(ref)]) == 0
    assert load_reference(ref).fbank["ks"] == pytest.approx(0.25)
    assert (
        main(["leaderboard", "build", "--results", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(EvalkitError, match="no usable result"):
        build_leaderboard(tmp_path / "o" / "synthetic-smoke-seed0", tmp_path / "o2")


def test_real_corpus_suites_get_superbs_formula_but_not_the_official_name(tmp_path):
    """SUPERB's points and formula, labelled as an evalkit-budget run: the `*_superb` tasks are not yet
    s3prl's recipes (issue 22), so nothing on the board may call their score the official one."""
    corpora = {"profile": None, "name": "superb-data"}
    # KS at the SUPERB SOTA point (96.66%: 2900 of 3000 is 96.67%, so build 96.66% from 4833 of 5000)
    ks = ks_samples(n_wrong=167, n=5000)
    write_task(tmp_path, "m", "ks", ks, name="ks_superb", suite=corpora)
    # ER: the mean over folds; fold accuracies 60% and 70% -> 65%
    write_task(tmp_path, "m", "ks", ks_samples(40, n=100), name="er_superb_fold1", suite=corpora)
    write_task(tmp_path, "m", "ks", ks_samples(30, n=100), name="er_superb_fold2", suite=corpora)
    out = tmp_path / "board"
    build_leaderboard(tmp_path, out, n_boot=20, plots=False)
    table = json.loads((out / "corpus-superb-data-budget" / "leaderboard.json").read_text())
    cell = table["rows"][0]["cells"]["score"]
    ks_points = 1000 * (96.66 - 41.38) / (96.66 - 41.38)
    er_points = 1000 * (65.0 - 48.24) / (67.62 - 48.24)
    assert cell["detail"]["points"] == {
        "ks": pytest.approx(ks_points, abs=0.05),
        "er": pytest.approx(er_points, abs=0.05),
    }
    assert cell["detail"]["tasks"] == "2/10" and cell["display"].startswith("(")
    assert cell["detail"]["er_folds"] == "2/5"  # SUPERB's ER is the mean of five folds
    assert "SUPERB corpora, evalkit budget" in table["score_note"]
    assert "not the official SUPERB score" in table["score_note"]


def _as_faithful(path: Path, deviations: list[str] | None = None) -> None:
    data = json.loads(path.read_text())
    data["task_config"]["recipe"] = "s3prl"
    data["task_config"]["deviations"] = deviations or []
    path.write_text(json.dumps(data))


def test_only_faithful_tasks_without_deviations_get_the_official_score(tmp_path):
    """Results of s3prl-recipe tasks are a suite of their own; its score is called official only when no
    task declares a deviation from s3prl, and a row is complete only with all five ER folds."""
    corpora = {"profile": None, "name": "superb-data"}
    ks = write_task(tmp_path, "m", "ks", ks_samples(n_wrong=167, n=5000), name="ks_superb", suite=corpora)
    folds = [
        write_task(tmp_path, "m", "ks", ks_samples(40, n=100), name=f"er_superb_fold{k}", suite=corpora)
        for k in range(1, 6)
    ]
    for path in [ks, *folds]:
        _as_faithful(path)
    # a budgeted result of the same corpora: another suite, never beside the faithful ones
    write_task(tmp_path, "m", "ks", ks_samples(n_wrong=100, n=5000), name="ks_superb_budget", suite=corpora)
    build_leaderboard(tmp_path, tmp_path / "board", n_boot=20, plots=False)
    faithful = json.loads((tmp_path / "board" / "corpus-superb-data" / "leaderboard.json").read_text())
    budget = json.loads((tmp_path / "board" / "corpus-superb-data-budget" / "leaderboard.json").read_text())
    assert "the official SUPERB score" in faithful["score_note"] and "not" not in faithful["score_note"]
    cell = faithful["rows"][0]["cells"]["score"]
    assert "er_folds" not in cell["detail"] and cell["detail"]["tasks"] == "2/10"
    assert cell["display"].startswith("(")  # eight tasks missing: bracketed
    assert "not the official SUPERB score" in budget["score_note"]

    _as_faithful(ks, ["silence: fixed 1 s segments, not random crops of the noise files"])
    build_leaderboard(tmp_path, tmp_path / "board", n_boot=20, plots=False)
    faithful = json.loads((tmp_path / "board" / "corpus-superb-data" / "leaderboard.json").read_text())
    assert "not yet the official SUPERB score" in faithful["score_note"]
    assert "ks_superb differs from s3prl's recipe: silence: fixed 1 s segments" in " ".join(faithful["notes"])


@pytest.mark.parametrize(
    ("padding", "group_norm", "official"),
    [("exact", True, False), ("exact", None, False), ("s3prl", True, True), ("exact", False, True)],
)
def test_groupnorm_hf_features_count_as_s3prls_only_with_its_padding(tmp_path, padding, group_norm, official):
    """A GroupNorm `hf:` checkpoint's features of padded batches differ from s3prl's unless run with
    --hf-padding s3prl: the faithful board calls it a deviation (a result without `group_norm`, made before
    it was recorded, counts as GroupNorm); a LayerNorm one computes the same features either way."""
    corpora = {"profile": None, "name": "superb-data"}
    path = write_task(tmp_path, "hf:m", "ks", ks_samples(n_wrong=167, n=500), name="ks_superb", suite=corpora)
    _as_faithful(path)
    data = json.loads(path.read_text())
    data["upstream_info"]["padding"] = padding
    if group_norm is not None:
        data["upstream_info"]["group_norm"] = group_norm
    path.write_text(json.dumps(data))
    build_leaderboard(tmp_path, tmp_path / "board", n_boot=20, plots=False)
    board = json.loads((tmp_path / "board" / "corpus-superb-data" / "leaderboard.json").read_text())
    assert ("not yet the official SUPERB score" not in board["score_note"]) == official
    assert ("--hf-padding s3prl" in " ".join(board["notes"])) != official


def test_results_off_the_profile_budget_are_flagged_and_refused_as_references(results, tmp_path):
    for f in (results / "fbank").glob("*.json"):
        data = json.loads(f.read_text())
        data["task_config"]["steps"] = {"smoke": 40, "default": 600}
        data["heads"]["linear"]["steps"] = 6  # as `evalkit eval --steps 6` records it
        f.write_text(json.dumps(data))
    with pytest.raises(EvalkitError, match=r"off the profile's budget \(asr: 6 steps, budget 40"):
        write_references(results, tmp_path / "ref.json")
    write_references(results, tmp_path / "ref.json", allow_off_budget=True)
    build_leaderboard(results, tmp_path / "board", n_boot=20, plots=False)
    table = _table(tmp_path / "board")
    assert "3 result(s) trained off the profile's step budget" in table["notes"][0]
    assert (
        _row(table, "fbank")["cells"]["ks"]["detail"]["off_budget"] == "6 steps; the profile's budget is 40"
    )
    assert "off_budget" not in _row(table, "best")["cells"]["ks"]["detail"]


def test_suite_versions_are_kept_apart():
    from evalkit.leaderboard.collect import suite_of

    old = {"suite": {"profile": "default", "seed": 0}}  # stamped before suites had versions
    assert suite_of(old)[:3] == (
        "synthetic-default-seed0",
        "synthetic suite, profile default, seed 0",
        "synthetic-default",
    )
    assert (
        suite_of({"suite": {"profile": "default", "seed": 0, "version": 1}})[0] == "synthetic-default-seed0"
    )
    new = {"suite": {"profile": "default", "seed": 0, "version": 2}, "protocol": "quick"}
    sid, label, ref, _ = suite_of(new)
    assert (sid, ref) == ("synthetic-default-v2-seed0-quick", "synthetic-default-v2-quick")
    assert label.startswith("synthetic suite v2, profile default, seed 0")


def test_one_checkpoint_evaluated_from_two_folders_is_one_row(tmp_path):
    # A re-run seeded from a published folder re-makes a deterministic random-init twin in its own work
    # folder: its new results name another path, but the folder name and the weights are the same.
    results = tmp_path / "results"
    old, new = "/runs/a/upstreams/hubert-random", "/runs/b/upstreams/hubert-random"
    write_task(
        results, old, "ks", ks_samples(20), folder="hubert-random", checkpoint=old, fingerprint="fp-twin"
    )
    write_task(
        results,
        new,
        "asv",
        asv_samples(1, 1.0),
        folder="hubert-random",
        checkpoint=new,
        fingerprint="fp-twin",
    )
    # the same folder name with other weights stays a separate upstream, shown by its full path
    other = "/runs/c/upstreams/hubert-random"
    write_task(
        results,
        other,
        "ks",
        ks_samples(30),
        folder="c/hubert-random",
        checkpoint=other,
        fingerprint="fp-other",
    )
    suites, warnings = collect(results)
    (suite,) = suites.values()
    assert warnings == []
    assert len(suite.upstreams) == 2 and other in suite.upstreams
    (merged,) = [u for u in suite.upstreams if u != other]
    assert merged in (old, new)
    assert {t for (u, t) in suite.entries if u == merged} == {"ks", "asv"}
    out = tmp_path / "board"
    build_leaderboard(results, out, n_boot=50, plots=False)
    shown = sorted(r["cells"]["upstream"]["display"] for r in _table(out)["rows"])
    assert shown == sorted([merged, other])  # the folder names clash: full paths
    (results / "c").rename(tmp_path / "c")  # alone, the merged twin is shown by its folder name
    build_leaderboard(results, out, n_boot=50, plots=False)
    assert [r["cells"]["upstream"]["display"] for r in _table(out)["rows"]] == ["hubert-random"]


def test_pretrained_upstreams_are_compared_with_their_random_init_twins(tmp_path):
    results = tmp_path / "results"
    twin = {"method": "random-init", "twin_of": "hubert, w2v"}
    up = "/runs/u/upstreams/"
    write_task(
        results,
        up + "hubert",
        "ks",
        ks_samples(20),
        checkpoint=up + "hubert",
        pretraining={"method": "hubert"},
    )
    write_task(
        results,
        up + "hubert",
        "asv",
        asv_samples(3, 0.3),
        checkpoint=up + "hubert",
        pretraining={"method": "hubert"},
    )
    write_task(
        results, up + "hubert-random", "ks", ks_samples(60), checkpoint=up + "hubert-random", pretraining=twin
    )
    write_task(
        results,
        up + "hubert-random",
        "asv",
        asv_samples(2, 3.0),
        checkpoint=up + "hubert-random",
        pretraining=twin,
    )
    # one item better and four worse than the twin's, five better: a difference of one item, not significant
    write_task(
        results,
        up + "w2v",
        "ks",
        ks_samples(59, flip_first=5),
        checkpoint=up + "w2v",
        pretraining={"method": "wav2vec2"},
    )
    write_task(results, "fbank", "ks", ks_samples(100))  # no twin: not in the comparison
    out = tmp_path / "board"
    build_leaderboard(results, out, n_boot=300, plots=False)
    folder = out / "synthetic-smoke-seed0"
    table = json.loads((folder / "twins.json").read_text())
    assert [r["upstream"] for r in table["rows"]] == ["hubert vs hubert-random", "w2v vs hubert-random"]
    hubert, w2v = table["rows"]
    ks, asv = hubert["cells"]["ks"], hubert["cells"]["asv"]
    assert ks["value"] == pytest.approx(20.0) and ks["display"] == "+20.00" and ks["mark"] == "better"
    assert ks["detail"]["p_upstream_better"] >= 0.95
    assert asv["value"] < 0 and asv["mark"] == "worse"  # EER: lower is better, so a higher EER is negative
    assert (hubert["cells"]["better"]["value"], hubert["cells"]["worse"]["value"]) == (1, 1)
    assert w2v["cells"]["ks"]["value"] == pytest.approx(0.5) and w2v["cells"]["ks"]["mark"] == ""
    assert w2v["cells"]["asv"]["display"] == "–"
    for name in ("twins.md", "twins.csv", "twins.tex"):
        assert (folder / name).is_file(), name
    assert "hubert vs hubert-random" in (out / "leaderboard.md").read_text()
    page = (out / "index.html").read_text()
    assert "Pre-training vs random-init twin" in page and 'class="worse"' in page
