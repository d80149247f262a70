"""The feature cache: a ten-task evaluation with cached features vs the upstream recomputed at every step.

s3prl runs the frozen upstream inside every training step; evalkit extracts each split once into a
memory-mapped cache and trains the heads on it. Both sides here run `evalkit eval`'s code on the same
suite and tasks (`--protocol superb`, each task's own budget and grid), the cached side from an empty
cache (its extraction is counted), the other with `--no-cache`. Recomputing at the full budgets takes
hours on 2 cores, so each task is run at two short step counts k and 2k per side: the difference gives
the cost of a step, the rest the fixed cost (extraction, dev and test scoring), and the task's budget
is extrapolated from the two (stated as such). With `--full`-size runs (not --quick) KS and ASR are
also run at their whole budgets both ways, which checks the extrapolation. Target: >= 10x.

The upstream: a random HuBERT Base (transformers folder, `hf:`; 95 M parameters) on the default suite
(`work/default/suite`, as `evalkit run --profile default` makes it; or $BENCH_SUITE); --quick: the
built-in random 4 x 128 Transformer on the smoke suite ($BENCH_SUITE, else made in bench/.work).

    python -m bench cache [--quick]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import WORK, bench_suite, table, target
from evalkit.evaluation.evaluate import EvalOptions, resolve_tasks, run_eval

NAME = "cache"
TITLE = "Feature cache vs recomputing the upstream every step"
TARGET = 10.0


def timed(spec: str, task, data: Path, steps: int, no_cache: bool) -> float:
    """Seconds of one `evalkit eval` of `task` for `steps` steps, from an empty cache and results folder."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        opts = EvalOptions(
            data=data,
            output=Path(tmp) / "results",
            cache=Path(tmp) / "cache",
            no_cache=no_cache,
            steps=steps,
            protocol="superb",
            progress=False,
        )
        start = time.perf_counter()
        run_eval(spec, [task], opts, log=lambda *_: None)
        return time.perf_counter() - start


def run(quick: bool = False) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    data = bench_suite(quick)
    if quick:
        spec = "random_transformer"
    else:
        from bench.superb_plan import random_hubert_base

        folder = WORK / "hubert-base-random"
        if not (folder / "config.json").is_file():
            random_hubert_base(folder)
        spec = f"hf:{folder}"
    profile = "smoke" if quick else "default"
    k = 2 if quick else 20
    full = set() if quick else {"ks", "asr"}
    tasks = resolve_tasks("ks,asr,pr,sid" if quick else "all")  # --quick: four of the ten, a proxy
    rows = []
    total = {"cached": 0.0, "recomputed": 0.0}
    for task in tasks:
        budget = task.budget(profile)[0]
        row = {"task": task.name, "budget steps": budget}
        for side, no_cache in (("cached", False), ("recomputed", True)):
            if task.kind == "qbe":  # trains nothing: s3prl too extracts every query and document once
                cost = row.get("cached s") or timed(spec, task, data, 1, False)
                row[f"{side} s"] = cost
            elif task.name in full:
                cost = timed(spec, task, data, budget, no_cache)
                row[f"{side} s"] = cost
            else:
                one, two = timed(spec, task, data, k, no_cache), timed(spec, task, data, 2 * k, no_cache)
                per_step = max(two - one, 0.0) / k
                cost = one - per_step * k + per_step * budget  # fixed part + every step of the budget
                row[f"{side} s/step"] = per_step
                row[f"{side} s"] = cost
            total[side] += cost
        row["how"] = (
            "one extraction either way"
            if task.kind == "qbe"
            else "measured"
            if task.name in full
            else f"extrapolated from {k} and {2 * k} steps"
        )
        row["speed-up"] = row["recomputed s"] / row["cached s"]
        rows.append(row)
    speedup = total["recomputed"] / total["cached"]
    rows.append(
        {
            "task": f"all {len(tasks)}",
            "cached s": total["cached"],
            "recomputed s": total["recomputed"],
            "speed-up": speedup,
        }
    )
    shutil.rmtree(WORK / "tmp", ignore_errors=True)
    return {
        "title": TITLE,
        "setup": f"upstream {spec.split('/')[-1]}, suite {data}, --protocol superb at each task's {profile} budget",
        "rows": rows,
        "targets": [target(f"speed-up, {len(tasks)} tasks", ">=", TARGET, speedup)],
        "aa": None,  # each side is one run per step count: no repeated rounds to check the harness with
        "markdown": table(rows, ["task", "budget steps", "cached s", "recomputed s", "speed-up", "how"]),
    }
