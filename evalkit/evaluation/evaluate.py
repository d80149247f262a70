"""`evalkit eval`: one frozen upstream through a list of tasks, one result file per task.

upstream -> features of the splits the task's kind reads (cached once, or
recomputed with --no-cache) -> the kind's run (a trained kind: heads × LR
grid, best-on-dev state per head, test metrics with bootstrap CIs; QbE: the
best layer on dev) -> result JSON + samples file. Finished pairs are skipped
unless `overwrite`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from evalkit.core.errors import AudioError, ConfigError
from evalkit.core.manifest import audio_path
from evalkit.core.results import Result, git_hash, package_versions, result_path, write_result
from evalkit.evaluation.features import extract
from evalkit.evaluation.fingerprint import upstream_fingerprint
from evalkit.evaluation.kinds.base import RunSettings, TaskKind
from evalkit.evaluation.runner import OnTheFlyFeatures
from evalkit.evaluation.task import KINDS, TaskConfig, load_task, task_files
from upstreams.load import load_upstream


@dataclass
class EvalOptions:
    data: Path
    output: Path
    cache: Path | None = None  # None: <output>/.cache
    no_cache: bool = False
    lr_grid: list[float] | None = None
    steps: int | None = None
    protocol: str = "sweep"  # which (head, learning rate) runs train: see PROTOCOLS
    # Heads are small: on 2 cores one intra-op thread trained the smoke suite's ten tasks 1.7x faster
    # than two (126 s vs 213 s; a BiLSTM 2x128 step 2.8x), and it leaves a core for a second evaluation.
    train_threads: int = 1
    overwrite: bool = False
    bf16: bool = False
    progress: bool = True


def resolve_tasks(spec: str, include_paths: list[str] | None = None) -> list[TaskConfig]:
    """`all` or a comma-separated list of task names (each validated, with suggestions)."""
    names = [n for n in spec.split(",") if n]
    if spec == "all":
        names = [n for n, p in task_files(include_paths).items() if p.name == "task.yaml"]
    return [load_task(n, include_paths) for n in names]


def suite_info(data: Path) -> dict:
    stamp = Path(data) / "suite.json"
    if stamp.is_file():
        return json.loads(stamp.read_text())
    return {"profile": None, "name": Path(data).name}


def features_for(upstream, kind: TaskKind, opts: EvalOptions) -> dict:
    """The features of each split the kind reads: the cache's, or recomputed at every use (--no-cache)."""
    out = {}
    for split in kind.splits:
        manifest = kind.manifest(split)
        if opts.no_cache:
            out[split] = OnTheFlyFeatures(upstream, manifest)
        else:
            cache = opts.cache or (opts.output / ".cache")
            out[split] = extract(upstream, manifest, cache, progress=opts.progress)
    return out


def task_kind(upstream, task: TaskConfig, opts: EvalOptions) -> TaskKind:
    """The task's kind, given the upstream's frame rate and how this evaluation trains."""
    settings = RunSettings(
        protocol=opts.protocol,
        lr_grid=opts.lr_grid,
        steps=opts.steps,
        suite_profile=suite_info(opts.data).get("profile"),
        # --no-cache runs the upstream inside every step: it gets all threads, as in s3prl
        train_threads=None if opts.no_cache else opts.train_threads,
        bf16=opts.bf16,
        progress=opts.progress,
    )
    return KINDS.get(task.kind)(task, opts.data, frame_rate=float(upstream.frame_rate), settings=settings)


def evaluate_task(upstream, spec: str, task: TaskConfig, opts: EvalOptions, log=print) -> Result:
    """One task: its kind's run on the upstream's features, written as a result file with its provenance."""
    t0 = time.time()
    kind = task_kind(upstream, task, opts)
    for split in kind.splits:
        check_audio(kind.manifest(split), kind.records(split))
    feats = features_for(upstream, kind, opts)
    t_feat = time.time() - t0
    measured, samples = kind.run(feats, log)
    result = replace(
        measured,
        task=task.name,
        upstream=spec,
        task_version=task.version,
        protocol=opts.protocol,  # QbE trains nothing, but its result belongs with the run's other tasks
        task_config=task.to_dict(),
        seed=task.seed,
        suite=suite_info(opts.data),
        upstream_info=upstream_info(upstream, spec),
        versions=package_versions(),
        git_hash=git_hash(),
        cache="off" if opts.no_cache else "on",
        wall_time_s=round(time.time() - t0, 2),
        feature_time_s=round(t_feat, 2),
        samples={s: len(kind.records(s)) for s in kind.splits},
    )
    write_result(result_path(opts.output, spec, task.name), result.to_dict(), samples)
    return result


def check_audio(manifest: Path, records: list[dict]) -> None:
    """Fail before any work if a manifest points at missing audio."""
    missing = [audio_path(manifest, r) for r in records if not audio_path(manifest, r).is_file()]
    if missing:
        raise AudioError(
            f"{manifest}: {len(missing)} record(s) point at missing audio, first {missing[0]}. "
            "Re-run `evalkit synth`/`evalkit prepare` for this corpus or fix the paths."
        )


def upstream_info(upstream, spec: str) -> dict:
    return {
        "name": spec,
        "class": type(upstream).__name__,
        "fingerprint": upstream_fingerprint(upstream),
        "num_layers": int(upstream.num_layers),
        "hidden_size": int(upstream.hidden_size),
        "frame_rate": float(upstream.frame_rate),
        "parameters": sum(p.numel() for p in upstream.parameters()),
        "checkpoint": getattr(upstream, "checkpoint", None),
        "pretraining": getattr(upstream, "pretraining", None),
    }


def run_eval(spec: str, tasks: list[TaskConfig], opts: EvalOptions, log=print) -> list[Path]:
    """Evaluate `spec` on each task; skip those with a result unless overwrite. Returns result paths."""
    todo = [t for t in tasks if opts.overwrite or not result_path(opts.output, spec, t.name).exists()]
    for t in tasks:
        if t not in todo:
            log(
                f"[{t.name}] result exists: {result_path(opts.output, spec, t.name)} (use --overwrite to redo)"
            )
    if not todo:
        return [result_path(opts.output, spec, t.name) for t in tasks]
    if not Path(opts.data).is_dir():
        raise ConfigError(f"--data {opts.data}: no such folder. Make one with `evalkit synth --out DIR`.")
    upstream = load_upstream(spec)
    for t in todo:
        result = evaluate_task(upstream, spec, t, opts, log)
        pm = result.primary_metric
        log(
            f"[{t.name}] test {pm} = {result.metrics['test'][pm]:.4f} ({result.wall_time_s:.0f} s) -> "
            f"{result_path(opts.output, spec, t.name)}"
        )
    return [result_path(opts.output, spec, t.name) for t in tasks]
