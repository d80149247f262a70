"""An exclusive lock that holds on network filesystems: a lock file made with O_EXCL, kept fresh by its
holder, broken when its holder is gone.

`fcntl` locks are unreliable on many shared filesystems (NFS without a working lock daemon, several FUSE
mounts), where the jobs of a cluster run (`evalkit run --executor slurm` keeps the feature cache on a
shared folder). Creating a file with O_CREAT | O_EXCL is atomic on local filesystems and NFSv3 or later.
The holder writes its host, pid and start time into the file and touches it every `heartbeat_s` seconds
from a daemon thread. A waiter breaks the lock when its holder ran on the waiter's own host and no longer
runs, or when the file has not been touched for `stale_s` seconds (a holder on another host that died);
breaking is an atomic rename, so that two waiters cannot both break the same lock and then both take it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_S = 15.0  # how often a holder touches its lock file
STALE_S = 120.0  # a lock file untouched this long has lost its holder (eight missed heartbeats)


@contextmanager
def exclusive(
    path: str | os.PathLike, poll_s: float = 0.5, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S
) -> Iterator[None]:
    """Hold the lock file `path` for the block: wait while another live holder has it, break it when stale."""
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            seen = _snapshot(path)
            if seen is not None and stale(path, stale_s):
                _break(path, seen)
            else:
                time.sleep(poll_s)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, done, heartbeat_s), daemon=True)
    beat.start()
    try:
        yield
    finally:
        done.set()
        beat.join()
        if _holder(path) == me:  # not if a waiter broke it meanwhile (a pause longer than stale_s)
            path.unlink(missing_ok=True)


def stale(path: Path, stale_s: float = STALE_S) -> bool:
    """Whether the lock file's holder is gone: a dead process of this host, or no heartbeat for `stale_s`."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: simply try again
    holder = _holder(path)
    if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # another user's live process
    return age > stale_s


def _holder(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # gone, or just created and not yet written
    return data if isinstance(data, dict) else None


def _snapshot(path: Path) -> tuple[str, float] | None:
    """The lock file's text and mtime, to know afterwards that a rename moved the very file judged stale."""
    try:
        return path.read_text(), path.stat().st_mtime
    except OSError:
        return None


def _break(path: Path, judged: tuple[str, float]) -> None:
    """Remove the stale lock file `judged` (text, mtime). Of several waiters that try at once one renames it
    and the rest find it gone; one that renamed a newer lock instead (taken between its look and its
    rename) puts that back, unless yet another has been made since."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _snapshot(aside) != judged:
        try:
            os.link(aside, path)  # atomic: fails if a lock file exists again
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def _heartbeat(path: Path, done: threading.Event, every: float) -> None:
    while not done.wait(every):
        try:
            os.utime(path)
        except FileNotFoundError:
            return
