"""Runs the pipeline's jobs in dependency order, recording each stage's wall time: in a local process pool
(the default), or through submitit (`evalkit run --executor submitit-local|slurm`: one cluster job per
pipeline job, results and cache on the work folder, which a Slurm cluster must share with its nodes)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
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


def run_jobs(
    jobs: list[Job], workers: int, stages: Stages, log=print, executor=None, threads: int = 1
) -> None:
    """Run `jobs` respecting `needs`, up to `workers` at once (1 and no `executor`: in this process, in
    order); `executor`: a submitit executor that runs each job (see `cluster_executor`) with `threads`
    torch threads.

    A failed job stops the scheduling of new ones; jobs already running finish (and
    keep their outputs), then the first error is raised. Re-running resumes.
    """
    known = {j.name for j in jobs}
    for j in jobs:
        if missing := [n for n in j.needs if n not in known]:
            raise EvalkitError(f"pipeline job {j.name!r} needs unknown job(s) {missing}")
    if executor is not None:
        error = _run_on_executor(jobs, executor, workers, threads, stages, log)
    elif workers <= 1:
        for j in jobs:
            stages.record(j.name, _timed(j.fn, j.args), log)
        return
    else:
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
            _submit_ready(lambda job: pool.submit(_timed, job.fn, job.args), pending, done, running, workers)
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
    submit: Callable[[Job], object], pending: list[Job], done: set[str], running: dict, workers: int
) -> None:
    """Start pending jobs whose needs are done, in plan order, until `workers` run; `submit(job)` starts one
    and returns its handle (a future, or a submitit job)."""
    while len(running) < workers:
        ready = next((j for j in pending if all(n in done for n in j.needs)), None)
        if ready is None:
            break
        pending.remove(ready)
        running[submit(ready)] = ready


# How often the scheduler asks submitit whether its jobs are done (a Slurm query each time).
POLL_SECONDS = 2.0


def _timed_with_threads(fn: Callable, args: tuple, threads: int) -> float:
    """A job as a submitit job runs it: with `threads` torch threads (the local pool's workers have one)."""
    torch.set_num_threads(threads)
    return _timed(fn, args)


def _run_on_executor(
    jobs: list[Job], executor, workers: int, threads: int, stages: Stages, log
) -> BaseException | None:
    """Run `jobs` as submitit jobs, at most `workers` at once; returns the first error (after the running
    jobs end). Ctrl-C or SIGTERM cancels the submitted jobs."""
    pending, done, running, error = list(jobs), set(), {}, None

    def submit(job: Job):
        handle = executor.submit(_timed_with_threads, job.fn, job.args, threads)
        log(f"[submitted] {job.name}: job {handle.job_id}")
        return handle

    try:
        while pending or running:
            if error is None:
                _submit_ready(submit, pending, done, running, workers)
            if not running:
                break
            finished = [h for h in running if h.done()]
            if not finished:
                time.sleep(POLL_SECONDS)
                continue
            for handle in finished:
                job = running.pop(handle)
                try:
                    took = handle.result()
                except Exception as e:  # the job's own error, or submitit's for a job that died
                    error = error or e
                    log(f"== {job.name}: failed (job {handle.job_id}, logs {handle.paths.folder}): {e}")
                    continue
                done.add(job.name)
                stages.record(job.name, took, log)
    except KeyboardInterrupt:
        for handle in running:
            handle.cancel(check=False)
        raise
    return error


EXECUTORS = ("local", "submitit-local", "slurm")


@dataclass(frozen=True)
class ClusterOptions:
    """What each job asks a cluster for (`evalkit run --slurm-*`); submitit's local executor reads only the
    time limit and the CPUs."""

    partition: str | None = None
    time_min: int = 240
    mem_gb: float = 32.0
    gpus: int = 1
    cpus: int = 4


def cluster_executor(kind: str, folder: Path, options: ClusterOptions = ClusterOptions()):
    """The submitit executor of `--executor` (None for `local`, the process pool), logging under `folder`."""
    if kind not in EXECUTORS:
        raise EvalkitError(f"--executor {kind!r}: choose {', '.join(EXECUTORS)}.")
    if kind == "local":
        return None
    try:
        import submitit  # optional: only a cluster run needs it
    except ImportError:
        raise EvalkitError(
            f"--executor {kind} needs submitit: pip install 'evalkit[cluster]' (or pip install submitit)."
        ) from None
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise EvalkitError(
            "--executor slurm: no `sbatch` on this machine's PATH, so there is no Slurm to submit to. Run it "
            "on a Slurm login node, or use --executor submitit-local (or the default local pool) here."
        )
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm" if kind == "slurm" else "local")
    params: dict = {"timeout_min": options.time_min, "cpus_per_task": options.cpus, "name": "evalkit"}
    if kind == "slurm":
        params |= {"mem_gb": options.mem_gb, "gpus_per_node": options.gpus}
        if options.partition:
            params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    return executor


def default_workers() -> int:
    """Two workers where there are two cores or more (the downstream jobs are single-threaded)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1
