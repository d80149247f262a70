"""Publishing a finished run (`evalkit run --publish DIR`) and starting a work folder from a published one."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.results import git_hash, samples_path
from evalkit.leaderboard.build import build_leaderboard
from evalkit.leaderboard.collect import result_files


def seed_from_published(published: Path, work: Path, skip: set[str], log=print) -> None:
    """Fill an empty work folder with a published leaderboard's results, stage times and run record.

    The results of the upstreams in `skip` (those about to be redone) are left out.
    A work folder that already has results is left alone, so the command that seeded
    it can be re-run to resume.
    """
    src = published / "results"
    if not src.is_dir() or not (published / "run.json").is_file():  # checked first: a typo is never ignored
        raise EvalkitError(
            f"{published}: not a published leaderboard (expected results/ and run.json, as written by "
            "`evalkit run --publish`)."
        )
    if (work / "results").is_dir():
        log(f"[from-published] {work / 'results'} exists: not seeded again")
        return
    tmp = work / "results.seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        src, tmp, ignore=lambda folder, names: [n for n in names if Path(folder) == src and n in skip]
    )
    for name in ("stages.json", "run.json"):
        if (published / name).is_file() and not (work / name).exists():
            record = json.loads((published / name).read_text())
            record.pop("published", None)
            atomic_write_text(work / name, json.dumps(record, indent=1))
    tmp.rename(work / "results")  # last, so a crash before it leaves a folder that seeds again
    log(
        f"[from-published] {work / 'results'} seeded from {src}"
        + (f", less {', '.join(sorted(skip))}" if skip else "")
    )


def publish(workdir: str | Path, dest: str | Path, profile: str = "full", log=print) -> Path:
    """Copy a finished run's result files and stage times to `dest` and build `dest/board` from them.

    `dest/results` (result JSONs and their samples files: no audio, no checkpoints, no
    feature caches) and `dest/board` are replaced; `dest/stages.json` gets the run's
    wall times and `dest/run.json` the run's provenance (`record_invocation`). Returns the board.
    """
    work, dest = Path(workdir) / profile, Path(dest)
    results = work / "results"
    if not (work / "leaderboard" / "index.html").is_file():
        raise EvalkitError(
            f"{work}: no finished `evalkit run --profile {profile}` here (no leaderboard/index.html); "
            f"run it to the end first."
        )
    # before anything is copied: publishing into the checkout (leaderboard/) makes its tree dirty
    commit = git_hash(dirty=True)
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("results", "board"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    files = [f for p in result_files(results) for f in (p, samples_path(p)) if f.is_file()]
    for src in files:
        target = dest / "results" / src.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    shutil.copyfile(work / "stages.json", dest / "stages.json")
    run = json.loads((work / "run.json").read_text()) if (work / "run.json").is_file() else {}
    run["published"] = {"date": time.strftime("%Y-%m-%d"), "evalkit_commit": commit}
    atomic_write_text(dest / "run.json", json.dumps(run, indent=1))
    report = build_leaderboard(dest / "results", dest / "board")
    for w in report.warnings:
        log(f"warning: {w}")
    atomic_write_text(dest / "README.md", published_readme(dest, profile, run, len(files)))
    log(f"published {len(files)} result files to {dest / 'results'}; tables and page in {dest / 'board'}")
    return dest / "board"


def _invocation_row(invocation: dict) -> str:
    wall = invocation.get("wall_s")
    ran = invocation.get("stages")  # a list; older records written by hand may hold a phrase
    if isinstance(ran, list):
        ran = ", ".join(ran) or "none finished"
    if invocation.get("interrupted"):
        ran = f"{ran} ({invocation['interrupted']})"
    return (
        f"| {invocation.get('started', '?')} | {invocation.get('evalkit_commit') or 'not recorded'} | "
        f"{f'{wall:.0f}' if isinstance(wall, (int, float)) else '?'} | {ran or 'not recorded'} |"
    )


def _invocations_total(made: list[dict]) -> list[str]:
    """The table's last row: the wall time of every invocation together (none where one is unknown)."""
    walls = [i.get("wall_s") for i in made]
    if not all(isinstance(w, (int, float)) for w in walls):
        return []
    return [f"| all {len(walls)} invocations | | {sum(walls):.0f} ({sum(walls) / 3600:.2f} h) | |"]


def published_readme(dest: Path, profile: str, run: dict, n_files: int) -> str:
    """DEST/README.md: how the folder was made and is rebuilt, the table, and each stage's wall time."""
    stages = json.loads((dest / "stages.json").read_text())
    made = run.get("invocations") or [{}]
    commits = ", ".join(dict.fromkeys(str(i.get("evalkit_commit") or "not recorded") for i in made))
    machine = (
        f"{run['cpus']} CPU cores ({run['machine']}), Python {run['python']}, torch {run['torch']}"
        if "cpus" in run
        else "machine not recorded"
    )
    lines = [
        "# Published leaderboard",
        "",
        "<!-- written by `evalkit run --publish`; edits here are overwritten -->",
        "",
        f"`evalkit run --profile {profile}` (evalkit commit {commits}; {machine}; started "
        f"{made[0].get('started', '?')}), published with",
        "",
        "```bash",
        f"evalkit run --profile {profile} --workdir work --publish {dest.name}",
        "```",
        "",
        f"`results/` holds its {n_files} result files (`<upstream>/<task>.json` and the per-item samples that the "
        "significance marks need; no audio, no checkpoints); `board/` the tables (Markdown, CSV, LaTeX, JSON), "
        "plots and the page `board/index.html`, rebuilt from `results/` alone by",
        "",
        "```bash",
        f"evalkit leaderboard build --results {dest.name}/results --out {dest.name}/board",
        "```",
        "",
        (dest / "board" / "leaderboard.md").read_text().strip(),
        "",
    ]
    if len(made) > 1:
        lines += [
            "## Invocations",
            "",
            "The work folder was filled by more than one invocation; each ran only the stages whose "
            "results were missing (after a crash, or after a recipe change and the deletion of what it made).",
            "",
            "| started | evalkit commit | wall time (s) | stages run |",
            "|---|---|---:|---|",
            *(_invocation_row(i) for i in made),
            *_invocations_total(made),
            "",
        ]
    lines += [
        "## Wall time of each stage",
        "",
        "Pre-training and evaluation jobs run side by side (one thread each), so they add up to more than the total. "
        "A stage's time is that of the invocation that last ran it.",
        "",
        "| stage | seconds | minutes |",
        "|---|---:|---:|",
        *(f"| {name} | {sec:.0f} | {sec / 60:.1f} |" for name, sec in stages.items()),
        "",
    ]
    return "\n".join(lines)
