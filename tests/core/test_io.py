"""evalkit.core.io: atomic writes that leave files with the modes an ordinary open would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from evalkit.core.io import atomic_open, atomic_write_text
from evalkit.core.manifest import write_manifest
from evalkit.core.results import samples_path, write_result


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=oct)
def umask(request):
    """The process umask set for the test and restored after it."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writers_give_the_mode_of_an_ordinary_open(tmp_path, umask):
    """A shared results folder stays readable to the group (and others) as the umask allows."""
    expected = 0o666 & ~umask
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert mode(tmp_path / "plain.txt") == expected

    with atomic_open(tmp_path / "text.txt", "w") as f:
        f.write("x")
    with atomic_open(tmp_path / "bytes.bin", "wb") as f:
        f.write(b"x")
    atomic_write_text(tmp_path / "new" / "page.html", "<html/>")
    write_manifest(tmp_path / "train.jsonl", [{"id": "a", "path": "a.wav", "duration": 1.0}])
    write_result(tmp_path / "result.json", {"task": "ks"}, [{"id": "a"}])
    written = ["text.txt", "bytes.bin", "new/page.html", "train.jsonl", "result.json"]
    for name in written:
        assert mode(tmp_path / name) == expected, name
    assert mode(samples_path(tmp_path / "result.json")) == expected
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_overwriting_gives_the_ordinary_mode_too(tmp_path, umask):
    path = tmp_path / "result.json"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert mode(path) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_writers_in_parallel_do_not_collide(tmp_path):
    """Unique temporary names: many writers of one folder at once all land."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> None:
        atomic_write_text(tmp_path / f"{i % 4}.txt", str(i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(64)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt", "2.txt", "3.txt"]


def test_remove_temporaries_takes_only_what_atomic_writers_leave(tmp_path):
    from evalkit.core.io import remove_temporaries

    kept = ["a.wav", ".a.wav.tmp", ".a.wav.1234567.tmp", "a.wav.0123abcd.tmp", ".hidden"]
    for name in [*kept, ".a.wav.0123abcd.tmp", ".x.json.ffffffff.tmp"]:
        (tmp_path / name).write_text("x")
    assert remove_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
