"""Atomic file I/O: readers never see half a file, a crash leaves the old one in place."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path

import yaml

from evalkit.core.errors import ConfigError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """A file opened on a temporary name beside `path`, renamed into place (after fsync) when the
    block ends without error; on error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file here (0o666 less the umask), for files made by
    writers that ignore the umask (safetensors: always 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Removes the temporary files that writers killed midway left in `folder` (`.<name>.<8 hex>.tmp`,
    see `_create_beside`); only for a folder no other process is writing into. Returns how many."""
    stale = [p for p in Path(folder).glob(".*.tmp") if _TEMPORARY.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _create_beside(path: Path) -> tuple[int, str]:
    """A new, uniquely named file beside `path`, open for writing. Created like `open(path, "w")`
    creates a file (mode 0o666 less the umask), not like `tempfile.mkstemp` (always 0o600): a shared
    results folder stays readable to those the umask lets read it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename it into place."""
    with atomic_open(path, "w") as f:
        f.write(text)


def read_json_object(path: str | os.PathLike, kind: str) -> dict:
    """A JSON file that must hold an object; `kind` ("result", "reference") words the errors, which
    name the file."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e}).") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            f"{kind} files are UTF-8 JSON."
        ) from None
    if not text.strip():
        raise ConfigError(f"{path}: empty file, not a {kind}.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not a readable {kind} JSON ({e}).") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply to be a {kind}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {kind} file is a JSON object, this one holds a {type(data).__name__}.")
    return data


def read_yaml(path: str | os.PathLike, kind: str):
    """A YAML file's contents (safe_load: no Python tags); `kind` ("task", "recipe") words the
    errors, which name the file: missing, not UTF-8, not YAML."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {kind} file not found.") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8."
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from None
