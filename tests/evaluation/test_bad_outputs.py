"""Where `evalkit eval` writes, and what it reads back there, fails clearly and before any work.

An --output (or --cache) that cannot be written used to be found only when the first task had
trained and its result was written (wasted compute, then a traceback); a result file that is not
UTF-8 stopped a resume with a UnicodeDecodeError traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import evalkit.evaluation.evaluate as evaluate
from evalkit.cli import main


def evaluate_cli(suite: Path, out: Path, *extra: str) -> int:
    args = ["eval", "--upstream", "fbank", "--tasks", "ks", "--data", str(suite), "--output", str(out)]
    return main([*args, "--protocol", "quick", "--steps", "2", *extra])


@pytest.fixture
def no_upstream(monkeypatch):
    """Fails the test if the upstream is loaded: the output must be checked before."""

    def refuse(spec, device="cpu"):
        raise AssertionError(f"the upstream {spec} was loaded before the output folder was checked")

    monkeypatch.setattr(evaluate, "load_upstream", refuse)


def test_output_that_is_a_file(smoke_suite, tmp_path, capsys, no_upstream):
    out = tmp_path / "results.txt"
    out.write_text("not a folder\n")
    assert evaluate_cli(smoke_suite, out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--output" in err and "not a folder" in err, err
    assert out.read_text() == "not a folder\n"


def test_output_under_a_file(smoke_suite, tmp_path, capsys, no_upstream):
    """A folder that cannot be created (as under a read-only folder; this one fails for root too)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert evaluate_cli(smoke_suite, blocker / "sub") == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "--output" in err and "Traceback" not in err, err
    assert blocker.read_text() == "x"


def test_read_only_output(smoke_suite, tmp_path, capsys, no_upstream):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip(
                "running as root: chmod 0o555 does not stop writes (test_output_under_a_file covers it)"
            )
        assert evaluate_cli(smoke_suite, out) == 2
        err = capsys.readouterr().err
        assert str(out) in err and "--output" in err, err
    finally:
        out.chmod(0o755)


def test_cache_under_a_file(smoke_suite, tmp_path, capsys, no_upstream):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert evaluate_cli(smoke_suite, tmp_path / "out", "--cache", str(blocker / "cache")) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "--cache" in err, err
    assert not list((tmp_path / "out").rglob("*.json"))


@pytest.fixture
def existing(smoke_suite, tmp_path) -> Path:
    """A finished KS result of fbank under tmp_path/out; returns its file."""
    assert evaluate_cli(smoke_suite, tmp_path / "out") == 0
    return tmp_path / "out" / "fbank" / "ks.json"


@pytest.mark.parametrize(
    "content",
    [b'{"task": "ks", "note": "caf\xe9"}\n', b'{"task": "ks", '],
    ids=["latin-1", "truncated"],
)
def test_unreadable_result_on_resume(smoke_suite, tmp_path, capsys, existing, content, monkeypatch):
    existing.write_bytes(content)
    monkeypatch.setattr(evaluate, "evaluate_task", lambda *a, **k: pytest.fail("a task ran"))
    assert evaluate_cli(smoke_suite, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(existing) in err and "--overwrite" in err and "delete" in err and "Traceback" not in err, err
    assert existing.read_bytes() == content  # left as it was
    monkeypatch.undo()
    assert evaluate_cli(smoke_suite, tmp_path / "out", "--overwrite") == 0
