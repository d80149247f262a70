"""`evalkit leaderboard build`: result JSONs -> per-suite tables (Markdown, CSV, LaTeX, JSON), plots and
one static HTML page; `evalkit leaderboard references`: FBANK reference points of a suite.

Which reference points a suite's score uses, in order: a stored file
`<references>/<suite>.json` (synthetic suites: `synthetic-<profile>.json`),
else the `fbank` upstream's results in the same folder (synthetic suites),
else SUPERB's reference points (real corpora only: they are meaningful
only on the standard SUPERB test sets).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.results import upstream_tag
from evalkit.leaderboard.collect import Entry, Suite, budget_gap, collect, deviations, faithful
from evalkit.leaderboard.page import render_page
from evalkit.leaderboard.plots import layer_weights_heatmap, score_bars
from evalkit.leaderboard.score import (
    TOPLINES,
    Reference,
    load_reference,
    reference_from_fbank,
    stored_reference,
    superb_reference,
)
from evalkit.leaderboard.significance import Marks, mark_column
from evalkit.leaderboard.table import Table, build_table, to_csv, to_json, to_latex, to_markdown
from evalkit.leaderboard.twins import twin_table


@dataclass
class BuildReport:
    """What a build wrote and what it refused."""

    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)


def choose_reference(
    suite: Suite, references_dir: Path | None, warnings: list[str]
) -> tuple[Reference | None, str, set[str]]:
    """(reference, a sentence saying what the score means, tasks left out of the score)."""
    ref = stored_reference(suite.reference_name, references_dir)
    if ref is not None:
        note = (
            f"Score: 1000 x (value - FBANK) / (perfect - FBANK) per task, averaged; reference points from "
            f"the stored file {suite.reference_name}.json (version {ref.version})."
        )
        if ref.seed is not None and suite.seed is not None and ref.seed != suite.seed:
            warnings.append(
                f"suite {suite.id}: reference {suite.reference_name}.json was measured with seed "
                f"{ref.seed}, these results with seed {suite.seed}; scores are approximate."
            )
    elif suite.reference_name.startswith("synthetic") and any(u == "fbank" for u, _ in suite.entries):
        fbank = {t: e.data for (u, t), e in suite.entries.items() if u == "fbank"}
        oracle = {t: e.data for (u, t), e in suite.entries.items() if u in TOPLINES}
        ref = reference_from_fbank(suite.id, fbank, seed=suite.seed, oracle_results=oracle)
        upper = "the oracle topline where it beats FBANK, else perfect" if oracle else "perfect"
        note = (
            f"Score: 1000 x (value - FBANK) / (upper - FBANK) per task, averaged, the upper point being {upper}; "
            "FBANK measured by the fbank results in this folder (no stored reference file for this suite)."
        )
    elif suite.reference_name == "superb":
        ref = superb_reference()
        note = _superb_note(suite)
    else:
        return (
            None,
            "No score: no reference points for this suite (add fbank results or a reference file).",
            set(),
        )
    stale = set()
    for task, version in ref.task_version.items():
        col = suite.column(task)
        if col and next(iter(col.values())).data["task_version"] != version:
            stale.add(task)
            warnings.append(
                f"suite {suite.id}: the reference point of task {task!r} was measured with task "
                f"version {version!r}, the results use another; {task} is left out of the score. "
                "Regenerate it with `evalkit leaderboard references`."
            )
    return ref, note, stale


def _superb_note(suite: Suite) -> str:
    """What a score over SUPERB's corpora is: the official SUPERB score only for tasks on s3prl's recipes
    with no known deviation from them (the faithful `*_superb` tasks, once they are all faithful)."""
    entries = list(suite.entries.values())
    if not all(faithful(e.data) for e in entries):
        return (
            "Score: SUPERB's formula and reference points (superbbenchmark.org) over SUPERB's corpora, trained "
            "on evalkit's budget (SUPERB corpora, evalkit budget): not the official SUPERB score, whose tasks "
            "follow s3prl's recipes, so not comparable with the public leaderboard."
        )
    if any(deviations(e.data) for e in entries):
        return (
            "Score: SUPERB's formula and reference points (superbbenchmark.org) over SUPERB's corpora, on s3prl's "
            "recipes where evalkit follows them; the notes below say where these tasks do not yet: not yet the "
            "official SUPERB score."
        )
    return (
        "Score: the official SUPERB score (superbbenchmark.org's formula and reference points, s3prl's recipes, "
        "SUPERB's corpora) for a row with all ten tasks and all five ER folds; a bracketed score covers only "
        "the tasks it has. ASV's checkpoint and SD's threshold and median filter are chosen on dev, where "
        "SUPERB chose them on test (each result also keeps SUPERB's test-selected number, labelled), and KS's "
        "dev is every utterance once, where s3prl resamples it."
    )


def _deviation_notes(suite: Suite) -> list[str]:
    """One note per faithful task and way in which it still differs from s3prl's recipe."""
    found: dict[str, list[str]] = {}
    for (_, task), e in suite.entries.items():
        for d in deviations(e.data):
            if d not in found.setdefault(task, []):
                found[task].append(d)
    return [f"{task} differs from s3prl's recipe: {d}" for task in suite.tasks for d in found.get(task, [])]


def models(column: dict[str, Entry]) -> dict[str, Entry]:
    """A task's entries less the toplines: the oracle is a reference, not a model to mark best or tied."""
    return {u: e for u, e in column.items() if u not in TOPLINES}


def build_leaderboard(
    results: Path,
    out: Path,
    references_dir: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    plots: bool = True,
) -> BuildReport:
    """Build every suite found under `results` into `out`: `<suite>/leaderboard.{md,csv,tex,json}`,
    `<suite>/twins.{md,csv,tex,json}` (pre-trained upstreams against their random-init twins, where the
    suite has any) and `<suite>/plots/`, plus `index.html` (the page) and `leaderboard.md` (all suites)
    at the top.

    The board is written into a new hidden folder beside `out` and swapped in whole, so `out` is always
    one complete board (the old or the new: never a mix, never files of an earlier build)."""
    results, out = Path(results), Path(out)
    if out.is_symlink():  # swap the folder it points to, keeping the link
        out = out.resolve()
    suites, warnings = _collect_suites(results, out)
    check_replaceable(out, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(out)
    staging = _beside(out, "building")
    staging.mkdir()
    try:
        report = _write_board(staging, suites, warnings, references_dir, n_boot, seed, plots)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.files = [out / f.relative_to(staging) for f in report.files]
    return report


def _write_board(
    out: Path,
    suites: dict[str, Suite],
    warnings: list[str],
    references_dir: Path | None,
    n_boot: int,
    seed: int,
    plots: bool,
) -> BuildReport:
    report = BuildReport(warnings=warnings)
    sections = []
    for sid, suite in sorted(suites.items()):
        ref, note, stale = choose_reference(suite, references_dir, warnings)
        marks = {task: mark_column(models(suite.column(task)), n=n_boot, seed=seed) for task in suite.tasks}
        warnings += _missing_samples(suite, marks)
        table = build_table(suite, marks, ref, note, excluded=stale)
        table.notes = (
            _budget_notes(suite)
            + _deviation_notes(suite)
            + [n for task in suite.tasks for n in marks[task].notes]
        )
        folder = out / sid
        twins = twin_table(suite, n_boot=n_boot, seed=seed)
        _write_tables(folder, {"leaderboard": table, "twins": twins}, report)
        section = {"table": table, "twins": twins, "score_png": None, "layer_pngs": {}}
        if plots:
            _write_plots(suite, section, folder, report)
        sections.append(section)
        report.suites.append(sid)
    page = out / "index.html"
    atomic_write_text(page, render_page(sections, warnings))
    summary = out / "leaderboard.md"  # every suite's table in one file, for a terminal or a README
    atomic_write_text(
        summary,
        "\n".join(
            to_markdown(s["table"]) + (f"\n{to_markdown(s['twins'])}" if s["twins"] else "") for s in sections
        ),
    )
    report.files += [page, summary]
    return report


def _swap_in(new: Path, out: Path) -> None:
    """Rename the old board away, the new one in, then remove the old one."""
    if not out.exists():
        os.rename(new, out)
        return
    old = _beside(out, "old")
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _beside(out: Path, role: str) -> Path:
    """A hidden folder name beside `out` for this build: `.<out>.building-<pid>-<hex>` or `.<out>.old-...`."""
    return out.with_name(f".{out.name}.{role}-{os.getpid()}-{secrets.token_hex(4)}")


def _clear_leftovers(out: Path) -> None:
    """Remove what builds of `out` that were killed midway (SIGKILL, power loss: no `except` ran) left
    beside it, so a re-run leaves what an uninterrupted build leaves: their half-written
    `.<out>.building-*` folders and the `.<out>.old-*` boards their swaps had moved away. A build killed
    between the swap's two renames left no `out` at all; its old board is put back first, so `out` is
    one whole board again even if this build fails too. Only folders of this naming pattern whose build
    process is gone are touched; those of a build still running on this machine are left alone."""
    pattern = re.compile(re.escape(f".{out.name}.") + r"(building|old)-(\d+)-[0-9a-f]{8}")
    stale: dict[str, list[Path]] = {"building": [], "old": []}
    for p in out.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _running(int(m.group(2))):
            stale[m.group(1)].append(p)
    if stale["old"] and not out.exists() and not out.is_symlink():
        newest = max(stale["old"], key=lambda p: p.stat().st_ctime)  # a rename sets the ctime
        os.rename(newest, out)
        stale["old"].remove(newest)
    for p in stale["building"] + stale["old"]:
        shutil.rmtree(p, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether a process with this id exists (the build that named a folder may still be writing it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


# What a build writes, relative to its --out folder: anything else there is someone's and stops a build.
BOARD_FILES = re.compile(
    r"(index\.html|leaderboard\.md|[^/]+/(leaderboard|twins)\.(md|csv|tex|json)|[^/]+/plots/[^/]+\.png)"
)


def check_replaceable(out: Path, results: Path) -> None:
    """A build replaces its whole --out folder: refuse one that holds the results or files it did not write."""
    if out.exists() and not out.is_dir():
        raise EvalkitError(f"--out {out} is a file; give a folder (a build replaces it with the board).")
    res, target = results.resolve(), out.resolve()
    if res == target or target in res.parents:
        raise EvalkitError(
            f"--out {out} holds --results {results}; a build replaces its whole --out folder, so give "
            "another one (e.g. a `board` folder beside the results)."
        )
    if not out.is_dir():
        return
    foreign = [
        p.relative_to(out).as_posix()
        for p in sorted(out.rglob("*"))
        if not p.is_dir() and not BOARD_FILES.fullmatch(p.relative_to(out).as_posix())
    ]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise EvalkitError(
            f"--out {out} holds files a leaderboard build does not write ({shown}); a build replaces the "
            "whole folder, so move them away or give another --out."
        )


def _collect_suites(results: Path, out: Path) -> tuple[dict[str, Suite], list[str]]:
    """The suites under `results` (leaving out the board folder `out`) and the warnings; at least one suite."""
    if not results.is_dir():
        raise EvalkitError(f"--results {results}: no such folder (it holds <upstream>/<task>.json files).")
    suites, warnings = collect(results, exclude=out)
    if not suites:
        raise EvalkitError(
            f"--results {results}: no usable result file found"
            + (f" ({len(warnings)} skipped; first: {warnings[0]})" if warnings else "")
            + "."
        )
    return suites, warnings


def _missing_samples(suite: Suite, marks: dict[str, Marks]) -> list[str]:
    """A warning for each entry without its samples file: its number stands, its significance is untested."""
    out = []
    for (upstream, task), e in sorted(suite.entries.items()):
        if e.samples.is_file():
            continue
        best = marks[task].mark.get(upstream) == "best"
        out.append(
            f"{e.samples}: no samples file beside {e.path.name}; {e.task} of {upstream!r} is left out of "
            "the significance tests"
            + (" (it is the best entry, so no other entry of the task is tested)" if best else "")
            + " - its number stays in the table and the score. Re-run its evaluation to log the samples."
        )
    return out


def _budget_notes(suite: Suite) -> list[str]:
    """A note on the results trained off the profile's step budget, if any."""
    off = [
        f"{e.upstream} x {e.task} ({gap[0]} steps)" for e in suite.entries.values() if (gap := budget_gap(e))
    ]
    if off and len(off) == len(suite.entries):
        steps = sorted({gap[0] for e in suite.entries.values() if (gap := budget_gap(e))})
        return [
            f"Every result here was trained off the profile's step budget ({', '.join(map(str, steps))} "
            "steps, e.g. by `evalkit run --profile default`): compare them only with each other."
        ]
    if off:
        return [
            f"{len(off)} result(s) trained off the profile's step budget (e.g. with --steps), "
            f"not comparable with results on budget: {', '.join(sorted(off))}."
        ]
    return []


def _write_tables(folder: Path, tables: dict[str, Table | None], report: BuildReport) -> None:
    """`<folder>/<stem>.{md,csv,tex,json}` for every table that exists."""
    for stem, t in tables.items():
        if t is None:
            continue
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex), ("json", to_json)):
            atomic_write_text(folder / f"{stem}.{ext}", render(t))
            report.files.append(folder / f"{stem}.{ext}")


def _write_plots(suite: Suite, section: dict, folder: Path, report: BuildReport) -> None:
    """The score bars and each upstream's layer-weight heatmap, into `section` and `<folder>/plots/`."""
    section["score_png"] = score_bars(section["table"])
    for u in suite.upstreams:
        png = layer_weights_heatmap(suite, u)
        if png:
            section["layer_pngs"][u] = png
    pngs = [("scores.png", section["score_png"])] if section["score_png"] else []
    pngs += [(f"layer_weights_{upstream_tag(u)}.png", p) for u, p in section["layer_pngs"].items()]
    for name, png in pngs:
        (folder / "plots").mkdir(parents=True, exist_ok=True)
        (folder / "plots" / name).write_bytes(png)
        report.files.append(folder / "plots" / name)


def write_references(
    results: Path, out: Path, suite_id: str | None = None, allow_off_budget: bool = False
) -> Path:
    """Store a suite's FBANK reference points (from the fbank results under `results`) as a JSON file.

    Reference points fix every later score, so FBANK results trained off the
    profile's step budget (e.g. with `--steps`) are refused unless `allow_off_budget`.
    """
    suites, warnings = collect(Path(results))
    if suite_id is None:
        if len(suites) != 1:
            raise EvalkitError(
                f"--results {results} holds {len(suites)} suites ({', '.join(sorted(suites))}); "
                "pick one with --suite."
            )
        suite_id = next(iter(suites))
    if suite_id not in suites:
        raise EvalkitError(f"--suite {suite_id!r} not found; suites: {', '.join(sorted(suites)) or 'none'}.")
    suite = suites[suite_id]
    fbank = {t: e.data for (u, t), e in suite.entries.items() if u == "fbank"}
    if not fbank:
        raise EvalkitError(
            f"suite {suite_id!r} has no results of the `fbank` upstream; run "
            "`evalkit eval --upstream fbank` on it first."
        )
    off = {t: gap for (u, t), e in suite.entries.items() if u == "fbank" and (gap := budget_gap(e))}
    if off and not allow_off_budget:
        detail = ", ".join(f"{t}: {s} steps, budget {b}" for t, (s, b) in sorted(off.items()))
        raise EvalkitError(
            f"suite {suite_id!r}: the fbank results were trained off the profile's budget ({detail}); "
            "re-run `evalkit eval --upstream fbank` without --steps, or pass --allow-off-budget."
        )
    oracle = {t: e.data for (u, t), e in suite.entries.items() if u in TOPLINES}
    ref = reference_from_fbank(suite.reference_name, fbank, seed=suite.seed, oracle_results=oracle)
    if Path(out).is_file():  # remeasured points are a new version of the file
        old = load_reference(Path(out))
        same = (old.fbank, old.best, old.task_version) == (ref.fbank, ref.best, ref.task_version)
        ref.version = old.version if same else old.version + 1
    atomic_write_text(out, ref.to_json())
    return Path(out)
