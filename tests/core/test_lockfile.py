"""The lock file that guards a feature cache where a cluster's jobs share it over a network filesystem:
one holder at a time, a heartbeat while held, and a stale lock (a dead holder) broken by the next comer."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import threading
import time
from pathlib import Path

from evalkit.core.lockfile import exclusive, stale
from evalkit.evaluation.features import CachedFeatures, extract
from upstreams.load import load_upstream


def _hold(lock: str, log: str, name: str) -> None:
    with exclusive(lock, poll_s=0.05):
        with open(log, "a") as f:
            f.write(f"{name} in\n")
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"{name} out\n")


def test_two_processes_take_turns(tmp_path):
    lock, log = tmp_path / "x.lock", tmp_path / "log"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(str(lock), str(log), n)) for n in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = log.read_text().split()
    assert [p.exitcode for p in procs] == [0, 0]
    pairs = [lines[i : i + 4] for i in range(0, len(lines), 4)]
    assert pairs in (
        [["a", "in", "a", "out"], ["b", "in", "b", "out"]],
        [["b", "in", "b", "out"], ["a", "in", "a", "out"]],
    )
    assert not lock.exists()  # released


def test_a_lock_of_a_dead_process_on_this_host_is_broken(tmp_path):
    lock = tmp_path / "x.lock"
    ctx = mp.get_context("spawn")
    dead = ctx.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": time.time()}))
    assert stale(lock)
    with exclusive(lock, poll_s=0.05):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_lock_of_another_host_is_broken_only_when_its_heartbeat_stops(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": time.time()}))
    assert not stale(lock, stale_s=60)  # fresh: its holder may be alive on its own node
    old = time.time() - 600
    os.utime(lock, (old, old))
    assert stale(lock, stale_s=60)
    with exclusive(lock, poll_s=0.05, stale_s=60):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()


def test_a_waiter_waits_for_a_live_holder_and_the_holder_keeps_its_lock_fresh(tmp_path):
    lock = tmp_path / "x.lock"
    got = threading.Event()

    def wait_for_it() -> None:
        with exclusive(lock, poll_s=0.05, stale_s=0.5):
            got.set()

    with exclusive(lock, heartbeat_s=0.1):
        first = lock.stat().st_mtime
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(1.0)  # twice the waiter's stale limit: only the heartbeat keeps the lock
        assert not got.is_set() and lock.stat().st_mtime > first
    waiter.join(10)
    assert got.is_set()


def _extract(cache: str, manifest: str) -> None:
    extract(load_upstream("fbank"), manifest, cache, progress=False)


def test_two_jobs_extracting_the_same_split_get_one_complete_cache(smoke_suite, tmp_path):
    """As two cluster jobs of one upstream would: one extracts while the other waits, then reads the cache;
    its shards pass their checksums and a later job writes nothing."""
    manifest, cache = smoke_suite / "ks" / "train.jsonl", tmp_path / "cache"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_extract, args=(str(cache), str(manifest))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    (index,) = list(cache.rglob("index.json"))
    shards = sorted(Path(index.parent).glob("shard_*.npy"))
    mtimes = {s: s.stat().st_mtime_ns for s in shards}
    features = CachedFeatures.open(index.parent)  # checksums verified
    assert len(features) == sum(1 for _ in open(manifest))
    _extract(str(cache), str(manifest))  # a third job finds it complete and writes nothing
    assert {s: s.stat().st_mtime_ns for s in shards} == mtimes
    assert not list(index.parent.glob(".lock*"))
