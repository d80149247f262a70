"""BEST-RQ vs wav2vec 2.0: pre-training step throughput, each as its paper has it, and on one shared encoder.

1. At the Base size with each paper's front-end: `bestrq-base.yaml` (fbank, random-projection quantiser
   targets) against `wav2vec2-base.yaml` (waveform CNN, contrastive loss over Gumbel codebooks). Whetten
   et al. (2024) report BEST-RQ-style training in under half of wav2vec 2.0's time: target >= 2x.
2. The two objectives on one encoder and front-end (the small wav2vec 2.0 recipe's), so that what the
   objective alone costs is visible beside what the front-end costs.
One step is forward, backward and AdamW on the same batch of noise; fp32 on a CPU without native bf16.
3. The whole small-recipe runs (`evalkit pretrain wav2vec2-small.yaml` and `bestrq-small.yaml` on the default
   suite; --quick: 5 steps on the smoke suite), wall seconds in the step columns.

    python -m bench bestrq [--quick]
"""

from __future__ import annotations

import yaml

from bench.frontend import CNN, bf16
from bench.harness import (
    aa_check,
    bench_suite,
    noise_batch,
    objective_from_recipe,
    ratio,
    table,
    target,
    time_rounds,
    training_step,
    whole_pretraining,
    with_frontend,
)

NAME = "bestrq"
TITLE = "BEST-RQ vs wav2vec 2.0"
TARGET = 2.0


def step(recipe, batch):
    return training_step(objective_from_recipe(recipe), batch, bf16())


def shared_encoder(method_recipe: str, encoder_recipe: str) -> dict:
    """`method_recipe`'s objective on `encoder_recipe`'s encoder and front-end."""
    cfg = yaml.safe_load(open(method_recipe))
    cfg["encoder"] = yaml.safe_load(open(encoder_recipe))["encoder"]
    return cfg


def run(quick: bool = False) -> dict:
    size = "small" if quick else "base"
    n, seconds, reps = (2, 4.0, 3) if quick else (4, 8.0, 5)
    batch = noise_batch(n, seconds)
    pairs = {
        f"{size}, each paper's front-end (wav2vec 2.0 CNN, BEST-RQ fbank)": (
            with_frontend(f"configs/pretrain/wav2vec2-{size}.yaml", CNN),  # the small recipe's is fbank
            f"configs/pretrain/bestrq-{size}.yaml",
        ),
        "small, one shared encoder and front-end (wav2vec2-small's)": (
            "configs/pretrain/wav2vec2-small.yaml",
            shared_encoder("configs/pretrain/bestrq-small.yaml", "configs/pretrain/wav2vec2-small.yaml"),
        ),
    }
    rows = []
    for what, (w2v, brq) in pairs.items():
        r = ratio(
            time_rounds({"wav2vec2": step(w2v, batch), "bestrq": step(brq, batch)}, reps),
            "wav2vec2",
            "bestrq",
        )
        rows.append(
            {
                "comparison": what,
                "wav2vec 2.0 s/step": r.a_median_s,
                "BEST-RQ s/step": r.b_median_s,
                "speed-up": r.ratio,
                "95% CI": [round(r.low, 3), round(r.high, 3)],
            }
        )
    data = bench_suite(quick)
    w2v, brq = (
        whole_pretraining(f"configs/pretrain/{m}-small.yaml", data, 5 if quick else None)
        for m in ("wav2vec2", "bestrq")
    )
    rows.append(
        {
            "comparison": f"whole small-recipe pre-training run ({w2v['steps']} steps; seconds)",
            "wav2vec 2.0 s/step": w2v["wall s"],
            "BEST-RQ s/step": brq["wall s"],
            "speed-up": w2v["wall s"] / brq["wall s"],
        }
    )
    aa = aa_check(lambda: step(f"configs/pretrain/bestrq-{size}.yaml", batch), reps)
    judged = rows[0]
    return {
        "title": TITLE,
        "setup": f"batch {n} x {seconds:g} s of noise, {'bf16' if bf16() else 'fp32'}, median of {reps} rounds",
        "rows": rows,
        "targets": [target(f"speed-up, {judged['comparison']}", ">=", TARGET, judged["speed-up"])],
        "aa": aa,
        "markdown": table(rows, ["comparison", "wav2vec 2.0 s/step", "BEST-RQ s/step", "speed-up"]),
    }
