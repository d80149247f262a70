"""Times a pre-training step in fp32 and under bf16 autocast, on this machine's CPU.

What `train.bf16: auto` decides: a CPU without native bf16 (AVX-512 BF16 or AMX)
emulates it, and a recipe runs faster in fp32 there. For each recipe, one
training step (forward + backward + AdamW update) on a batch of noise (timing
does not depend on the content); the two precisions alternate so that load from
other processes hits both alike. A 1024 x 1024 matmul is timed the same way.

    python bench/precision.py [--recipes wav2vec2-tiny bestrq-tiny summarymixing-tiny] [--batch 8]
                              [--seconds 6] [--reps 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.resources import pretrain_recipe
from evalkit.pretraining.distributed import native_bf16
from evalkit.pretraining.recipe import build_objective, load_config
from upstreams.objective import Batch


def matmul_seconds(a: torch.Tensor, b: torch.Tensor, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        a @ b
    return time.perf_counter() - start


def step_seconds(objective, optimizer: torch.optim.Optimizer, batch: Batch, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = objective(batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def medians(timed, reps: int) -> dict[bool, float]:
    """Median seconds of timed(bf16) for fp32 (False) and bf16 (True), after one warm-up each, alternating."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(reps + 1):
        for bf16 in (False, True):
            seconds = timed(bf16)
            if i:
                times[bf16].append(seconds)
    return {bf16: statistics.median(t) for bf16, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes", nargs="+", default=["wav2vec2-tiny", "bestrq-tiny", "summarymixing-tiny"]
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16(cpu)}, "
        f"{torch.get_num_threads()} threads; medians of {args.reps}"
    )
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    m = medians(lambda bf16: matmul_seconds(a, b, bf16), args.reps)
    gflops = {k: 2 * 1024**3 / v / 1e9 for k, v in m.items()}
    print(f"matmul 1024²: fp32 {gflops[False]:.1f} GFLOP/s, bf16 {gflops[True]:.1f} GFLOP/s")

    samples = int(args.seconds * SAMPLE_RATE)
    batch = Batch(
        wavs=0.1 * torch.randn(args.batch, samples),
        wav_lens=torch.full((args.batch,), samples),
        ids=[f"noise{i}" for i in range(args.batch)],
        offsets=torch.zeros(args.batch, dtype=torch.long),
    )
    audio = args.batch * args.seconds
    for name in args.recipes:
        path = pretrain_recipe(name)
        objective = build_objective(load_config(path)).train()
        optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
        m = medians(functools.partial(step_seconds, objective, optimizer, batch), args.reps)
        print(
            f"{name}: fp32 {m[False]:.3f} s/step ({audio / m[False]:.0f} audio-s/s), "
            f"bf16 autocast {m[True]:.3f} s/step ({audio / m[True]:.0f} audio-s/s): "
            f"fp32 is {m[True] / m[False]:.1f}x faster"
        )


if __name__ == "__main__":
    main()
