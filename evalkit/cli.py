"""The `evalkit` command line (lm-evaluation-harness in shape).

Exit codes: 0 success, 2 bad input or usage (a one-paragraph message, no
traceback), 1 an internal error. Heavy modules are imported inside each
command so that `evalkit --help` and `evalkit ls` stay fast.

Why one module: every command's flags are declared in one parser tree, so that
`evalkit --help` shows them all and a flag two commands share (`--device`,
`--workdir`) reads the same in both; each command's work lives in the module it
calls, and what stays here is parsing and the translation of flags into options.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.evaluation.protocols import PROTOCOLS, SEED_RATES


def cmd_synth(args: argparse.Namespace) -> int:
    if args.report:
        # deferred: keeps `evalkit --help` fast
        from evalkit.synth.report import baseline_report

        rows = baseline_report(Path(args.report))
        print(json.dumps(rows, indent=1))
        return 0
    if not args.out:
        raise EvalkitError("`evalkit synth` needs --out DIR (where the suite goes), or --report DIR.")
    # deferred: keeps `evalkit --help` fast
    from evalkit.synth.suite import SUITE_CORPORA, build_suite

    corpora = tuple(args.corpora.split(",")) if args.corpora else SUITE_CORPORA
    unknown = [c for c in corpora if c not in SUITE_CORPORA]
    if unknown:
        raise EvalkitError(
            f"Unknown corpus {unknown[0]!r} in --corpora; choose from {', '.join(SUITE_CORPORA)}."
        )
    t0 = time.time()
    counts = build_suite(args.out, args.profile, args.seed, jobs=args.jobs, corpora=corpora)
    n = sum(sum(v.values()) for v in counts.values())
    print(
        f"suite {args.profile!r} (seed {args.seed}) in {args.out}: {n} utterances, "
        f"{len(counts)} corpora, {time.time() - t0:.1f} s"
    )
    return 0


def _suite_profiles(args: argparse.Namespace) -> list[str]:
    from evalkit.synth.suite import SUITE_PROFILES  # deferred: keeps `evalkit --help` fast

    return list(SUITE_PROFILES)


def _corpora(args: argparse.Namespace) -> list[str]:
    from evalkit.corpora import CORPORA  # deferred: keeps `evalkit --help` fast

    return list(CORPORA.names())


def _tasks(args: argparse.Namespace) -> list[str]:
    from evalkit.evaluation.task import list_tasks  # deferred: keeps `evalkit --help` fast

    return list(list_tasks(args.include_path))


def _heads(args: argparse.Namespace) -> list[str]:
    from evalkit.evaluation.heads import HEADS  # deferred: keeps `evalkit --help` fast

    return list(HEADS.names())


def _metrics(args: argparse.Namespace) -> list[str]:
    from evalkit.metrics import METRICS  # deferred: keeps `evalkit --help` fast

    return list(METRICS.names())


def _upstreams(args: argparse.Namespace) -> list[str]:
    from upstreams.registry import UPSTREAMS  # deferred: keeps `evalkit --help` fast

    return list(UPSTREAMS.names())


def _methods(args: argparse.Namespace) -> list[str]:
    from upstreams.methods import METHODS  # deferred: keeps `evalkit --help` fast

    return list(METHODS.names())


# what `evalkit ls` lists, in the order its help shows them
LISTINGS = {
    "tasks": _tasks,
    "upstreams": _upstreams,
    "methods": _methods,
    "heads": _heads,
    "metrics": _metrics,
    "profiles": _suite_profiles,
    "corpora": _corpora,
}


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what not in LISTINGS:
        raise EvalkitError(f"`evalkit ls` does not know {args.what!r}.")
    for name in LISTINGS[args.what](args):
        print(name)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from evalkit.pipeline.validate import validate_path

    problems = 0
    for path in args.paths:
        for line, status in validate_path(Path(path), decode=not args.headers_only):
            print({"ok": "ok   ", "warn": "WARN ", "fail": "FAIL "}[status] + line)
            problems += status == "fail"
    if problems:
        raise EvalkitError(f"{problems} problem(s) found; see the FAIL lines above.")
    return 0


def _learning_rates(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EvalkitError(f"--lr-grid {text!r}: give comma-separated numbers, e.g. 1e-4,1e-3.") from None


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EvalkitError(
            f"--seeds {text!r}: give comma-separated non-negative integers, e.g. 0,1,2."
        ) from None


def cmd_eval(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from evalkit.core.results import check_results_name
    from evalkit.evaluation.evaluate import EvalOptions, plan_eval, resolve_tasks, run_eval

    tasks = resolve_tasks(args.tasks, args.include_path)
    grid = _learning_rates(args.lr_grid) if args.lr_grid is not None else None
    opts = EvalOptions(
        data=Path(args.data),
        output=Path(args.output),
        cache=Path(args.cache) if args.cache else None,
        no_cache=args.no_cache,
        lr_grid=grid,
        steps=args.steps,
        seeds=_seeds(args.seeds) if args.seeds is not None else None,
        seed_rates=args.seed_rates,
        overwrite=args.overwrite,
        name=check_results_name(args.name) if args.name is not None else None,
        bf16=args.bf16,
        protocol=args.protocol,
        train_threads=args.train_threads or None,  # 0: torch's default
        hf_padding=args.hf_padding,
        cache_layers=args.cache_layers,
        device=args.device,
        loader_workers=args.loader_workers,
    )
    if args.plan:
        print(plan_eval(args.upstream, tasks, opts))
        return 0
    t0 = time.time()
    paths = run_eval(args.upstream, tasks, opts)
    print(f"{len(paths)} result file(s) under {args.output} ({time.time() - t0:.0f} s)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    import yaml

    from evalkit.corpora import prepare

    options = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EvalkitError(
                f"--opt {item!r}: expected KEY=VALUE (VALUE is read as YAML, e.g. dev_ratio=0.1)."
            )
        options[key] = yaml.safe_load(value)
    try:
        paths = prepare(args.corpus, args.src, args.out, **options)
    except TypeError as e:
        raise EvalkitError(f"corpus {args.corpus!r} does not take these options: {e}") from None
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from upstreams.export import export_checkpoint

    out = export_checkpoint(Path(args.checkpoint), Path(args.out), args.format, args.model_type)
    architecture = json.loads((out / "config.json").read_text())["architectures"][0]
    print(f"exported {args.checkpoint} as a transformers {architecture} to {out}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from evalkit.pretraining.loop import pretrain

    pretrain(args.config, data=args.data, out=args.out, max_steps=args.max_steps, resume=args.resume)
    return 0


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a job scheduler's stop, `kill`) ends a run as Ctrl-C does: what finished is kept and
    recorded, and the same command resumes."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _cluster_options(args: argparse.Namespace):
    """`--slurm-*` as the scheduler's ClusterOptions; given without `--executor slurm` they would do nothing."""
    from evalkit.pipeline.scheduler import ClusterOptions

    given = {k: v for k, v in vars(args).items() if k.startswith("slurm_") and v is not None}
    if given and args.executor != "slurm":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise EvalkitError(f"{flags} only apply with --executor slurm (here --executor {args.executor}).")
    return ClusterOptions(**{k.removeprefix("slurm_"): v for k, v in given.items()})


def cmd_run(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from evalkit.pipeline.run import run_pipeline

    _interrupt_on_sigterm()
    t0 = time.time()
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only is not None else None
    board = run_pipeline(
        args.profile,
        args.workdir,
        jobs=args.jobs,
        workers=args.workers,
        only=only,
        from_published=args.from_published,
        device=args.device,
        executor=args.executor,
        cluster=_cluster_options(args),
    )
    if args.publish:
        # deferred: keeps `evalkit --help` fast
        from evalkit.pipeline.publish import publish

        board = publish(args.workdir, args.publish, args.profile)
    table = board / "leaderboard.md"
    if table.is_file():
        print(table.read_text())
    page = board / "index.html"
    print(f"leaderboard page: {page if page.is_file() else board} ({time.time() - t0:.0f} s)")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    # deferred: keeps `evalkit --help` fast
    from evalkit.leaderboard import build_leaderboard, write_references

    if args.action == "references":
        path = write_references(Path(args.results), Path(args.out), args.suite, args.allow_off_budget)
        print(f"reference points written to {path}")
        return 0
    refs = Path(args.references) if args.references else None
    report = build_leaderboard(
        Path(args.results), Path(args.out), refs, n_boot=args.bootstrap, plots=not args.no_plots
    )
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{len(report.suites)} suite(s), {len(report.files)} file(s) under {args.out} "
        f"(page: {Path(args.out) / 'index.html'}); {len(report.warnings)} warning(s)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="synthesise the speech suite with eSpeak NG")
    p.add_argument("--profile", default="default", help="smoke | default | large")
    p.add_argument("--out", help="output folder (re-run to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--corpora", default=None, help="comma-separated subset of corpora")
    p.add_argument("--report", metavar="DIR", help="MFCC + logistic-regression baseline on a suite in DIR")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("eval", help="evaluate a frozen upstream on tasks")
    p.add_argument("--upstream", required=True, help="NAME | CHECKPOINT_DIR | hf:DIR | s3prl:NAME")
    p.add_argument(
        "--tasks",
        default="all",
        help="comma-separated task names or groups: all (the synthetic suite's ten), superb (SUPERB's "
        "fourteen task files on s3prl's recipes), superb_budget (on evalkit's budget)",
    )
    p.add_argument(
        "--data", required=True, help="suite or corpora folder (made by `evalkit synth` / `prepare`)"
    )
    p.add_argument("--output", required=True, help="folder for result JSONs (re-run to resume)")
    p.add_argument(
        "--name",
        default=None,
        help="the upstream's results folder under --output (default: the checkpoint folder's name); "
        "to keep the results of two checkpoints of the same name apart",
    )
    p.add_argument("--lr-grid", default=None, help="comma-separated learning rates (overrides the task's)")
    p.add_argument("--steps", type=int, default=None, help="training steps (overrides the task's budget)")
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated head seeds, e.g. 0,1,2: every trained task trains once per seed; the result "
        "holds the mean, the standard deviation and each seed's numbers (default: the task's seed)",
    )
    p.add_argument(
        "--seed-rates",
        default="grid",
        choices=list(SEED_RATES),
        help="with several --seeds: " + "; ".join(f"{name}: {what}" for name, what in SEED_RATES.items()),
    )
    p.add_argument(
        "--protocol",
        default="sweep",
        choices=list(PROTOCOLS),
        help="; ".join(f"{name}: {what}" for name, what in PROTOCOLS.items()),
    )
    p.add_argument(
        "--device",
        default="auto",
        help="where the upstream runs and the heads train: auto (default: CUDA where torch sees a GPU, else the "
        "CPU), cpu, cuda or cuda:N; recorded in each result",
    )
    p.add_argument(
        "--hf-padding",
        default="exact",
        help="hf: models with a GroupNorm feature extractor (Base): exact (default) gives a padded utterance "
        "what it gives alone (its own GroupNorm statistics, the attention mask); s3prl runs the padded batch as "
        "s3prl's experts do (the mask, GroupNorm over the padding), for numbers comparable with published ones",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print what the evaluation would cost (audio hours, cache size, head trainings, steps, wall time "
        "estimated from a short calibration on this machine) and stop; nothing is written",
    )
    p.add_argument("--cache", default=None, help="feature cache folder (default: OUTPUT/.cache)")
    p.add_argument(
        "--cache-layers",
        default="all",
        help="the hidden states the cache keeps and the weighted sum sees: all (default), indices (0,4,8,12) or "
        "every:K (every K-th from 0, and the last); a subset is recorded in the results and kept apart from "
        "all-layer results on the leaderboard",
    )
    p.add_argument("--no-cache", action="store_true", help="recompute the upstream every step, as s3prl does")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the heads")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=None,
        help="DataLoader workers that read cached training batches ahead into pinned memory while the heads "
        "train (default: 2 on CUDA, 0 on the CPU, whose cores train the heads); results do not depend on it",
    )
    p.add_argument(
        "--train-threads",
        type=int,
        default=1,
        help="torch threads while training heads (default 1: small heads train faster on one; "
        "0 = torch's default)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo tasks that already have a result")
    p.add_argument("--include-path", action="append", default=[], help="extra task folders")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prepare", help="write manifests for a real corpus on disk (`evalkit ls corpora`)")
    p.add_argument("corpus")
    p.add_argument("src", help="the corpus as distributed (nothing is downloaded)")
    p.add_argument("out", help="where the manifests go")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="preparer option")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("export", help="export an evalkit encoder checkpoint (to a transformers folder)")
    p.add_argument(
        "--format", default="hf", choices=["hf"], help="hf: a transformers HubertModel/Wav2Vec2Model"
    )
    p.add_argument(
        "--model-type",
        default="auto",
        choices=["auto", "hubert", "wav2vec2"],
        help="transformers class (auto: Wav2Vec2Model for wav2vec2 pre-training, else HubertModel)",
    )
    p.add_argument("checkpoint", help="evalkit checkpoint folder (config.json + model.safetensors)")
    p.add_argument("out", help="folder for the exported model")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("pretrain", help="pre-train an encoder (also under `torchrun -m evalkit pretrain`)")
    p.add_argument("config", help="recipe YAML, e.g. configs/pretrain/bestrq-tiny.yaml")
    p.add_argument(
        "--data",
        default=None,
        help="suite folder or folder with train.jsonl (default on --resume: the run's)",
    )
    p.add_argument(
        "--out", default=None, help="output folder (default: $EVALKIT_WORK or exp, then /<recipe name>)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="overrides optim.max_steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("run", help="the whole pipeline: synth -> pretrain -> eval -> leaderboard (resumable)")
    p.add_argument("--profile", default="default", help="smoke | default | full")
    p.add_argument("--workdir", default="work", help="where everything goes (re-run to resume)")
    p.add_argument(
        "--device",
        default="auto",
        help="where pre-training and evaluation run: auto (default: CUDA where torch sees a GPU), cpu, cuda or cuda:N",
    )
    p.add_argument("--jobs", type=int, default=None, help="synthesis worker processes")
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "submitit-local", "slurm"],
        help="where pre-training and evaluation jobs run: local (default: a process pool here), submitit-local "
        "(submitit subprocesses here) or slurm (a Slurm job each, through submitit; the work folder must be on "
        "a filesystem the nodes share)",
    )
    p.add_argument("--slurm-partition", default=None, help="with --executor slurm: the partition")
    p.add_argument(
        "--slurm-time-min", type=int, default=None, help="with --executor slurm: a job's time limit (240)"
    )
    p.add_argument(
        "--slurm-mem-gb", type=float, default=None, help="with --executor slurm: memory per job (32)"
    )
    p.add_argument("--slurm-gpus", type=int, default=None, help="with --executor slurm: GPUs per job (1)")
    p.add_argument(
        "--slurm-cpus", type=int, default=None, help="with --executor slurm: CPUs (and threads) per job (4)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="pre-training/evaluation jobs run side by side, one thread each (default: 2 on >= 2 cores)",
    )
    p.add_argument(
        "--only",
        metavar="NAMES",
        default=None,
        help="comma-separated upstreams/baselines (e.g. bestrq): run their stages alone, with the "
        "pre-trainings they need; delete a changed recipe's old checkpoint and results first",
    )
    p.add_argument(
        "--from-published",
        metavar="DIR",
        default=None,
        help="start an empty work folder from a published leaderboard (e.g. leaderboard), less the "
        "results of --only, to redo one upstream without re-running everything",
    )
    p.add_argument(
        "--publish",
        metavar="DIR",
        default=None,
        help="then copy the result files and stage times to DIR/results and DIR/stages.json and build "
        "DIR/board from them (how leaderboard/ in the repository is made)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ls", help="list tasks, upstreams, methods, profiles or corpora")
    p.add_argument("what", choices=list(LISTINGS))
    p.add_argument("--include-path", action="append", default=[], help="extra task folders")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("leaderboard", help="tables, plots and a static page from result JSONs")
    p.add_argument(
        "action",
        choices=["build", "references"],
        help="build: the leaderboard; references: store a suite's FBANK reference points",
    )
    p.add_argument("--results", required=True, help="folder of result JSONs (<upstream>/<task>.json)")
    p.add_argument("--out", required=True, help="build: output folder; references: the JSON file to write")
    p.add_argument(
        "--references", default=None, help="folder of <suite>.json reference files (default: built-in)"
    )
    p.add_argument("--suite", default=None, help="references: which suite, when the folder holds several")
    p.add_argument("--bootstrap", type=int, default=1000, help="paired-bootstrap resamples per comparison")
    p.add_argument("--no-plots", action="store_true", help="skip the matplotlib figures")
    p.add_argument(
        "--allow-off-budget",
        action="store_true",
        help="references: accept fbank results trained with a non-standard --steps",
    )
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser(
        "validate",
        help="check suites, manifests (and their audio), task YAMLs and result files as `eval` reads them",
    )
    p.add_argument("paths", nargs="+")
    p.add_argument(
        "--headers-only",
        action="store_true",
        help="check audio headers against the manifests' durations without decoding every file (faster)",
    )
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads spin by default; on a loaded 2-core machine they spin waiting for
    # threads that are not running, which made training ~10x slower. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EvalkitError as e:
        print(f"evalkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
