"""Times forward+backward of one encoder layer: self-attention (MHSA) vs SummaryMixing.

Both are the same post-LN transformer block (FFN 4·d) with only the mixer
swapped, so the ratio is what choosing `kind: summarymixing` buys per layer.

    python bench/encoders.py [--dim 256] [--lengths 250 1000 4000] [--batch 4] [--reps 5] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from upstreams.modules import SelfAttention, SummaryMixing, TransformerLayer


def step_seconds(layer: torch.nn.Module, x: torch.Tensor, valid: torch.Tensor, bf16: bool) -> float:
    """Seconds of one forward+backward."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = layer(x, valid)
    out.float().square().mean().backward()
    elapsed = time.perf_counter() - start
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return elapsed


def time_layers(
    layers: dict[str, torch.nn.Module], batch: int, length: int, dim: int, reps: int, bf16: bool
) -> dict[str, float]:
    """Median seconds per layer after one warm-up; layers alternate so that load from others hits both alike."""
    x = torch.randn(batch, length, dim, requires_grad=True)
    valid = torch.ones(batch, length, dtype=torch.bool)
    times: dict[str, list[float]] = {name: [] for name in layers}
    for i in range(reps + 1):
        for name, layer in layers.items():
            seconds = step_seconds(layer, x, valid, bf16)
            if i:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    args = parser.parse_args()

    torch.manual_seed(0)
    d = args.dim
    layers = {
        "MHSA": TransformerLayer(d, SelfAttention(d, args.heads), 4 * d, 0.0, 0.0, norm_first=False),
        "SummaryMixing": TransformerLayer(d, SummaryMixing(d, d), 4 * d, 0.0, 0.0, norm_first=False),
    }
    precision = "bf16" if args.bf16 else "fp32"
    print(f"d={d}, batch={args.batch}, {precision}, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'T':>6} {'MHSA ms':>10} {'SumMix ms':>10} {'ratio':>7}")
    for length in args.lengths:
        ms = {
            k: 1000 * v for k, v in time_layers(layers, args.batch, length, d, args.reps, args.bf16).items()
        }
        print(
            f"{length:>6} {ms['MHSA']:>10.1f} {ms['SummaryMixing']:>10.1f} {ms['MHSA'] / ms['SummaryMixing']:>6.1f}x"
        )


if __name__ == "__main__":
    main()
