"""What every benchmark shares: timing both sides in one run, the A/A check, the machine, the result file.

A comparison times its sides round-robin (warm-up rounds first, then `reps` rounds in which every side
runs once), so load from other processes hits both alike; its ratio is the median over rounds of the
per-round ratio A/B, with a 95% bootstrap interval over rounds (the noise of this run). The A/A check
times two copies of the same side the same way: its ratio must hold 1.00 within its own interval, else
the harness (or the machine) is biased and the numbers are not to be trusted.

Each script writes `bench/results/<name>.json`: its rows, targets, A/A check and the machine (CPU model,
cores, torch version and threads, load average before and after).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a number was measured on."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def time_rounds(sides: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call of every side, round-robin: `warmup` rounds dropped, then `reps` rounds."""
    if reps < 1:
        raise ValueError(f"reps {reps}: time at least one round.")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(warmup + reps):
        for name, fn in sides.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


@dataclass
class Ratio:
    """A/B over paired rounds: the median of per-round ratios and its 95% bootstrap interval."""

    a: str
    b: str
    ratio: float
    low: float
    high: float
    a_median_s: float
    b_median_s: float
    rounds: int

    @property
    def noise(self) -> float:
        """Half the interval, relative: the ± this run's number carries."""
        return (self.high - self.low) / 2 / self.ratio

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high

    def text(self) -> str:
        return f"{self.a}/{self.b} {self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def ratio(times: dict[str, list[float]], a: str, b: str, n_boot: int = 2000, seed: int = 0) -> Ratio:
    per_round = np.asarray(times[a]) / np.asarray(times[b])
    rng = np.random.default_rng(seed)
    medians = np.median(per_round[rng.integers(0, len(per_round), (n_boot, len(per_round)))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return Ratio(
        a,
        b,
        float(np.median(per_round)),
        float(low),
        float(high),
        statistics.median(times[a]),
        statistics.median(times[b]),
        len(per_round),
    )


def aa_check(make: Callable[[], Callable[[], object]], reps: int, warmup: int = 1) -> dict:
    """Two copies of one side, timed as a comparison is: the ratio must hold 1.00 within its interval."""
    r = ratio(time_rounds({"A": make(), "A'": make()}, reps, warmup), "A", "A'")
    return {**asdict(r), "passed": r.holds(1.0), "noise": r.noise}


def target(what: str, op: str, value: float, measured: float) -> dict:
    """One target of a benchmark: `measured` against `op` (">=" or "<=") `value`."""
    met = measured >= value if op == ">=" else measured <= value
    return {"what": what, "target": f"{op} {value:g}", "measured": measured, "met": met}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(name: str, payload: dict, quick: bool, out: Path | None = None) -> Path:
    """bench/results/<name>.json (or <name>.quick.json), with the machine it ran on."""
    out = out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}{'.quick' if quick else ''}.json"
    path.write_text(
        json.dumps({"name": name, "quick": quick, "machine": machine(), **payload}, indent=1) + "\n"
    )
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `rows` (dicts) in `columns` order; floats to 3 significant digits."""

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# --- pre-training steps on noise (timing does not depend on the content) -------------------------------


def noise_batch(n: int, seconds: float, seed: int = 0):
    """A pre-training batch of `n` utterances of `seconds` of noise."""
    from evalkit.core.audio import SAMPLE_RATE
    from upstreams.objective import Batch

    g = torch.Generator().manual_seed(seed)
    samples = int(seconds * SAMPLE_RATE)
    return Batch(
        torch.randn(n, samples, generator=g) * 0.1,
        torch.full((n,), samples),
        [str(i) for i in range(n)],
        torch.zeros(n, dtype=torch.long),
    )


def objective_from_recipe(recipe: str | dict, seed: int = 0):
    """The recipe's pre-training objective (its encoder inside), random-init, in training mode."""
    import yaml

    from upstreams.methods import METHODS

    cfg = yaml.safe_load(open(recipe)) if isinstance(recipe, str) else recipe
    torch.manual_seed(seed)
    return METHODS.get(cfg["method"])(cfg["encoder"], **cfg.get("objective", {})).train()


def training_step(objective, batch, bf16: bool = False) -> Callable[[], None]:
    """One pre-training step (forward, backward, AdamW update) of `objective` on `batch`, as a callable."""
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = objective(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _peak_child(queue, build, args) -> None:
    run = build(*args)  # inputs and model exist before the baseline is read
    rss = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    run()
    queue.put((_status_kb("VmHWM") - rss) / 1024)


def peak_memory_mb(build: Callable, *args) -> float:
    """MB of resident memory that `build(*args)()` adds at its peak, measured in a fresh process (spawned:
    no freed memory of this one to reuse); `build` is a module-level function returning the callable."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(queue, build, args))
    child.start()
    value = queue.get()
    child.join()
    return value


def with_frontend(recipe: str, frontend: dict) -> dict:
    """The recipe (a dict) with its encoder's front-end replaced."""
    import yaml

    cfg = yaml.safe_load(open(recipe))
    cfg["encoder"] = {**cfg["encoder"], "frontend": frontend}
    return cfg


def give_random_targets(objective, batch, seed: int = 0) -> None:
    """A HuBERT objective's k-means targets, random, for `batch`'s utterances (timing needs no real ones)."""
    import numpy as np

    from upstreams.kmeans_targets import ClusterTargets

    hop = 160  # MFCC targets, 10 ms
    n = len(batch.ids)
    length = int(batch.wav_lens.max()) // hop + 1
    k = objective.settings.n_clusters
    labels = np.random.default_rng(seed).integers(0, k, n * length).astype(np.int64)
    objective.targets = ClusterTargets(
        labels, list(batch.ids), np.arange(n) * length, np.full(n, length), hop, k, "mfcc"
    )


# --- whole runs ------------------------------------------------------------------------------------------

WORK = Path(__file__).resolve().parent / ".work"


def bench_suite(quick: bool) -> Path:
    """The suite whole-run benchmarks read: $BENCH_SUITE; else the default suite where `evalkit run --profile
    default --workdir work` made it; --quick: the smoke suite, made in bench/.work (a minute or two)."""
    import os

    given = os.environ.get("BENCH_SUITE")
    if given:
        return Path(given)
    if not quick:
        return Path("work/default/suite")
    from evalkit.synth.suite import build_suite

    folder = WORK / "smoke-suite"
    build_suite(folder, "smoke", seed=0)  # resumes a partial one, checks one made before
    return folder


def whole_pretraining(recipe: str, data: Path, max_steps: int | None = None) -> dict:
    """Wall time and peak resident memory of `evalkit pretrain RECIPE` in a process of its own (its data
    workers included: ru_maxrss of the largest), into a temporary folder."""
    import os
    import subprocess
    import sys
    import tempfile

    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        command = [
            sys.executable,
            "-m",
            "evalkit",
            "pretrain",
            recipe,
            "--data",
            str(data),
            "--out",
            f"{tmp}/run",
        ]
        if max_steps is not None:
            command += ["--max-steps", str(max_steps)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read()[-2000:]}")
    return {"wall s": wall, "peak RSS MB": usage.ru_maxrss / 1024, "steps": max_steps or "the recipe's"}
