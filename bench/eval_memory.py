"""Peak resident memory of `evalkit eval --tasks all`, per upstream: what a machine needs for one evaluation.

Each upstream is evaluated on all ten tasks of a suite in a subprocess, with the settings `evalkit run
--profile default` evaluates with (`--protocol quick --steps 400`, one torch thread as in its worker
processes), a fresh results folder and a fresh feature cache, so extraction is measured too. The RSS of
the evaluating process is sampled from /proc every `--interval` s, split into anonymous memory (tensors,
the Python heap) and file-backed pages (the memory-mapped feature cache, which the kernel can drop under
pressure), plus the private pages of any processes it starts; the kernel's own peak (ru_maxrss of the
child, from wait4) is recorded beside it. Each
sample is attributed to a task and a phase (feature extraction, or the heads' training and scoring)
from the lines the evaluation prints.

`--random-init RECIPE` adds the random-init twin of a pre-training recipe, made as `evalkit run` makes
them: a one-step `evalkit pretrain` writes the recipe's checkpoint, `make_random_twin` re-initialises it.

    python bench/eval_memory.py SUITE [UPSTREAM ...] [--random-init hubert-tiny ...] [--steps 400]
                                [--threads 1] [--pretrain-data SUITE] [--time-limit S] [--work DIR]
                                [--json FILE] [--note TEXT]

Hidden size x layers is as the upstream reports it: layers counts every hidden state a head can weigh
(the encoder's input too), so a 4-layer Transformer shows 5.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from evalkit.core.manifest import read_manifest
from evalkit.evaluation.evaluate import resolve_tasks
from evalkit.evaluation.task import KINDS
from evalkit.pipeline.plan import CONFIGS
from evalkit.pipeline.twins import make_random_twin
from upstreams.load import load_upstream

REPO = Path(__file__).resolve().parents[1]
GB = 2**30
TASK_DONE = re.compile(r"^\[([\w.-]+)\] test ")


def evalkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "evalkit", *args]


def child_env(threads: int) -> dict[str, str]:
    """The evaluation's environment: this checkout first on the path, `threads` intra-op threads."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    threads_env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # unbuffered: each line arrives when printed, so samples are attributed to the right task
    return os.environ | threads_env | {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def descendants(root: int) -> set[int]:
    """The processes below `root`, less copies of it that have not exec'd yet (see `tree_memory`)."""
    parent, shape = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            shape[pid] = (os.readlink(f"/proc/{pid}/exe"), fields[20])  # executable, address-space size
        except OSError:  # the process ended meanwhile, or its exe is unreadable
            continue
        parent[pid] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return {p for p in found if shape[p] != shape.get(root)}


def proc_kb(path: str, keys: tuple[str, ...]) -> list[int]:
    try:
        text = Path(path).read_text()
    except OSError:  # the process ended meanwhile
        return [0] * len(keys)
    kb = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.M))
    return [1024 * int(kb.get(k, 0)) for k in keys]


def tree_memory(root: int) -> tuple[int, int, int, int]:
    """(total, anonymous, file-backed, children's) bytes: the evaluating process's RSS split into anonymous
    memory and file-backed pages, plus the private pages of its descendants. Only their private pages
    count: a child forked (or vforked) before exec maps the parent's pages, which summing RSS would count
    twice (evalkit runs `git` at each result it writes). A vforked child shares the parent's address space
    outright until it execs, so children with the parent's executable and address-space size, copies
    about to exec, are left out."""
    rss, anon, file = proc_kb(f"/proc/{root}/status", ("VmRSS", "RssAnon", "RssFile"))
    keys = ("Private_Clean", "Private_Dirty")
    children = sum(sum(proc_kb(f"/proc/{p}/smaps_rollup", keys)) for p in descendants(root))
    return rss + children, anon, file, children


def measure(cmd: list[str], env: dict, log_path: Path, interval: float, limit: float | None) -> dict:
    """Run `cmd`, sampling its process tree's memory; returns samples, printed lines and the kernel's peak.
    Past `limit` seconds the command is stopped (SIGTERM)."""
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        with open(log_path, "w") as log:
            for line in proc.stdout:  # text mode: tqdm's \r redraws arrive as lines too
                lines.append((time.time() - t0, line.rstrip()))
                log.write(line)
                log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # this child's own peak, not earlier children's
        if pid:
            break
        if limit is not None and time.time() - t0 > limit and proc.returncode is None:
            proc.terminate()
            proc.returncode = -15  # until wait4 says how it ended
        samples.append((time.time() - t0, *tree_memory(proc.pid)))
        time.sleep(interval)
    stopped = proc.returncode is not None
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return {
        "rc": proc.returncode,
        "stopped": stopped,
        "wall_s": time.time() - t0,
        "samples": samples,
        "lines": lines,
        "ru_maxrss_gb": usage.ru_maxrss * 1024 / GB,  # kB on Linux
    }


def phase_of(line: str) -> str:
    """What the evaluation does after printing `line`: extracting features, training and scoring heads
    (from the end of the last split's extraction on), or setting up the next task."""
    if TASK_DONE.match(line):
        return "setup"
    return "features" if line.startswith("features") and "100%" not in line else "heads"


def phases(samples: list, lines: list[tuple[float, str]], tasks: list[str]) -> dict[str, dict[str, float]]:
    """Peak RSS (GB) of each task's phases (see `phase_of`); `tasks` in the order they run. A sample
    belongs to the first task without a result at its time ("exit" once all have one)."""
    done = {m.group(1): t for t, line in lines if (m := TASK_DONE.match(line))}
    marks = [(t, phase_of(line)) for t, line in lines]
    out: dict[str, dict[str, float]] = {}
    for t, rss, *_ in samples:
        task = next((name for name in tasks if done.get(name, math.inf) >= t), "exit")
        phase = next((p for s, p in reversed(marks) if s <= t), "load")
        peaks = out.setdefault(task, {})
        peaks[phase] = max(peaks.get(phase, 0.0), round(rss / GB, 3))
    return out


def timeline(samples: list, points: int = 100) -> list[list[float]]:
    """[t s, total GB, anonymous GB, file-backed GB, children's GB] at about `points` times: each span's largest sample."""
    span = max(1, math.ceil(len(samples) / points))
    chunks = [max(samples[i : i + span], key=lambda s: s[1]) for i in range(0, len(samples), span)]
    return [[round(t, 1), *(round(b / GB, 3) for b in rest)] for t, *rest in chunks]


def audio_hours(suite: Path) -> float:
    """Hours of audio in the manifests the ten tasks read (each manifest once)."""
    manifests = set()
    for task in resolve_tasks("all"):
        kind = KINDS.get(task.kind)(task, suite, frame_rate=50.0)  # any rate: only its manifests are read
        manifests.update(kind.manifest(split) for split in kind.splits)
    return sum(float(r.get("duration", 0.0)) for m in manifests for r in read_manifest(m)) / 3600


def upstream_facts(spec: str) -> dict:
    upstream = load_upstream(spec)
    return {
        "parameters": sum(p.numel() for p in upstream.parameters()),
        "hidden_size": int(upstream.hidden_size),
        "num_layers": int(upstream.num_layers),
    }


def random_twin(recipe: str, data: Path, work: Path, threads: int) -> Path:
    """The random-init twin of `recipe` (a shipped recipe's name, e.g. hubert-tiny, or a recipe file),
    as `evalkit run` makes twins. Only the recipe's `encoder:` reaches the twin: a copy with cheaper
    training settings (no bf16 autocast, one micro-batch) makes the same upstream sooner."""
    name = Path(recipe).stem
    trained, twin = work / name, work / f"{name}-random"
    if not (twin / "config.json").is_file():
        path = Path(recipe) if Path(recipe).is_file() else CONFIGS / f"{recipe}.yaml"
        cmd = evalkit_cmd("pretrain", str(path), "--data", str(data))
        cmd += ["--out", str(trained), "--max-steps", "1"]
        done = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
        make_random_twin(trained, twin, 0, [name])
    return twin


def suite_name(suite: Path) -> str:
    stamp = suite / "suite.json"
    return json.loads(stamp.read_text()).get("profile") or suite.name if stamp.is_file() else suite.name


def evaluate(spec: str, label: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"eval-{label}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = evalkit_cmd("eval", "--upstream", spec, "--tasks", "all", "--data", str(args.suite))
    cmd += ["--output", str(out / "results"), "--cache", str(out / "cache"), "--protocol", args.protocol]
    cmd += ["--steps", str(args.steps)]
    load_before, commit = os.getloadavg(), evalkit_commit()
    run = measure(cmd, child_env(args.threads), work / f"eval-{label}.log", args.interval, args.time_limit)
    samples = run["samples"]
    peak = max(samples, key=lambda s: s[1]) if samples else (0, 0, 0, 0, 0)
    row = {
        "upstream": label,
        "spec": spec,
        **upstream_facts(spec),
        "suite": suite_name(args.suite),
        "protocol": args.protocol,
        "steps": args.steps,
        "threads": args.threads,
        "exit_code": run["rc"],
        "wall_s": round(run["wall_s"], 1),
        "peak_rss_gb": round(peak[1] / GB, 3),
        "at_peak": {
            "t_s": round(peak[0], 1),
            "anon_gb": round(peak[2] / GB, 3),
            "file_gb": round(peak[3] / GB, 3),
        },
        "peak_anon_gb": round(max((s[2] for s in samples), default=0) / GB, 3),
        "peak_children_gb": round(max((s[4] for s in samples), default=0) / GB, 3),
        "ru_maxrss_gb": round(run["ru_maxrss_gb"], 3),
        "cache_gb": round(sum(f.stat().st_size for f in (out / "cache").rglob("*") if f.is_file()) / GB, 3),
        "tasks_done": [m.group(1) for _, line in run["lines"] if (m := TASK_DONE.match(line))],
        "per_task_peak_gb": phases(samples, run["lines"], [t.name for t in resolve_tasks("all")]),
        "samples": len(samples),
        "timeline": timeline(samples),
        "loadavg_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "evalkit_commit": commit,
    }
    if run["stopped"]:
        row["stopped_after_s"] = args.time_limit  # --time-limit: the numbers cover the tasks done so far
    elif run["rc"] != 0:
        row["log_tail"] = [line for _, line in run["lines"][-20:]]
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    meminfo = Path("/proc/meminfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    total_kb = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(total_kb.group(1)) / 2**20, 1) if total_kb else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def evalkit_commit() -> str | None:
    """HEAD, with "+dirty" when the working tree's code (evalkit, upstreams, tasks) differs from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "diff", "--quiet", "HEAD", "--", "evalkit", "upstreams", "tasks"]
    ).returncode
    return f"{head}+dirty" if head and dirty else head or None


def print_table(rows: list[dict]) -> None:
    print(
        f"{'upstream':<26} {'suite':<8} {'params':>8} {'D x L':>8} {'audio h':>8} {'wall s':>8} "
        f"{'peak RSS GB':>11} {'anon GB':>8} {'cache GB':>8}"
    )
    for r in rows:
        size = f"{r.get('hidden_size', '?')}x{r.get('num_layers', '?')}"
        params = f"{r['parameters'] / 1e6:.2f}M" if "parameters" in r else "?"
        print(
            f"{r['upstream']:<26} {r['suite']:<8} {params:>8} {size:>8} {r['audio_hours']:>8.2f} "
            f"{r['wall_s']:>8.0f} {r['peak_rss_gb']:>11.2f} {r['peak_anon_gb']:>8.2f} {r['cache_gb']:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="suite folder (`evalkit synth --out`)")
    parser.add_argument(
        "upstreams", nargs="*", help="upstream specs, as `evalkit eval --upstream` takes them"
    )
    parser.add_argument(
        "--random-init", nargs="+", default=[], metavar="RECIPE", help="e.g. hubert-tiny, or a recipe file"
    )
    parser.add_argument(
        "--pretrain-data", type=Path, help="suite for the one-step pre-training (default: SUITE)"
    )
    parser.add_argument("--steps", type=int, default=400, help="as `evalkit run --profile default`")
    parser.add_argument("--protocol", default="quick", help="as `evalkit run --profile default`")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (`evalkit run`'s workers: 1)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument(
        "--work", type=Path, help="folder for twins, logs and results (default: a temp folder)"
    )
    parser.add_argument("--time-limit", type=float, help="stop an evaluation after this many seconds")
    parser.add_argument(
        "--keep", action="store_true", help="keep each evaluation's results and feature cache"
    )
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/eval_memory.json")
    parser.add_argument("--note", default="", help="recorded in the JSON, e.g. what else loaded the machine")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="eval_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    specs = [(spec, Path(spec).name or spec) for spec in args.upstreams]
    for recipe in args.random_init:
        twin = random_twin(recipe, args.pretrain_data or args.suite, work, args.threads)
        specs.append((str(twin), twin.name))  # <recipe>-random, as `evalkit run` names twins
    if not specs:
        parser.error("name an upstream or a recipe (--random-init) to evaluate")
    hours = audio_hours(args.suite)
    for spec, label in specs:
        print(f"== {label} on {args.suite} (logs in {work})", flush=True)
        row = evaluate(spec, label, args, work) | {"audio_hours": round(hours, 3)}
        print_table([row])
        runs = record(args.json, row, args.note)  # after each upstream: a later failure loses nothing
    print()
    print_table(runs)
    print(f"-> {args.json}")


def record(path: Path, row: dict, note: str) -> list[dict]:
    """Add `row` to the JSON; runs accumulate across invocations, a new run of the same upstream on the
    same suite with the same steps replacing the old one. Returns all runs."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    key = ("upstream", "suite", "steps")
    runs = [r for r in old.get("runs", []) if [r.get(k) for k in key] != [row[k] for k in key]]
    report = {
        "what": "peak RSS of `evalkit eval --tasks all` (the process, plus its children's private pages), "
        "fresh feature cache, per upstream",
        "machine": machine(),
        "note": note or old.get("note", ""),
        "runs": [*runs, row],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report["runs"]


if __name__ == "__main__":
    main()
