"""`evalkit run`: the whole pipeline, resumable stage by stage.

    synthesise the suite -> pre-train the five upstreams -> make their random-init twins
    -> evaluate them and the baselines on the ten tasks -> build the leaderboard

Every stage is skipped when its outputs exist (a finished pre-training has
`pretraining.finished` in its config.json; an evaluation has its result
file), so a killed run re-run with the same command resumes where it stopped.
Pre-training and evaluation jobs run side by side in `workers` processes of one
thread each, in the order their dependencies allow (HuBERT iteration 2 after
iteration 1, DistilHuBERT after HuBERT, each evaluation after its checkpoint).
Each stage's wall time goes to WORKDIR/stages.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.registry import suggest
from evalkit.core.results import git_hash
from evalkit.evaluation.evaluate import EvalOptions, resolve_device, resolve_tasks, run_eval
from evalkit.leaderboard.build import build_leaderboard
from evalkit.pipeline.plan import (
    PUBLISHED,
    UPSTREAM_PLAN,
    check_only,
    evaluated,
    has_work,
    resolved_config,
    with_dependencies,
)
from evalkit.pipeline.profiles import RUN_PROFILES, RunProfile
from evalkit.pipeline.publish import seed_from_published
from evalkit.pipeline.scheduler import (
    ClusterOptions,
    Job,
    Stages,
    cluster_executor,
    default_workers,
    run_jobs,
)
from evalkit.pipeline.twins import make_random_twin, shared_twins
from evalkit.pretraining.loop import pretrain
from evalkit.synth.suite import SUITE_CORPORA, build_suite
from upstreams.checkpoint import is_finished


def _suite_done(suite: Path) -> bool:
    """True when `suite` holds a finished synthesis: its stamp, every corpus's manifests, no pending parts."""
    return (suite / "suite.json").is_file() and all(
        any((suite / c).glob("*.jsonl")) and not (suite / c / ".parts").exists() for c in SUITE_CORPORA
    )


def _pretrain_job(cfg: Path, data: Path, out: Path, max_steps: int | None, device: str | None = None) -> None:
    resume = (out / "train_state").exists()
    pretrain(cfg, data=data, out=out, max_steps=max_steps, resume=resume, progress=False, device=device)


def _eval_job(spec: str, opts: EvalOptions) -> None:
    run_eval(spec, resolve_tasks("all"), opts)


def record_invocation(work: Path, profile: str) -> None:
    """Append this invocation (evalkit commit, start time) to WORKDIR/run.json, with the machine it runs on."""
    path = work / "run.json"
    run = json.loads(path.read_text()) if path.is_file() else {}
    run.update(
        profile=profile,
        settings=asdict(RUN_PROFILES[profile]),
        cpus=os.cpu_count(),
        machine=platform.machine(),
        python=platform.python_version(),
        torch=torch.__version__,
    )
    run.setdefault("invocations", []).append(
        {"evalkit_commit": git_hash(dirty=True), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    )
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(run, indent=1))


def finish_invocation(work: Path, ran: list[str], took: float, interrupted: str | None = None) -> None:
    """Add to this invocation's record in WORKDIR/run.json the stages it ran and its wall time.

    A run finished over several invocations (a resume after a crash, or a later one that
    redoes the stages whose results were deleted) then says which invocation made what.
    An invocation that found nothing to do made nothing: its record is dropped. One that was
    interrupted (`interrupted`: why) keeps its record, with the stages it finished and the wall
    time it spent, so that the invocations' wall times add up to what the run cost.
    """
    path = work / "run.json"
    run = json.loads(path.read_text())
    if interrupted is not None:
        run["invocations"][-1].update(stages=ran, wall_s=round(took, 1), interrupted=interrupted)
    elif ran:
        run["invocations"][-1].update(stages=ran, wall_s=round(took, 1))
    else:
        run["invocations"].pop()
    atomic_write_text(path, json.dumps(run, indent=1))


def run_pipeline(
    profile: str = "default",
    workdir: str | Path = "work",
    jobs: int | None = None,
    workers: int | None = None,
    only: list[str] | None = None,
    from_published: str | Path | None = None,
    log=print,
    device: str = "auto",
    executor: str = "local",
    cluster: ClusterOptions = ClusterOptions(),
) -> Path:
    """Run (or resume) the whole pipeline; returns the leaderboard folder.

    `executor`: where the pre-training and evaluation jobs run: `local` (a process pool here), or through
    submitit, `submitit-local` (subprocesses here) or `slurm` (a job each, asking for `cluster`'s resources;
    the work folder must be on a filesystem the nodes share).
    `jobs`: synthesis processes; `workers`: pre-training/evaluation jobs run side by side.
    `device`: where pre-training and evaluation run (auto, cpu, cuda, cuda:N; `evalkit eval --device`).
    `only`: run the stages of these upstreams (and baselines) alone, with the pre-trainings they
    need; the rest of the work folder is left as it is. `from_published`: start an empty work
    folder from a published leaderboard folder (`publish`), less the results of `only`, so
    that one changed recipe is redone without re-running everything.
    """
    p = _run_profile(profile)
    _check_settings(Path(workdir), jobs, workers)
    resolve_device(device)  # a GPU asked for where there is none stops before any work
    pool = cluster_executor(executor, Path(workdir) / profile / "submitit", cluster)  # its errors too
    work = Path(workdir) / profile
    selected = check_only(only, p.baselines)
    if from_published is not None:
        seed_from_published(Path(from_published), work, skip=selected or set(), log=log)
    stages = Stages(work)
    record_invocation(work, profile)
    t0 = time.time()

    try:
        board, plan = _run_stages(
            p, work, Path(workdir), jobs, workers, selected, stages, log, device, (pool, executor, cluster)
        )
    except BaseException as e:  # a failed stage, Ctrl-C or SIGTERM: keep what this invocation spent
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {type(e).__name__}"
        finish_invocation(work, stages.ran, time.time() - t0, interrupted=why)
        raise
    took = time.time() - t0
    if plan:  # an invocation with nothing left to do keeps the total of the one that did the work
        stages.times.pop("total (last invocation)", None)
        stages.record("total (last invocation)", took, log)
    finish_invocation(work, [job.name for job in plan], took)
    return board


def _run_stages(
    p: RunProfile,
    work: Path,
    workdir: Path,
    jobs: int | None,
    workers: int | None,
    selected: set[str] | None,
    stages: Stages,
    log,
    device: str = "auto",
    runner: tuple = (None, "local", ClusterOptions()),
) -> tuple[Path, list[Job]]:
    """Synthesis, the planned pre-training and evaluation jobs, the leaderboard: (its folder, the jobs)."""
    suite, results = work / "suite", work / "results"
    # build_suite always runs (it checks the folder's profile and version, and finishes a partial suite)
    stages.run(
        "synth", lambda: build_suite(suite, p.suite, seed=0, jobs=jobs), log, did_work=not _suite_done(suite)
    )

    opts = eval_options(p, work, workdir, device)
    twin_opts = twin_options(p, opts)
    twins = shared_twins(p.size)
    chosen = [n for n in PUBLISHED if selected is None or n in selected]
    plan = _pretrain_jobs(p, work, chosen, selected, twins, opts, log)
    plan += _eval_jobs(
        p.baselines, chosen, selected, work / "upstreams", twins, opts, twin_opts, {j.name for j in plan}
    )
    for job in plan:
        log(f"[plan] {job.name}")
    pool, kind, cluster = runner
    if workers is None:  # a cluster takes every job that is ready; here, one per core up to two
        workers = max(1, len(plan)) if kind == "slurm" else default_workers()
    run_jobs(plan, workers, stages, log, pool, threads=cluster.cpus if kind == "slurm" else 1)

    board = work / "leaderboard"
    stages.run("leaderboard", lambda: build_leaderboard(results, board), log)
    return board, plan


def eval_options(p: RunProfile, work: Path, workdir: Path, device: str = "auto") -> EvalOptions:
    """How `evalkit run` evaluates: the profile's protocol, budget and head seeds, results and cache in `work`."""
    return EvalOptions(
        data=work / "suite",
        output=work / "results",
        cache=work / "cache",
        steps=p.eval_steps,
        seeds=list(p.seeds) if p.seeds else None,
        seed_rates=p.seed_rates,
        protocol=p.protocol,
        device=device,
        progress=False,
        clash_advice=(
            "Keep both by running into a new --workdir, or delete the result file (and its .samples.jsonl) "
            f"to have `evalkit run` redo it in {workdir}."
        ),
    )


def twin_options(p: RunProfile, opts: EvalOptions) -> EvalOptions:
    """How the random-init twins are evaluated: as the others, with the profile's `twin_seeds`."""
    if p.twin_seeds is None:
        return opts
    several = len(p.twin_seeds) > 1
    return replace(opts, seeds=list(p.twin_seeds), seed_rates=p.seed_rates if several else "grid")


def _check_settings(workdir: Path, jobs: int | None, workers: int | None) -> None:
    """Refuse, before any work, values that would otherwise fail (or be replaced silently) after synthesis."""
    for option, value in (("--jobs", jobs), ("--workers", workers)):
        if value is not None and value < 1:
            raise EvalkitError(f"{option} {value}: give at least 1 (or leave it out for the default).")
    blocker = next((q for q in (workdir, *workdir.parents) if q.exists() and not q.is_dir()), None)
    if blocker is not None:
        raise EvalkitError(
            f"--workdir {workdir}: {blocker} is a file, not a folder. Give --workdir a folder."
        )


def _run_profile(profile: str) -> RunProfile:
    if profile not in RUN_PROFILES:
        raise EvalkitError(
            f"Unknown run profile {profile!r}.{suggest(profile, RUN_PROFILES)} Choose from {', '.join(RUN_PROFILES)}."
        )
    return RUN_PROFILES[profile]


def _pretrain_jobs(
    p: RunProfile,
    work: Path,
    chosen: list[str],
    selected: set[str] | None,
    twins: dict[str, list[str]],
    opts: EvalOptions,
    log,
) -> list[Job]:
    """The pre-trainings still to run, each after the unfinished ones it builds on."""
    upstream_dir = work / "upstreams"
    # A checkpoint is made only for evaluations still missing (its own or its twin's) or for a later
    # pre-training that builds on it: a folder seeded with results pre-trains nothing it does not use.
    wanted = with_dependencies({n for n in chosen if has_work(n, upstream_dir, twins, opts)}, upstream_dir)
    plan: list[Job] = []
    for name, (_, needs) in UPSTREAM_PLAN.items():
        out = upstream_dir / name
        if is_finished(out):
            log(f"[pretrain] {name}: done ({out})")
            continue
        if name not in wanted:
            if selected is None:
                log(f"[pretrain] {name}: not needed (the evaluations that would use it have results)")
            continue
        cfg = resolved_config(name, p.size, upstream_dir, work / "configs")
        deps = tuple(d for d in needs.values() if not is_finished(upstream_dir / d))
        plan.append(
            Job(
                f"pretrain {name}",
                _pretrain_job,
                (cfg, work / "suite", out, p.max_steps, resolve_device(opts.device)),
                tuple(f"pretrain {d}" for d in deps),
            )
        )
    return plan


def _eval_jobs(
    baselines: tuple[str, ...],
    chosen: list[str],
    selected: set[str] | None,
    upstream_dir: Path,
    twins: dict[str, list[str]],
    opts: EvalOptions,
    twin_opts: EvalOptions,
    planned: set[str],
) -> list[Job]:
    """The evaluations still missing: baselines, the pre-trained upstreams (after their pre-training)
    and their random-init twins (made from the trained checkpoint's config).

    Longest first, so that two workers end together: the baselines (FBANK's 100 Hz frames cost twice
    a tiny upstream's), the pre-trained upstreams, then the twins (one head seed where the profile
    gives them fewer, as `full` does)."""
    plan: list[Job] = []
    for spec in baselines:
        if (selected is None or spec in selected) and not evaluated(spec, opts):
            plan.append(Job(f"eval {spec}", _eval_job, (spec, opts)))
    twin_jobs: list[Job] = []
    for name in chosen:
        trained = upstream_dir / name
        needs = tuple(n for n in [f"pretrain {name}"] if n in planned)
        if not evaluated(str(trained), opts):
            plan.append(Job(f"eval {name}", _eval_job, (str(trained), opts), needs))
        if name in twins:
            twin = upstream_dir / f"{name}-random"
            if not evaluated(str(twin), twin_opts):
                twin_jobs.append(
                    Job(f"twin {name}", make_random_twin, (trained, twin, 0, twins[name]), needs)
                )
                twin_jobs.append(
                    Job(f"eval {name}-random", _eval_job, (str(twin), twin_opts), (f"twin {name}",))
                )
    return plan + twin_jobs
