"""Every bad input of the table in cases.py, through the CLI as a user types it: a clear outcome, never
a traceback, and nothing computed before it lost.

Each row runs `evalkit.cli.main(argv)` in process. An exception other than SystemExit escaping it is
a traceback a user would see, and fails the row. An `error` row must exit 2 with a message naming
the file or key; a `warning` row must exit 0 with the warning. For every row, the files its setup
protected (the earlier fbank/ks result of an `--output`, an earlier board, the result files a build
reads, a bad file that must be left for the user to inspect) are byte-identical after the run.

Rows that fail today because of files under someone else's work are strict xfails: they turn red
(XPASS) once fixed, so the mark can be removed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from cases import CASES, Case, Shared, World

from evalkit.cli import main


@pytest.fixture(scope="module")
def shared(smoke_suite, tmp_path_factory) -> Shared:
    """The earlier result (fbank on ks, as the cases' evaluations are run) and the shared feature cache."""
    root = tmp_path_factory.mktemp("bad_inputs")
    results, cache = root / "results", root / "cache"
    argv = ["eval", "--upstream", "fbank", "--tasks", "ks", "--data", str(smoke_suite), "--output"]
    assert main([*argv, str(results), "--cache", str(cache), "--protocol", "quick", "--steps", "2"]) == 0
    return Shared(smoke_suite, results, cache)


def run_cli(argv: list[str]) -> int:
    """The exit status of `evalkit ARGV`, in process; argparse's usage errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


def snapshot(paths: list[Path]) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {}
    for path in paths:
        if path.is_dir():
            files |= {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
        else:
            files[str(path)] = path.read_bytes() if path.is_file() else None
    return files


# Where a command starts its real work: a bad value that gets there was accepted (and would run for
# minutes), so the row fails at once instead.
WORK = {"run": ("evalkit.pipeline.run.build_suite", "evalkit.pipeline.run.run_jobs")}


def _accepted(*args, **kwargs):
    raise AssertionError("the bad input was accepted: the command started its work")


def _param(c: Case):
    marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
    return pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVALKIT_WORK", str(tmp_path / "work"))  # where a recipe's default --out would go
    world = World(tmp_path, shared)
    argv = case.setup(world)
    before = snapshot(world.protected)
    for target in WORK.get(argv[0] if argv else "", ()):
        monkeypatch.setattr(target, _accepted)
    capsys.readouterr()  # what the setup printed is not the case's output

    code = run_cli(argv)

    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    said = err + (out if argv[:1] == ["validate"] or case.outcome == "warning" else "")
    assert code == (2 if case.outcome == "error" else 0), f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    for fragment in map(world.fill, case.says):
        assert fragment in said, f"{fragment!r} not in the message:\n{said}"
    assert snapshot(world.protected) == before, "a file written before the bad run changed"


def test_the_table_covers_every_input_and_outcome(capsys):
    """At least 150 rows, every category, both outcomes; the counts go to the test log."""
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    assert len(CASES) >= 150
    categories = Counter(c.category for c in CASES)
    assert set(categories) == {
        "audio",
        "manifest",
        "task",
        "recipe",
        "cli",
        "checkpoint",
        "hf",
        "results",
        "validate",
    }
    outcomes = Counter(c.outcome for c in CASES)
    assert set(outcomes) == {"error", "warning"}
    xfail = Counter(c.category for c in CASES if c.xfail)
    lines = [f"{len(CASES)} bad-input cases; {sum(xfail.values())} fail today (strict xfail)"]
    lines += [f"  {k:<11} {n:>4}  ({xfail[k]} xfail)" for k, n in sorted(categories.items())]
    lines += [f"  outcome {k}: {n}" for k, n in sorted(outcomes.items())]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    if os.environ.get("EVALKIT_CASES_SUMMARY"):
        Path(os.environ["EVALKIT_CASES_SUMMARY"]).write_text("\n".join(lines) + "\n")
