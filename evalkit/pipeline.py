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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from evalkit.errors import EvalkitError
from evalkit.manifest import atomic_write_text

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "pretrain"

# name -> (config stem, what it needs from an earlier upstream: {config key path: upstream name})
UPSTREAM_PLAN: dict[str, tuple[str, dict[str, str]]] = {
    "hubert-iter1": ("hubert", {}),
    "hubert": ("hubert-iter2", {"objective.targets.path": "hubert-iter1"}),
    "wav2vec2": ("wav2vec2", {}),
    "bestrq": ("bestrq", {}),
    "summarymixing": ("summarymixing", {}),
    "distilhubert": ("distilhubert", {"objective.teacher": "hubert"}),
}
PUBLISHED = ("hubert", "wav2vec2", "bestrq", "summarymixing", "distilhubert")
BASELINES = ("fbank", "fbank_context")


@dataclass(frozen=True)
class RunProfile:
    suite: str  # synth profile
    size: str  # pre-training config size: tiny | small
    max_steps: int | None = None  # cap on pre-training steps (smoke)
    eval_steps: int | None = None  # downstream steps for every task (None: each task's budget)
    protocol: str = "superb"  # evalkit.evaluate.PROTOCOLS


PROFILES = {
    "smoke": RunProfile("smoke", "tiny", max_steps=12, eval_steps=8, protocol="quick"),
    # eval_steps: half the tasks' budgets, so that synthesis + pre-training + 120 evaluations fit 45 min on 2 cores
    "default": RunProfile("default", "tiny", eval_steps=400, protocol="quick"),
    "full": RunProfile("default", "small"),
}


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def resolved_config(name: str, size: str, upstream_dir: Path, out: Path) -> Path:
    """The recipe for `name` at `size`, with paths to the upstreams it builds on filled in."""
    stem, needs = UPSTREAM_PLAN[name]
    src = CONFIGS / f"{stem}-{size}.yaml"
    if not src.is_file():
        raise EvalkitError(f"{src}: pre-training recipe missing for {name!r} at size {size!r}.")
    cfg = yaml.safe_load(src.read_text())
    for key, dep in needs.items():
        _set(cfg, key, str(upstream_dir / dep))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{size}.yaml"
    atomic_write_text(
        path, f"# resolved from {src.name} by evalkit run\n" + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


# Encoder settings with no effect on a model in eval mode: two recipes differing only here build the same upstream.
TRAINING_ONLY = ("dropout", "attention_dropout", "activation_dropout", "input_dropout", "layerdrop")


def _eval_architecture(encoder: dict) -> dict:
    return {
        part: ({k: v for k, v in spec.items() if k not in TRAINING_ONLY} if isinstance(spec, dict) else spec)
        for part, spec in encoder.items()
    }


def shared_twins(size: str) -> dict[str, list[str]]:
    """Random-init twins: {twin owner: every published upstream whose recipe builds the same encoder}.

    An upstream's architecture is its recipe's `encoder:` section less the settings that
    only act in training (dropout rates, layerdrop), so methods that share one (HuBERT,
    wav2vec 2.0 and BEST-RQ on the same Transformer, whatever their dropout) share one
    twin: the same weights evaluated once instead of three times.
    """
    owners: dict[str, list[str]] = {}
    by_arch: dict[str, str] = {}
    for name in PUBLISHED:
        src = CONFIGS / f"{UPSTREAM_PLAN[name][0]}-{size}.yaml"
        encoder = yaml.safe_load(src.read_text()).get("encoder") if src.is_file() else None
        key = json.dumps(_eval_architecture(encoder), sort_keys=True) if encoder else name
        owner = by_arch.setdefault(key, name)
        owners.setdefault(owner, []).append(name)
    return owners


def _suite_done(suite: Path) -> bool:
    """True when `suite` holds a finished synthesis: its stamp, every corpus's manifests, no pending parts."""
    from evalkit.synth.suite import CORPORA

    return (suite / "suite.json").is_file() and all(
        any((suite / c).glob("*.jsonl")) and not (suite / c / ".parts").exists() for c in CORPORA
    )


def _finished(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    return bool(json.loads(cfg.read_text()).get("pretraining", {}).get("finished"))


def make_random_twin(trained: Path, out: Path, seed: int = 0, twin_of: list[str] | None = None) -> Path:
    """The same architecture as `trained` with random weights: the control every SSL method needs.

    `twin_of`: the upstreams it stands for (default: `trained` alone).
    """
    import torch
    from safetensors.torch import save_file

    from upstreams import UPSTREAMS

    if (out / "model.safetensors").is_file():
        return out
    cfg = json.loads((trained / "config.json").read_text())
    torch.manual_seed(seed)
    model = UPSTREAMS.get(cfg["upstream"])(**cfg.get("config", {}))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    twin = {
        "upstream": cfg["upstream"],
        "config": cfg.get("config", {}),
        "pretraining": {"method": "random-init", "twin_of": ", ".join(twin_of or [trained.name])},
    }
    atomic_write_text(out / "config.json", json.dumps(twin, indent=1))
    return out


class Stages:
    """Records the wall time of each stage in WORKDIR/stages.json (kept across resumes)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "stages.json"
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    def record(self, name: str, took: float, log, did_work: bool = True) -> None:
        if (
            did_work or name not in self.times
        ):  # a stage found already done keeps the time of the run that did it
            self.times[name] = round(took, 1)
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
    # one-thread jobs side by side beat one two-thread job (evalkit/evaluate.py, train_threads).
    import torch

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
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending, done, running, error = list(jobs), set(), {}, None
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        while pending or running:
            while error is None and len(running) < workers:
                ready = next((j for j in pending if all(n in done for n in j.needs)), None)
                if ready is None:
                    break
                pending.remove(ready)
                running[pool.submit(_timed, ready.fn, ready.args)] = ready
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
    if error is not None:
        raise error


def _pretrain_job(cfg: Path, data: Path, out: Path, max_steps: int | None) -> None:
    from evalkit.pretrain import pretrain

    pretrain(
        cfg, data=data, out=out, max_steps=max_steps, resume=(out / "train_state").exists(), progress=False
    )


def _eval_job(spec: str, opts) -> None:
    from evalkit.evaluate import resolve_tasks, run_eval

    run_eval(spec, resolve_tasks("all"), opts)


def _evaluated(spec: str, opts) -> bool:
    """Whether `spec` already has a result for every task (its evaluation job would only skip)."""
    from evalkit.evaluate import resolve_tasks
    from evalkit.results import result_path

    return all(result_path(opts.output, spec, t.name).exists() for t in resolve_tasks("all"))


def _check_only(only: list[str] | None) -> set[str] | None:
    if only is None:
        return None
    known = (*PUBLISHED, *BASELINES)
    if not only:
        raise EvalkitError(f"--only names no upstream. Choose from {', '.join(known)}.")
    for name in only:
        if name not in known:
            from evalkit.registry import suggest

            raise EvalkitError(
                f"--only: unknown upstream {name!r}.{suggest(name, known)} Choose from {', '.join(known)}."
            )
    return set(only)


def _has_work(name: str, upstream_dir: Path, twins: dict[str, list[str]], opts) -> bool:
    """Whether an evaluation of `name`, or of the twin it owns, is missing (so its checkpoint is needed)."""
    if not _evaluated(str(upstream_dir / name), opts):
        return True
    twin = upstream_dir / f"{name}-random"
    return name in twins and not (twin / "model.safetensors").is_file() and not _evaluated(str(twin), opts)


def _with_dependencies(names: set[str], upstream_dir: Path) -> set[str]:
    """`names` and the unfinished pre-trainings they build on (HuBERT iteration 1 for iteration 2, ...)."""
    wanted, todo = set(), [n for n in names if n in UPSTREAM_PLAN]
    while todo:
        name = todo.pop()
        wanted.add(name)
        todo += [
            d for d in UPSTREAM_PLAN[name][1].values() if d not in wanted and not _finished(upstream_dir / d)
        ]
    return wanted


def seed_from_published(published: Path, work: Path, skip: set[str], log=print) -> None:
    """Fill an empty work folder with a published leaderboard's results, stage times and run record.

    The results of the upstreams in `skip` (those about to be redone) are left out.
    A work folder that already has results is left alone, so the command that seeded
    it can be re-run to resume.
    """
    import shutil

    if (work / "results").is_dir():
        log(f"[from-published] {work / 'results'} exists: not seeded again")
        return
    src = published / "results"
    if not src.is_dir() or not (published / "run.json").is_file():
        raise EvalkitError(
            f"{published}: not a published leaderboard (expected results/ and run.json, as written by "
            "`evalkit run --publish`)."
        )
    tmp = work / "results.seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        src, tmp, ignore=lambda folder, names: [n for n in names if Path(folder) == src and n in skip]
    )
    for name in ("stages.json", "run.json"):
        if (published / name).is_file() and not (work / name).exists():
            record = json.loads((published / name).read_text())
            record.pop("published", None)
            atomic_write_text(work / name, json.dumps(record, indent=1))
    tmp.rename(work / "results")  # last, so a crash before it leaves a folder that seeds again
    log(
        f"[from-published] {work / 'results'} seeded from {src}"
        + (f", less {', '.join(sorted(skip))}" if skip else "")
    )


def default_workers() -> int:
    """Two workers where there are two cores or more (the downstream jobs are single-threaded)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def record_invocation(work: Path, profile: str) -> None:
    """Append this invocation (evalkit commit, start time) to WORKDIR/run.json, with the machine it runs on."""
    import platform

    import torch

    from evalkit.results import git_hash

    path = work / "run.json"
    run = json.loads(path.read_text()) if path.is_file() else {}
    run.update(
        profile=profile,
        settings=asdict(PROFILES[profile]),
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


def finish_invocation(work: Path, ran: list[str], took: float) -> None:
    """Add to this invocation's record in WORKDIR/run.json the stages it ran and its wall time.

    A run finished over several invocations (a resume after a crash, or a later one that
    redoes the stages whose results were deleted) then says which invocation made what.
    An invocation that found nothing to do made nothing: its record is dropped.
    """
    path = work / "run.json"
    run = json.loads(path.read_text())
    if ran:
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
) -> Path:
    """Run (or resume) the whole pipeline; returns the leaderboard folder.

    `jobs`: synthesis processes; `workers`: pre-training/evaluation jobs run side by side.
    `only`: run the stages of these upstreams (and baselines) alone, with the pre-trainings they
    need; the rest of the work folder is left as it is. `from_published`: start an empty work
    folder from a published leaderboard folder (`publish`), less the results of `only`, so
    that one changed recipe is redone without re-running everything.
    """
    if profile not in PROFILES:
        from evalkit.registry import suggest

        raise EvalkitError(
            f"Unknown run profile {profile!r}.{suggest(profile, PROFILES)} Choose from {', '.join(PROFILES)}."
        )
    p = PROFILES[profile]
    work = Path(workdir) / profile
    suite, upstream_dir, results = work / "suite", work / "upstreams", work / "results"
    selected = _check_only(only)
    if from_published is not None:
        seed_from_published(Path(from_published), work, skip=selected or set(), log=log)
    stages = Stages(work)
    record_invocation(work, profile)
    t0 = time.time()

    from evalkit.synth.suite import build_suite

    # build_suite always runs (it checks the folder's profile and version, and finishes a partial suite)
    stages.run(
        "synth", lambda: build_suite(suite, p.suite, seed=0, jobs=jobs), log, did_work=not _suite_done(suite)
    )

    from evalkit.evaluate import EvalOptions

    opts = EvalOptions(
        data=suite,
        output=results,
        cache=work / "cache",
        steps=p.eval_steps,
        protocol=p.protocol,
        progress=False,
    )
    twins = shared_twins(p.size)
    plan: list[Job] = []
    # A checkpoint is made only for evaluations still missing (its own or its twin's) or for a later
    # pre-training that builds on it: a folder seeded with results pre-trains nothing it does not use.
    chosen = [n for n in PUBLISHED if selected is None or n in selected]
    wanted = _with_dependencies({n for n in chosen if _has_work(n, upstream_dir, twins, opts)}, upstream_dir)
    for name, (_, needs) in UPSTREAM_PLAN.items():
        out = upstream_dir / name
        if _finished(out):
            log(f"[pretrain] {name}: done ({out})")
            continue
        if name not in wanted:
            if selected is None:
                log(f"[pretrain] {name}: not needed (the evaluations that would use it have results)")
            continue
        cfg = resolved_config(name, p.size, upstream_dir, work / "configs")
        deps = tuple(d for d in needs.values() if not _finished(upstream_dir / d))
        plan.append(
            Job(
                f"pretrain {name}",
                _pretrain_job,
                (cfg, suite, out, p.max_steps),
                tuple(f"pretrain {d}" for d in deps),
            )
        )
    planned = {j.name for j in plan}
    for spec in BASELINES:
        if (selected is None or spec in selected) and not _evaluated(spec, opts):
            plan.append(Job(f"eval {spec}", _eval_job, (spec, opts)))
    for name in chosen:
        trained = upstream_dir / name
        needs = tuple(n for n in [f"pretrain {name}"] if n in planned)
        if not _evaluated(str(trained), opts):
            plan.append(Job(f"eval {name}", _eval_job, (str(trained), opts), needs))
        if name in twins:
            twin = upstream_dir / f"{name}-random"
            if not _evaluated(str(twin), opts):
                plan.append(Job(f"twin {name}", make_random_twin, (trained, twin, 0, twins[name]), needs))
                plan.append(Job(f"eval {name}-random", _eval_job, (str(twin), opts), (f"twin {name}",)))
    for job in plan:
        log(f"[plan] {job.name}")
    run_jobs(plan, workers or default_workers(), stages, log)

    from evalkit.leaderboard.build import build_leaderboard

    board = work / "leaderboard"
    stages.run("leaderboard", lambda: build_leaderboard(results, board), log)
    took = time.time() - t0
    if plan:  # an invocation with nothing left to do keeps the total of the one that did the work
        stages.times.pop("total (last invocation)", None)
        stages.record("total (last invocation)", took, log)
    finish_invocation(work, [job.name for job in plan], took)
    return board


def publish(workdir: str | Path, dest: str | Path, profile: str = "full", log=print) -> Path:
    """Copy a finished run's result files and stage times to `dest` and build `dest/board` from them.

    `dest/results` (result JSONs and their samples files: no audio, no checkpoints, no
    feature caches) and `dest/board` are replaced; `dest/stages.json` gets the run's
    wall times and `dest/run.json` the run's provenance (`record_invocation`). Returns the board.
    """
    import shutil

    from evalkit.leaderboard.collect import result_files
    from evalkit.results import git_hash, samples_path

    work, dest = Path(workdir) / profile, Path(dest)
    results = work / "results"
    if not (work / "leaderboard" / "index.html").is_file():
        raise EvalkitError(
            f"{work}: no finished `evalkit run --profile {profile}` here (no leaderboard/index.html); "
            f"run it to the end first."
        )
    # before anything is copied: publishing into the checkout (leaderboard/) makes its tree dirty
    commit = git_hash(dirty=True)
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("results", "board"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    files = [f for p in result_files(results) for f in (p, samples_path(p)) if f.is_file()]
    for src in files:
        target = dest / "results" / src.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    shutil.copyfile(work / "stages.json", dest / "stages.json")
    run = json.loads((work / "run.json").read_text()) if (work / "run.json").is_file() else {}
    run["published"] = {"date": time.strftime("%Y-%m-%d"), "evalkit_commit": commit}
    atomic_write_text(dest / "run.json", json.dumps(run, indent=1))
    from evalkit.leaderboard.build import build_leaderboard

    report = build_leaderboard(dest / "results", dest / "board")
    for w in report.warnings:
        log(f"warning: {w}")
    atomic_write_text(dest / "README.md", published_readme(dest, profile, run, len(files)))
    log(f"published {len(files)} result files to {dest / 'results'}; tables and page in {dest / 'board'}")
    return dest / "board"


def _invocation_row(invocation: dict) -> str:
    wall = invocation.get("wall_s")
    ran = invocation.get("stages")  # a list; older records written by hand may hold a phrase
    if isinstance(ran, list):
        ran = ", ".join(ran)
    return (
        f"| {invocation.get('started', '?')} | {invocation.get('evalkit_commit') or 'not recorded'} | "
        f"{f'{wall:.0f}' if isinstance(wall, (int, float)) else '?'} | {ran or 'not recorded'} |"
    )


def published_readme(dest: Path, profile: str, run: dict, n_files: int) -> str:
    """DEST/README.md: how the folder was made and is rebuilt, the table, and each stage's wall time."""
    stages = json.loads((dest / "stages.json").read_text())
    made = run.get("invocations") or [{}]
    commits = ", ".join(dict.fromkeys(str(i.get("evalkit_commit") or "not recorded") for i in made))
    machine = (
        f"{run['cpus']} CPU cores ({run['machine']}), Python {run['python']}, torch {run['torch']}"
        if "cpus" in run
        else "machine not recorded"
    )
    lines = [
        "# Published leaderboard",
        "",
        "<!-- written by `evalkit run --publish`; edits here are overwritten -->",
        "",
        f"`evalkit run --profile {profile}` (evalkit commit {commits}; {machine}; started "
        f"{made[0].get('started', '?')}), published with",
        "",
        "```bash",
        f"evalkit run --profile {profile} --workdir work --publish {dest.name}",
        "```",
        "",
        f"`results/` holds its {n_files} result files (`<upstream>/<task>.json` and the per-item samples that the "
        "significance marks need; no audio, no checkpoints); `board/` the tables (Markdown, CSV, LaTeX, JSON), "
        "plots and the page `board/index.html`, rebuilt from `results/` alone by",
        "",
        "```bash",
        f"evalkit leaderboard build --results {dest.name}/results --out {dest.name}/board",
        "```",
        "",
        (dest / "board" / "leaderboard.md").read_text().strip(),
        "",
    ]
    if len(made) > 1:
        lines += [
            "## Invocations",
            "",
            "The work folder was filled by more than one invocation; each ran only the stages whose "
            "results were missing (after a crash, or after a recipe change and the deletion of what it made).",
            "",
            "| started | evalkit commit | wall time (s) | stages run |",
            "|---|---|---:|---|",
            *(_invocation_row(i) for i in made),
            "",
        ]
    lines += [
        "## Wall time of each stage",
        "",
        "Pre-training and evaluation jobs run side by side (one thread each), so they add up to more than the total. "
        "A stage's time is that of the invocation that last ran it.",
        "",
        "| stage | seconds | minutes |",
        "|---|---:|---:|",
        *(f"| {name} | {sec:.0f} | {sec / 60:.1f} |" for name, sec in stages.items()),
        "",
    ]
    return "\n".join(lines)
