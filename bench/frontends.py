"""Times one wav2vec 2.0 training step with the waveform CNN (20 ms) vs the fbank front-end (40 ms).

Same context encoder and objective, only the front-end swapped: the ratio is
what the CPU recipes save by using fbank. Steps are forward + backward +
AdamW update under bf16 autocast on a batch of noise (timing does not depend on
the content); the two front-ends alternate so that load from other processes
hits both alike.

    python bench/frontends.py [--encoder configs/pretrain/wav2vec2-tiny.yaml] [--batch 8] [--seconds 6]
                              [--cnn-channels 512] [--reps 5] [--fp32]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import yaml

from evalkit.core.audio import SAMPLE_RATE
from upstreams.objective import Batch
from upstreams.wav2vec2 import Wav2Vec2


def step_seconds(objective: Wav2Vec2, optimizer: torch.optim.Optimizer, batch: Batch, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = objective(batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--encoder",
        default="configs/pretrain/wav2vec2-tiny.yaml",
        help="recipe whose encoder and objective are timed",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--cnn-channels", type=int, default=512, help="the paper's CNN has 512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()

    recipe = yaml.safe_load(open(args.encoder))
    fbank = recipe["encoder"]
    cnn = copy.deepcopy(fbank)
    cnn["frontend"] = {"kind": "cnn", "channels": args.cnn_channels}
    torch.manual_seed(0)
    samples = int(args.seconds * SAMPLE_RATE)
    batch = Batch(
        torch.randn(args.batch, samples) * 0.1,
        torch.full((args.batch,), samples),
        [str(i) for i in range(args.batch)],
        torch.zeros(args.batch, dtype=torch.long),
    )
    runs = {}
    for name, encoder in (("cnn", cnn), ("fbank", fbank)):
        objective = Wav2Vec2(encoder, **recipe.get("objective", {})).train()
        runs[name] = (objective, torch.optim.AdamW(objective.parameters(), lr=1e-4))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.reps + 1):
        for name, (objective, optimizer) in runs.items():
            seconds = step_seconds(objective, optimizer, batch, bf16=not args.fp32)
            if i:  # the first step warms up allocators and kernels
                times[name].append(seconds)

    audio = args.batch * args.seconds
    load = os.getloadavg()[0]
    print(
        f"{args.encoder}: batch {args.batch} x {args.seconds:g} s, {'fp32' if args.fp32 else 'bf16'}, "
        f"{torch.get_num_threads()} threads, load average {load:.1f}, median of {args.reps} steps"
    )
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name:>6}: {1000 * median:8.0f} ms/step  {audio / median:7.1f} audio s/s")
    ratio = statistics.median(times["cnn"]) / statistics.median(times["fbank"])
    print(f"cnn / fbank step time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
