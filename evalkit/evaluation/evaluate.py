"""`evalkit eval`: one frozen upstream through a list of tasks, one result file per task.

upstream -> features of the splits the task's kind reads (cached once, or
recomputed with --no-cache) -> the kind's run (a trained kind: heads × LR
grid, best-on-dev state per head, test metrics with bootstrap CIs; QbE: the
best layer on dev) -> result JSON + samples file. Finished pairs are skipped
unless `overwrite`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from evalkit.core.config import check_fields, rule
from evalkit.core.errors import ConfigError
from evalkit.core.io import read_json_object
from evalkit.core.results import Result, git_hash, package_versions, read_result, result_path, write_result
from evalkit.evaluation.cache_size import cache_bytes, cache_layers, check_cache_fits, is_cached
from evalkit.evaluation.cost import format_plan, plan_costs
from evalkit.evaluation.features import extract
from evalkit.evaluation.fingerprint import cached_fingerprint, store_fingerprint, upstream_fingerprint
from evalkit.evaluation.kinds.base import RunSettings, TaskKind, head_seeds, training_plan
from evalkit.evaluation.preflight import (
    check_audio,
    check_writable,
    spec_folder,
    warn_if_not_s3prls_features,
    warn_if_unfinished,
)
from evalkit.evaluation.protocols import PROTOCOLS, SEED_RATES
from evalkit.evaluation.runner import OnTheFlyFeatures
from evalkit.evaluation.seeds import SeedStore
from evalkit.evaluation.task import KINDS, TaskConfig, load_task, task_group
from upstreams.hf import PADDING_MODES, HFUpstream
from upstreams.load import load_upstream


@dataclass
class EvalOptions:
    """How `evalkit eval` runs, checked by the same schema layer as task files (evalkit.core.config):
    settings that would train nothing are errors before any work, not silent no-ops."""

    data: Path
    output: Path
    cache: Path | None = None  # None: <output>/.cache
    no_cache: bool = False
    lr_grid: list[float] | None = field(default=None, metadata=rule(above=0, nonempty=True))
    steps: int | None = field(default=None, metadata=rule(above=0))
    # head seeds: each trained task trains once per seed and keeps their mean and each one's numbers
    # (None: the task's own `seed`, one run)
    seeds: list[int] | None = field(default=None, metadata=rule(min=0, nonempty=True))
    # with several seeds: which learning rates the seeds after the first train (see SEED_RATES)
    seed_rates: str = field(default="grid", metadata=rule(choices=tuple(SEED_RATES)))
    # which (head, learning rate) runs train: see PROTOCOLS
    protocol: str = field(default="sweep", metadata=rule(choices=tuple(PROTOCOLS)))
    # Heads are small: on 2 cores one intra-op thread trained the smoke suite's ten tasks 1.7x faster
    # than two (126 s vs 213 s; a BiLSTM 2x128 step 2.8x), and it leaves a core for a second evaluation.
    train_threads: int | None = field(default=1, metadata=rule(above=0))  # None: torch's default
    overwrite: bool = False
    name: str | None = None  # the upstream's results folder under `output` (default: from the spec)
    bf16: bool = False
    # where the upstream runs and the heads train: auto (CUDA where there is one), cpu, cuda or cuda:N
    device: str = "auto"
    # DataLoader workers reading cached training batches ahead into pinned memory (None: 2 on CUDA, where
    # the step waits for the batch otherwise; 0 on the CPU, whose cores train the heads)
    loader_workers: int | None = field(default=None, metadata=rule(min=0))
    # the hidden states the cache keeps: all, indices (0,4,8,12) or every:K (features.cache_layers)
    cache_layers: str = "all"
    # how an `hf:` GroupNorm model meets a padded batch (upstreams.hf.PADDING_MODES)
    hf_padding: str = field(default="exact", metadata=rule(choices=tuple(PADDING_MODES)))
    progress: bool = True
    # what a result made differently (see check_existing) tells the user to do; None: eval's flags
    clash_advice: str | None = None

    @property
    def cache_root(self) -> Path:
        """Where features are cached: --cache, else <output>/.cache."""
        return self.cache or (self.output / ".cache")

    def __post_init__(self) -> None:
        check_fields(self, name_of=lambda key: "--" + key.replace("_", "-"))
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            twice = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
            raise ConfigError(
                f"--seeds {','.join(map(str, self.seeds))} names seed {twice[0]} twice: give each seed once."
            )
        resolve_device(self.device)  # a GPU asked for where there is none stops here, before any work
        cache_layers(self.cache_layers, None)  # the syntax; the range once the upstream is known
        if self.cache_layers != "all" and self.no_cache:
            raise ConfigError(
                f"--cache-layers {self.cache_layers} says which layers the feature cache keeps, but --no-cache "
                "keeps none: leave one of them out."
            )
        if self.seed_rates != "grid" and (self.seeds is None or len(self.seeds) < 2):
            raise ConfigError(
                f"--seed-rates {self.seed_rates} says how the head seeds after the first train, but there is "
                "one head seed: give several with --seeds (e.g. 0,1,2), or leave --seed-rates out."
            )
        if self.seed_rates != "grid" and self.protocol == "quick":
            raise ConfigError(
                f"--seed-rates {self.seed_rates} with --protocol quick changes nothing: quick trains one "
                "learning rate for every seed already. Leave --seed-rates out, or use --protocol superb."
            )


def resolve_device(spec: str) -> str:
    """`--device` as a torch device name: `auto` is CUDA where torch sees a GPU, else the CPU; a GPU asked
    for where there is none is an error that says what torch sees."""
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    if not re.fullmatch(r"cuda(:[0-9]+)?", spec):
        raise ConfigError(f"--device {spec!r}: choose auto, cpu, cuda or cuda:N (e.g. cuda:1).")
    if not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise ConfigError(
            f"--device {spec}: torch sees no CUDA device on this machine (torch {torch.__version__}, {build}). "
            "Use --device cpu, or auto to take a GPU where there is one."
        )
    index = int(spec.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0.."
            f"cuda:{torch.cuda.device_count() - 1})."
        )
    return spec


def resolve_tasks(spec: str, include_paths: list[str] | None = None) -> list[TaskConfig]:
    """A comma-separated list of task names and groups (`all`: the synthetic suite's ten; `superb`: the
    fourteen faithful SUPERB task files; `superb_budget`: the budgeted ones), each validated, with
    suggestions."""
    items = [n.strip() for n in spec.split(",") if n.strip()]
    if not items:
        raise ConfigError(
            f"--tasks {spec!r} names no task: give `all`, `superb`, `superb_budget` or task names "
            "(`evalkit ls tasks`)."
        )
    names: list[str] = []
    for item in items:
        for name in task_group(item, include_paths) or [item]:
            if name not in names:
                names.append(name)
    return [load_task(n, include_paths) for n in names]


def suite_info(data: Path) -> dict:
    stamp = Path(data) / "suite.json"
    if stamp.is_file():
        return read_json_object(stamp, "suite stamp")
    return {"profile": None, "name": Path(data).name}


def features_for(upstream, kind: TaskKind, opts: EvalOptions) -> dict:
    """The features of each split the kind reads: the cache's, or recomputed at every use (--no-cache)."""
    out = {}
    for split in kind.splits:
        manifest = kind.manifest(split)
        # random training crops (s3prl's SID, ASV, KS) run the upstream on each crop: on the fly
        if opts.no_cache or (split == "train" and kind.task.crop is not None):
            out[split] = OnTheFlyFeatures(
                upstream,
                manifest,
                device=kind.settings.device,
                layers=kind.settings.layers,
                audio=kind.task.audio,
            )
        else:
            cache = opts.cache_root
            layers = kind.settings.layers
            device = kind.settings.device
            out[split] = extract(
                upstream,
                manifest,
                cache,
                progress=opts.progress,
                layers=layers,
                device=device,
                audio=kind.task.audio,
            )
    return out


def run_settings(opts: EvalOptions, upstream_layers: int | None = None) -> RunSettings:
    """How this evaluation trains, as the task kinds take it (`upstream_layers`: the upstream's hidden
    states, which `--cache-layers` picks from)."""
    layers = cache_layers(opts.cache_layers, upstream_layers) if upstream_layers is not None else None
    return RunSettings(
        protocol=opts.protocol,
        lr_grid=opts.lr_grid,
        steps=opts.steps,
        suite_profile=suite_info(opts.data).get("profile"),
        # --no-cache runs the upstream inside every step: it gets all threads, as in s3prl
        train_threads=None if opts.no_cache else opts.train_threads,
        bf16=opts.bf16,
        progress=opts.progress,
        seeds=tuple(opts.seeds) if opts.seeds else None,
        seed_rates=opts.seed_rates,
        device=resolve_device(opts.device),
        loader_workers=loader_workers(opts),
        layers=tuple(layers) if layers is not None else None,
        upstream_layers=upstream_layers,
    )


def loader_workers(opts: EvalOptions) -> int:
    """`--loader-workers`, or its default for the device: 2 on CUDA, 0 on the CPU."""
    if opts.loader_workers is not None:
        return opts.loader_workers
    return 2 if resolve_device(opts.device).startswith("cuda") else 0


def task_kind(upstream, task: TaskConfig, opts: EvalOptions) -> TaskKind:
    """The task's kind, given the upstream's frame rate and how this evaluation trains."""
    layer, layers = task.featurizer.get("layer"), int(upstream.num_layers)
    if layer is not None and not -layers <= layer < layers:
        raise ConfigError(
            f"{task.source or task.name}: featurizer.layer {layer} is out of range: this upstream has {layers} "
            f"hidden states (0..{layers - 1}, or -1 for the last). Fix or remove the task's featurizer.layer."
        )
    settings = run_settings(opts, layers)
    if layer is not None and settings.layers is not None and layer % layers not in settings.layers:
        raise ConfigError(
            f"{task.source or task.name}: featurizer.layer {layer} is not among --cache-layers "
            f"{opts.cache_layers} ({', '.join(map(str, settings.layers))}): add it to --cache-layers."
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
    path = result_path(opts.output, spec, task.name, opts.name)
    store = SeedStore(path.parent, task.name, seed_run_key(upstream, task, kind, opts))
    measured, samples = kind.run(feats, log, store=store)
    result = replace(
        measured,
        task=task.name,
        upstream=spec,
        task_version=task.version,
        protocol=opts.protocol,  # QbE trains nothing, but its result belongs with the run's other tasks
        task_config=task.to_dict(),
        # several head seeds: null, `seeds` has them; QbE trains nothing: the task's, as always
        seed=None if measured.seeds else head_seeds(task, kind.settings)[0] if kind.trains else task.seed,
        seed_rates=opts.seed_rates if measured.seeds else None,
        cache_layers=list(kind.settings.layers) if kind.settings.layers is not None else None,
        device=kind.settings.device,
        bf16=opts.bf16,
        suite=suite_info(opts.data),
        upstream_info=upstream_info(upstream, spec),
        versions=package_versions(),
        git_hash=git_hash(),
        cache="off" if opts.no_cache else "on",
        wall_time_s=round(time.time() - t0, 2),
        feature_time_s=round(t_feat, 2),
        samples={s: len(kind.records(s)) for s in kind.splits},
    )
    write_result(path, result.to_dict(), samples)
    store.clear()
    return result


def seed_run_key(upstream, task: TaskConfig, kind: TaskKind, opts: EvalOptions) -> dict:
    """What makes one head seed's run: a seed kept by an interrupted evaluation is reused only when this
    evaluation makes it the same way (evalkit.evaluation.kinds.base.SeedStore)."""
    s = kind.settings
    return {
        "upstream": upstream_fingerprint(upstream),
        "task_config": task.to_dict(),
        "suite": suite_info(opts.data),
        "protocol": s.protocol,
        "lr_grid": s.lr_grid,
        "steps": s.steps,
        "seeds": list(s.seeds) if s.seeds else None,
        "seed_rates": s.seed_rates,
        "layers": list(s.layers) if s.layers is not None else None,
        "bf16": s.bf16,
        "device": s.device,
        "cache": not opts.no_cache,
        "hf_padding": opts.hf_padding,
    }


def cache_needs(upstream, tasks: list[TaskConfig], opts: EvalOptions) -> dict[str, int]:
    """{"<task>/<split>": bytes} of the features the tasks' splits still have to cache (a manifest that
    several tasks read counts once), estimated from the manifests' durations before any extraction."""
    cache, needs, seen = opts.cache_root, {}, set()
    for t in tasks:
        kind = task_kind(upstream, t, opts)
        layers = kind.settings.layers
        for split in kind.splits:
            if split == "train" and t.crop is not None:  # computed on the fly (`features_for`)
                continue
            manifest = Path(kind.manifest(split)).resolve()
            if manifest in seen or is_cached(upstream, manifest, cache, layers=layers, audio=t.audio):
                continue
            seen.add(manifest)
            needs[f"{t.name}/{split}"] = cache_bytes(upstream, manifest, layers=layers)
    return needs


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
        # how padded batches were computed, and whether it matters (a GroupNorm extractor): the board reads both
        **(
            {"padding": upstream.preprocessing.padding, "group_norm": bool(upstream.group_norm)}
            if isinstance(upstream, HFUpstream)
            else {}
        ),
        "pretraining": getattr(upstream, "pretraining", None),
    }


def fingerprint_of(spec: str, upstream=None, hf_padding: str = "exact") -> str | None:
    """The upstream's weight fingerprint, from the folder's cache where it is fresh; None when the
    checkpoint folder is gone (results made elsewhere, e.g. seeded by `evalkit run --from-published`).
    An `hf:` model's padding mode is part of what it computes, so each mode has its own fingerprint."""
    folder = spec_folder(spec)
    if folder is not None and not folder.is_dir():
        return None
    variant = f"padding={hf_padding}" if spec.startswith("hf:") and hf_padding != "exact" else ""
    if upstream is None and folder is not None and (cached := cached_fingerprint(folder, variant)):
        return cached
    upstream = upstream if upstream is not None else load_upstream(spec, hf_padding=hf_padding)
    fingerprint = upstream_fingerprint(upstream)
    if folder is not None:
        store_fingerprint(folder, fingerprint, variant)
    return fingerprint


def provenance_mismatch(
    result: dict, task: TaskConfig, opts: EvalOptions, fingerprint: str | None
) -> list[str]:
    """How an existing result differs from what evaluating `task` with `opts` would make now."""
    made = {
        "upstream weights (fingerprint)": (result.get("upstream_info") or {}).get("fingerprint"),
        "task version": result.get("task_version"),
        "protocol": result.get("protocol"),
    }
    now = {
        "upstream weights (fingerprint)": fingerprint,
        "task version": task.version,
        "protocol": opts.protocol,
    }
    upstream_layers = (result.get("upstream_info") or {}).get("num_layers")
    if isinstance(upstream_layers, int) and not isinstance(upstream_layers, bool):
        kept = cache_layers(opts.cache_layers, upstream_layers)
        made["cached layers"], now["cached layers"] = result.get("cache_layers") or "all", kept or "all"
    if fingerprint is None:  # the checkpoint is gone: its weights cannot be compared
        del made["upstream weights (fingerprint)"], now["upstream weights (fingerprint)"]
    if KINDS.get(task.kind).trains and opts.protocol in PROTOCOLS:
        settings = run_settings(opts)
        grid, _, steps, _ = training_plan(task, settings)
        reference = (result.get("heads") or {}).get(result.get("head")) or {}
        made |= {"learning rates": result.get("lr_grid"), "steps": reference.get("steps")}
        now |= {"learning rates": grid, "steps": steps}
        made["head seeds"], now["head seeds"] = result_seeds(result), head_seeds(task, settings)
        # (a result of several seeds made before --seed-rates searched the grid with every seed)
        if len(now["head seeds"]) > 1:
            made["seed rates"], now["seed rates"] = result.get("seed_rates") or "grid", opts.seed_rates
    return [f"{key} {made[key]!r} there, {now[key]!r} now" for key in made if made[key] != now[key]]


def result_seeds(result: dict) -> list[int | None]:
    """The head seeds an existing result was trained with: its `seeds` block's, or its one `seed`."""
    if isinstance(result.get("seeds"), dict):
        return sorted(int(k) for k in result["seeds"])
    return [result.get("seed")]


def existing_result(path: Path) -> dict:
    """A result file found where this evaluation would write; an unreadable one says how to go on."""
    try:
        return read_result(path)
    except ConfigError as e:
        raise ConfigError(f"{e} Redo it with --overwrite, or delete the file.") from None


def check_existing(spec: str, tasks: list[TaskConfig], opts: EvalOptions, log=print) -> list[TaskConfig]:
    """The tasks still to evaluate. An existing result is kept only if it was made by the same
    upstream weights, task version, protocol, learning rates, steps and head seeds as a run would use now;
    otherwise this stops, before any work, and says how to keep both or redo it."""
    todo, fingerprint, checked = [], None, False
    for t in tasks:
        path = result_path(opts.output, spec, t.name, opts.name)
        if opts.overwrite or not path.exists():
            todo.append(t)
            continue
        if not checked:
            fingerprint, checked = fingerprint_of(spec, hf_padding=opts.hf_padding), True
            if fingerprint is None:
                log(
                    f"warning: {spec} is gone; its results under {path.parent} are kept as they are (their "
                    "weights cannot be compared with it)"
                )
        if diff := provenance_mismatch(existing_result(path), t, opts, fingerprint):
            advice = opts.clash_advice or (
                f"Keep both with --name NEW (the upstream's results folder under {opts.output}), or redo it "
                "with --overwrite."
            )
            raise ConfigError(f"{path}: this result was made differently: {'; '.join(diff)}. {advice}")
        log(f"[{t.name}] result exists: {path} (use --overwrite to redo)")
    return todo


def check_outputs(spec: str, opts: EvalOptions) -> None:
    """The results folder (and the feature cache, unless --no-cache) can be written."""
    check_writable(result_path(opts.output, spec, "_", opts.name).parent, "--output")
    if not opts.no_cache:
        check_writable(opts.cache_root, "--cache" if opts.cache else "--output")


def plan_eval(spec: str, tasks: list[TaskConfig], opts: EvalOptions, log=print) -> str:
    """`evalkit eval --plan`: what evaluating `spec` on the tasks that have no result yet would cost (see
    evalkit.evaluation.cost), as a table. Nothing is written, nothing trained beyond a short calibration."""
    todo = [
        t for t in tasks if opts.overwrite or not result_path(opts.output, spec, t.name, opts.name).exists()
    ]
    for t in tasks:
        if t not in todo:
            log(
                f"[{t.name}] result exists: {result_path(opts.output, spec, t.name, opts.name)} (not planned)"
            )
    if not Path(opts.data).is_dir():
        raise ConfigError(f"--data {opts.data}: no such folder. Make one with `evalkit synth --out DIR`.")
    upstream = load_upstream(spec, device=resolve_device(opts.device), hf_padding=opts.hf_padding)
    kinds = [task_kind(upstream, t, opts) for t in todo]
    cache = None if opts.no_cache else opts.cache_root
    return format_plan(plan_costs(upstream, kinds, cache, log), cache, resolve_device(opts.device))


def run_eval(spec: str, tasks: list[TaskConfig], opts: EvalOptions, log=print) -> list[Path]:
    """Evaluate `spec` on each task; keep those with a result of the same making unless overwrite.
    Returns the result paths."""
    paths = [result_path(opts.output, spec, t.name, opts.name) for t in tasks]
    if opts.overwrite or not all(p.is_file() for p in paths):  # something may be written
        check_outputs(spec, opts)
    todo = check_existing(spec, tasks, opts, log)
    if not todo:
        return paths
    if not Path(opts.data).is_dir():
        raise ConfigError(f"--data {opts.data}: no such folder. Make one with `evalkit synth --out DIR`.")
    upstream = load_upstream(spec, device=resolve_device(opts.device), hf_padding=opts.hf_padding)
    fingerprint_of(spec, upstream, opts.hf_padding)  # cached beside the checkpoint for the next resume
    warn_if_unfinished(spec, log)
    warn_if_not_s3prls_features(upstream, todo, opts.hf_padding, log)
    if not opts.no_cache:
        layers, total = cache_layers(opts.cache_layers, int(upstream.num_layers)), int(upstream.num_layers)
        needs = cache_needs(upstream, todo, opts)
        check_cache_fits(opts.cache_root, needs, total, len(layers) if layers else total)
    for t in todo:
        result = evaluate_task(upstream, spec, t, opts, log)
        pm = result.primary_metric
        log(
            f"[{t.name}] test {pm} = {result.metrics['test'][pm]:.4f} ({result.wall_time_s:.0f} s) -> "
            f"{result_path(opts.output, spec, t.name, opts.name)}"
        )
    return paths
