"""`evalkit eval`: one frozen upstream through a list of tasks, one result file per task.

upstream -> features of each split (cached once, or recomputed with
--no-cache) -> recipe of the task's kind -> trainer (heads × LR grid) ->
best-on-dev state per head -> test metrics with bootstrap CIs -> result JSON
+ samples file. Finished pairs are skipped unless `overwrite`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalkit.core.errors import ConfigError
from evalkit.core.results import git_hash, package_versions, result_path, write_result
from evalkit.evaluation.kinds import RECIPES
from evalkit.evaluation.protocols import PROTOCOLS
from evalkit.evaluation.task import TaskConfig, load_task, task_files


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


def features_for(upstream, recipe, opts: EvalOptions, splits: list[str], log) -> dict:
    from evalkit.evaluation.features import extract
    from evalkit.evaluation.runner import OnTheFlyFeatures

    out = {}
    for split in splits:
        manifest = recipe.manifest(split)
        if opts.no_cache:
            out[split] = OnTheFlyFeatures(upstream, manifest)
        else:
            cache = opts.cache or (opts.output / ".cache")
            out[split] = extract(upstream, manifest, cache, progress=opts.progress)
    return out


def evaluate_task(upstream, spec: str, task: TaskConfig, opts: EvalOptions, log=print) -> dict:
    t0 = time.time()
    recipe = RECIPES[task.kind](task, opts.data)
    if hasattr(recipe, "frame_rate"):
        recipe.frame_rate = float(upstream.frame_rate)
    splits = ["dev", "test"] if task.kind == "qbe" else ["train", "dev", "test"]
    for split in splits:
        check_audio(recipe.manifest(split), recipe.records(split))
    feats = features_for(upstream, recipe, opts, splits, log)
    t_feat = time.time() - t0
    if task.kind == "qbe":
        body, samples = _run_qbe(recipe, feats, log)
    else:
        body, samples = _run_trained(recipe, feats, opts, log)
    body.update(
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
        samples={s: len(recipe.records(s)) for s in splits},
    )
    path = result_path(opts.output, spec, task.name)
    write_result(path, body, samples)
    return body


def check_audio(manifest: Path, records: list[dict]) -> None:
    """Fail before any work if a manifest points at missing audio."""
    from evalkit.core.errors import AudioError
    from evalkit.core.manifest import audio_path

    missing = [audio_path(manifest, r) for r in records if not audio_path(manifest, r).is_file()]
    if missing:
        raise AudioError(
            f"{manifest}: {len(missing)} record(s) point at missing audio, first {missing[0]}. "
            "Re-run `evalkit synth`/`evalkit prepare` for this corpus or fix the paths."
        )


def upstream_info(upstream, spec: str) -> dict:
    from evalkit.evaluation.fingerprint import upstream_fingerprint

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


def _metric_block(metrics, ci: bool) -> tuple[dict, dict]:
    values = {m.name: m.compute() for m in metrics}
    cis = {}
    if ci:
        for m in metrics:
            low, high = m.confidence_interval()
            cis[m.name] = None if math.isnan(low) else [low, high]
    return values, cis


def _run_trained(recipe, feats, opts: EvalOptions, log) -> tuple[dict, list[dict]]:
    task = recipe.task
    grid = opts.lr_grid or task.lr_grid
    if opts.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {opts.protocol!r}: choose from {', '.join(PROTOCOLS)}.")
    head_specs = task.heads if opts.protocol == "sweep" else task.heads[:1]
    if opts.protocol == "quick":
        grid = [sorted(grid)[len(grid) // 2]]
    steps, every = task.budget(suite_info(opts.data).get("profile"))
    if opts.steps is not None:
        steps, every = opts.steps, max(1, min(every, opts.steps // 2 or 1))
    # --no-cache runs the upstream inside every step: it gets all threads, as in s3prl
    with intra_op_threads(None if opts.no_cache else opts.train_threads):
        return _train_and_test(recipe, feats, opts, grid, head_specs, steps, every, log)


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """torch's intra-op thread count set to `n` (None: unchanged) inside the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_and_test(recipe, feats, opts: EvalOptions, grid, head_specs, steps: int, every: int, log):
    from evalkit.evaluation.trainer import predict_split, select, train

    task = recipe.task
    runs = train(
        recipe,
        feats,
        grid,
        steps=steps,
        eval_every=every,
        bf16=opts.bf16,
        progress=opts.progress,
        log=log,
        heads=head_specs,
    )
    primary = task.primary_metric
    higher = primary.build().higher_is_better
    chosen = select(runs, higher)
    heads: dict[str, Any] = {}
    samples: list[dict] = []
    for k, (name, run) in enumerate(chosen.items()):
        dev_preds = predict_split(recipe, feats["dev"], "dev", run, task.batch_seconds, opts.bf16)
        postprocess = recipe.tune(dev_preds)  # chosen on dev, before test is seen
        dev_metrics, _ = recipe.score("dev", dev_preds)
        test_metrics, rows = recipe.score(
            "test", predict_split(recipe, feats["test"], "test", run, task.batch_seconds, opts.bf16)
        )
        dev, _ = _metric_block(dev_metrics, ci=False)
        test, ci = _metric_block(test_metrics, ci=True)
        heads[name] = {
            "type": next(h.type for h in task.heads if h.name == name),
            "metrics": {"dev": dev, "test": test},
            "ci95": {"test": ci},
            "lr": run.lr,
            "lr_grid": {f"{r.lr:g}": r.best_dev for r in runs if r.head_name == name},
            "best_step": run.best_step,
            "dev_curves": {f"{r.lr:g}": r.dev_curve for r in runs if r.head_name == name},
            "layer_weights": run.featurizer.layer_weights(),
            "head_parameters": sum(p.numel() for p in run.head.parameters()),
            "steps": steps,
            **({"postprocess": postprocess} if postprocess else {}),
        }
        if k == 0:  # the first head is the task's reference (SUPERB) head
            samples = [{"head": name, **row} for row in rows]
    first = next(iter(heads))
    ref = heads[first]
    return {
        "metrics": ref["metrics"],
        "ci95": ref["ci95"],
        "primary_metric": primary.name,
        "higher_is_better": higher,
        "head": first,
        "lr": ref["lr"],
        "lr_grid": grid,
        "layer_weights": ref["layer_weights"],
        **({"postprocess": ref["postprocess"]} if "postprocess" in ref else {}),
        "heads": heads,
    }, samples


def _run_qbe(recipe, feats, log) -> tuple[dict, list[dict]]:
    task = recipe.task
    num_layers = feats["dev"].num_layers
    candidates = [task.featurizer["layer"]] if "layer" in task.featurizer else list(range(num_layers))
    primary = task.primary_metric
    dev_by_layer = {}
    for layer in candidates:
        metrics, _ = recipe.score_pairs("dev", recipe.layer_scores("dev", feats["dev"], layer))
        dev_by_layer[layer] = next(m for m in metrics if m.name == primary.name).compute()
        log(f"[{task.name}] layer {layer}: dev {primary.name} {dev_by_layer[layer]:.4f}")
    higher = primary.build().higher_is_better
    best = (max if higher else min)(dev_by_layer, key=lambda k: dev_by_layer[k])
    dev_metrics, _ = recipe.score_pairs("dev", recipe.layer_scores("dev", feats["dev"], best))
    test_metrics, rows = recipe.score_pairs("test", recipe.layer_scores("test", feats["test"], best))
    dev, _ = _metric_block(dev_metrics, ci=False)
    test, ci = _metric_block(test_metrics, ci=True)
    weights = [0.0] * num_layers
    weights[best] = 1.0
    return {
        "metrics": {"dev": dev, "test": test},
        "ci95": {"test": ci},
        "primary_metric": primary.name,
        "higher_is_better": higher,
        "head": "dtw",
        "layer": best,
        "dev_by_layer": {str(k): v for k, v in dev_by_layer.items()},
        "lr": None,
        "lr_grid": [],
        "layer_weights": weights,
        "heads": {},
    }, rows


def run_eval(spec: str, tasks: list[TaskConfig], opts: EvalOptions, log=print) -> list[Path]:
    """Evaluate `spec` on each task; skip those with a result unless overwrite. Returns result paths."""
    from upstreams import load_upstream

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
        body = evaluate_task(upstream, spec, t, opts, log)
        pm = body["primary_metric"]
        log(
            f"[{t.name}] test {pm} = {body['metrics']['test'][pm]:.4f} ({body['wall_time_s']:.0f} s) -> "
            f"{result_path(opts.output, spec, t.name)}"
        )
    return [result_path(opts.output, spec, t.name) for t in tasks]
