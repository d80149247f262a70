"""evalkit.core.progress: tqdm's bar on a terminal, a few plain lines in a log."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import tqdm.std

from evalkit.core.progress import progress_bar

ROOT = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """tqdm's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    return clock


def test_a_log_gets_a_first_and_a_last_line_not_a_frame_per_update():
    log = io.StringIO()
    for _step in progress_bar(range(200), desc="ks train", file=log, leave=False):
        pass
    bar = progress_bar(total=200, desc="ks train", file=log, leave=False)
    for _ in range(200):
        bar.set_postfix(loss="0.123")  # refreshes the bar at every step
        bar.update()
    bar.close()
    out = log.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert lines[0].startswith("ks train:   0%") and "0/200" in lines[0]
    assert lines[1].startswith("ks train: 100%") and "200/200" in lines[1]
    assert "200/200" in lines[3] and "loss=0.123" in lines[3]
    assert out.endswith("\n")


def test_a_log_gets_at_most_a_line_per_interval(clock):
    log = io.StringIO()
    bar = progress_bar(total=200, desc="train", file=log)
    for _ in range(200):
        clock.now += 1.0  # 200 s in all: a line each 30 s, and the first and last
        bar.set_postfix(loss="1.0")
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert 7 <= len(lines) <= 9, lines
    assert "200/200" in lines[-1]
    assert len(set(lines)) == len(lines)


def test_tqdm_write_between_lines_keeps_every_line_whole():
    log = io.StringIO()
    bar = progress_bar(total=3, file=log)
    bar.update()
    tqdm.std.tqdm.write("a message", file=log)
    bar.update(2)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[1] == "a message"
    assert "\r" not in log.getvalue()
    assert "3/3" in lines[-1]


def test_disable_writes_nothing():
    for stream in (io.StringIO(), FakeTerminal()):
        for _ in progress_bar(range(50), file=stream, disable=True):
            pass
        bar = progress_bar(total=5, file=stream, disable=True)
        bar.update(5)
        bar.set_postfix(loss=1)
        bar.close()
        assert stream.getvalue() == ""


def test_a_terminal_gets_tqdms_own_bar(clock):
    def drive(make) -> str:
        term = FakeTerminal()
        bar = make(total=200, desc="ks train", file=term, leave=False)
        for _ in range(200):
            clock.now += 0.05
            bar.set_postfix(loss="0.5")
            bar.update()
        bar.close()
        return term.getvalue()

    ours = drive(progress_bar)
    assert ours == drive(tqdm.std.tqdm)
    assert ours.count("\r") > 200


def test_every_bar_of_the_project_goes_through_the_helper():
    """A tqdm made anywhere else would write a frame per update into a log."""
    offenders = []
    for folder in ("evalkit", "upstreams"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "evalkit" / "core" / "progress.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                    if name in ("tqdm", "trange", "tqdm_notebook"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"make progress bars with evalkit.core.progress.progress_bar: {offenders}"
