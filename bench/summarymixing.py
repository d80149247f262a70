"""SummaryMixing vs self-attention: pre-training step time and peak memory by utterance length.

The small wav2vec 2.0 recipe (`configs/pretrain/wav2vec2-small.yaml`, fbank front-end, 4 x 256) and its
SummaryMixing twin (`summarymixing-small.yaml`, only the mixer differs) take one pre-training step
(forward, backward, AdamW) on the same audio per step cut into 5 s, 20 s or 80 s utterances; fp32.
Memory is the peak resident memory a step adds, each measured in a fresh process. The last row is the
whole small pre-training run of each recipe (`evalkit pretrain`, wall seconds and the process's peak
RSS in the step columns) on the default suite (--quick: 5 steps on the smoke suite). The paper (Parcollet
et al., 2024) reports 18% less time and 23% less memory for a whole run; the issue's targets are
-25% time and -30% memory. Attention's cost grows with the square of the length, SummaryMixing's
linearly: the table says where SummaryMixing starts to pay.

    python -m bench summarymixing [--quick]
"""

from __future__ import annotations

from bench.harness import (
    aa_check,
    bench_suite,
    noise_batch,
    objective_from_recipe,
    peak_memory_mb,
    ratio,
    table,
    target,
    time_rounds,
    training_step,
    whole_pretraining,
)

NAME = "summarymixing"
TITLE = "SummaryMixing vs self-attention (small wav2vec 2.0 recipe)"
RECIPES = {
    "MHSA": "configs/pretrain/wav2vec2-small.yaml",
    "SummaryMixing": "configs/pretrain/summarymixing-small.yaml",
}
TARGETS = {"time saved": 0.25, "memory saved": 0.30}


def step(recipe: str, n: int, seconds: float):
    """A module-level builder (peak_memory_mb spawns a process that calls it)."""
    return training_step(objective_from_recipe(recipe), noise_batch(n, seconds))


def _length(seconds) -> str:
    return f"{seconds:g} s utterances" if isinstance(seconds, float) else str(seconds)


def run(quick: bool = False) -> dict:
    audio = 20.0 if quick else 160.0  # seconds of audio per step, cut into utterances of each length
    lengths = [5.0, 20.0] if quick else [5.0, 20.0, 80.0]
    reps = 3 if quick else 5
    rows = []
    for seconds in lengths:
        n = max(1, int(audio // seconds))
        times = time_rounds({k: step(r, n, seconds) for k, r in RECIPES.items()}, reps)
        r = ratio(times, "SummaryMixing", "MHSA")
        memory = {k: peak_memory_mb(step, recipe, n, seconds) for k, recipe in RECIPES.items()}
        rows.append(
            {
                "utterance s": seconds,
                "batch": n,
                "MHSA s/step": r.b_median_s,
                "SummaryMixing s/step": r.a_median_s,
                "time saved": 1 - r.ratio,
                "time ratio 95% CI": [round(r.low, 3), round(r.high, 3)],
                "MHSA peak MB": memory["MHSA"],
                "SummaryMixing peak MB": memory["SummaryMixing"],
                "memory saved": 1 - memory["SummaryMixing"] / memory["MHSA"],
            }
        )
    data = bench_suite(quick)
    runs = {k: whole_pretraining(r, data, 5 if quick else None) for k, r in RECIPES.items()}
    whole = {
        "utterance s": "whole run",
        "batch": f"{runs['MHSA']['steps']} steps",
        "MHSA s/step": runs["MHSA"]["wall s"],
        "SummaryMixing s/step": runs["SummaryMixing"]["wall s"],
        "time saved": 1 - runs["SummaryMixing"]["wall s"] / runs["MHSA"]["wall s"],
        "MHSA peak MB": runs["MHSA"]["peak RSS MB"],
        "SummaryMixing peak MB": runs["SummaryMixing"]["peak RSS MB"],
        "memory saved": 1 - runs["SummaryMixing"]["peak RSS MB"] / runs["MHSA"]["peak RSS MB"],
    }
    rows.append(whole)
    n = max(1, int(audio // lengths[0]))
    aa = aa_check(lambda: step(RECIPES["MHSA"], n, lengths[0]), reps)
    pays = next((row["utterance s"] for row in rows if row["time saved"] >= TARGETS["time saved"]), None)
    targets = [
        target(f"{what}, {_length(row['utterance s'])}", ">=", value, row[what])
        for row in rows
        for what, value in TARGETS.items()
    ]
    columns = ["utterance s", "batch", "MHSA s/step", "SummaryMixing s/step", "time saved", "MHSA peak MB",
               "SummaryMixing peak MB", "memory saved"]  # fmt: skip
    return {
        "title": TITLE,
        "setup": f"{audio:g} s of noise per step, fp32, median of {reps} rounds; memory: one step in a fresh process"
        + (f"; SummaryMixing saves >= 25% of the time from {pays:g} s utterances" if pays else ""),
        "rows": rows,
        "targets": targets,
        "aa": aa,
        "markdown": table(rows, columns),
    }
