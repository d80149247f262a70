"""Runs the pipeline's jobs in dependency order in a local process pool, recording each stage's wall time."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text


class Stages:
    """Records the wall time of each stage in WORKDIR/stages.json (kept across resumes)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "stages.json"
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.ran: list[str] = []  # the stages this invocation did work in, in the order they ended

    def record(self, name: str, took: float, log, did_work: bool = True) -> None:
        if (
            did_work or name not in self.times
        ):  # a stage found already done keeps the time of the run that did it
            self.times[name] = round(took, 1)
        if did_work:
            self.ran.append(name)
        atomic_write_text(self.path, json.dumps(self.times, indent=1))
        log(f"== {name}: {took:.0f} s")

    def run(self, name: str, fn, log, did_work: bool = True):
        t0 = time.time()
        result = fn()
        self.record(name, time.time() - t0, log, did_work)
        return result


@dataclass
class Job:
    """One stage for the scheduler: `fn(*args)` (picklable, for worker processes) after `needs`."""

    name: str
    fn: Callable
    args: tuple
    needs: tuple[str, ...] = ()


def _worker_init() -> None:
    # Each worker gets one core's worth of threads: the jobs are small models, and two
    # one-thread jobs side by side beat one two-thread job (evalkit/evaluation/evaluate.py, train_threads).
    torch.set_num_threads(1)


def _timed(fn: Callable, args: tuple) -> float:
    t0 = time.time()
    fn(*args)
    return time.time() - t0


def run_jobs(jobs: list[Job], workers: int, stages: Stages, log=print) -> None:
    """Run `jobs` respecting `needs`, up to `workers` at once (1: in this process, in order).

    A failed job stops the scheduling of new ones; jobs already running finish (and
    keep their outputs), then the first error is raised. Re-running resumes.
    """
    known = {j.name for j in jobs}
    for j in jobs:
        if missing := [n for n in j.needs if n not in known]:
            raise EvalkitError(f"pipeline job {j.name!r} needs unknown job(s) {missing}")
    if workers <= 1:
        for j in jobs:
            stages.record(j.name, _timed(j.fn, j.args), log)
        return
    error = _run_in_pool(jobs, workers, stages, log)
    if error is not None:
        raise error


def _run_in_pool(jobs: list[Job], workers: int, stages: Stages, log) -> BaseException | None:
    """Run `jobs` in `workers` spawned processes; returns the first error (after the running jobs end)."""
    pending, done, running = list(jobs), set(), {}
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        try:
            error = _schedule(pool, pending, done, running, workers, stages, log)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the running jobs now instead of waiting for them
            # (no public way before Python 3.14's terminate_workers)
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return error


def _schedule(
    pool: ProcessPoolExecutor,
    pending: list[Job],
    done: set[str],
    running: dict[Future, Job],
    workers: int,
    stages: Stages,
    log,
) -> BaseException | None:
    """Submit jobs as their needs finish and record each finished one; returns the first error."""
    error = None
    while pending or running:
        if error is None:
            _submit_ready(pool, pending, done, running, workers)
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in finished:
            job = running.pop(fut)
            if fut.exception() is not None:
                error = error or fut.exception()
                log(f"== {job.name}: failed: {fut.exception()}")
                continue
            done.add(job.name)
            stages.record(job.name, fut.result(), log)
    return error


def _submit_ready(
    pool: ProcessPoolExecutor, pending: list[Job], done: set[str], running: dict[Future, Job], workers: int
) -> None:
    """Start pending jobs whose needs are done, in plan order, until `workers` run."""
    while len(running) < workers:
        ready = next((j for j in pending if all(n in done for n in j.needs)), None)
        if ready is None:
            break
        pending.remove(ready)
        running[pool.submit(_timed, ready.fn, ready.args)] = ready


def default_workers() -> int:
    """Two workers where there are two cores or more (the downstream jobs are single-threaded)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1
