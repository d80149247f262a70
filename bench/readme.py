"""The README's two commands: wall time of the main job and of the test command from a fresh clone.

`--quick` reads the committed record, `bench/results/readme_commands.json`. The full run re-measures:
it clones the committed HEAD into a temporary folder, makes a fresh virtualenv, and times each command
as the README gives it (install included); it rewrites the record when either time moved by more than
10%. Targets: the main job within 45 minutes (the calibrated-suite issue), the tests within 25 (CI's
budget for the suite). Run it on an otherwise idle machine: it takes about an hour.

    python -m bench readme [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import target

NAME = "readme"
TITLE = "The README's two commands, from a fresh clone"
RECORD = Path(__file__).resolve().parent / "results" / "readme_commands.json"
ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"main job": 45 * 60, "tests": 25 * 60}
MOVED = 0.10


def readme_commands() -> dict[str, str]:
    """The two commands of the README's first code block, in order: main job, tests."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    if len(lines) != 2:
        raise SystemExit(
            f"README.md: its first bash block holds {len(lines)} commands, not the two expected."
        )
    return dict(zip(("main job", "tests"), lines))


def measure() -> dict[str, dict]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "project"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        shared = ROOT.parent / "shared"
        if shared.is_dir():
            (Path(tmp) / "shared").symlink_to(shared)
        for name, command in readme_commands().items():
            venv = Path(tmp) / f"venv-{name.replace(' ', '-')}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            start = time.perf_counter()
            done = subprocess.run(
                ["bash", "-c", f". {venv}/bin/activate && {command}"],
                cwd=clone,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(
                    f"{command!r} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
            out[name] = {
                "command": command,
                "seconds": round(seconds),
                "commit": commit.stdout.strip(),
                "date": time.strftime("%Y-%m-%d"),
                "how": "python -m bench readme: fresh clone and virtualenv, install included",
            }
    return out


def run(quick: bool = False) -> dict:
    record = json.loads(RECORD.read_text())
    stored = record["commands"]
    measured = None if quick else measure()
    if measured is not None:
        moved = any(abs(measured[k]["seconds"] / stored[k]["seconds"] - 1) > MOVED for k in measured)
        if moved:
            record["commands"] = measured
            RECORD.write_text(json.dumps(record, indent=1) + "\n")
    now = measured or stored
    rows = [
        {
            "command": name,
            "minutes": now[name]["seconds"] / 60,
            "commit": now[name]["commit"],
            "date": now[name]["date"],
            "recorded minutes": stored[name]["seconds"] / 60,
        }
        for name in TARGETS
    ]
    return {
        "title": TITLE,
        "setup": "the committed record (--quick)" if quick else "re-measured from a fresh clone",
        "rows": rows,
        "targets": [
            target(f"{row['command']} minutes", "<=", TARGETS[row["command"]] / 60, row["minutes"])
            for row in rows
        ],
        "aa": None,  # nothing is timed side by side: no A/A check
        "record matches the README": all(stored[k]["command"] == c for k, c in readme_commands().items()),
        "markdown": "\n".join(
            [
                "| command | minutes | commit | date |",
                "|---|---|---|---|",
                *(f"| {r['command']} | {r['minutes']:.1f} | {r['commit']} | {r['date']} |" for r in rows),
            ]
        ),
    }
