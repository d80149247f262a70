"""Run the benchmarks: `python -m bench all [--quick]`, or `python -m bench NAME [NAME ...] [--quick]`.

Each benchmark module has `NAME`, `TITLE` and `run(quick) -> dict` (rows, targets met or not, its A/A
check, a Markdown table); its result goes to `bench/results/<name>[.quick].json`, and every result there
into `bench/results/summary[.quick].md` and a plot of each target's measured value against it.
`--quick` runs small proxies (minutes on 2 cores); the numbers the README states come from full runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from bench.harness import RESULTS, machine, write

# the questions, in the order the summary shows them
BENCHMARKS = [
    "frontend",
    "bestrq",
    "summarymixing",
    "distill",
    "cache",
    "transformers_parity",
    "efficiency",
    "readme",
]


def summary(quick: bool, out: Path = RESULTS) -> Path:
    """bench/results/summary[.quick].md from the result files there, and its plot."""
    suffix = ".quick" if quick else ""
    parts = [f"# Benchmarks{' (quick proxies)' if quick else ''}", ""]
    judged = []
    for name in BENCHMARKS:
        path = out / f"{name}{suffix}.json"
        if not path.is_file():
            parts += [f"## {name}", "", f"not run (no {path.name})", ""]
            continue
        r = json.loads(path.read_text())
        m, aa = r["machine"], r["aa"]
        parts += [
            f"## {r['title']}",
            "",
            f"{r['setup']}. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
            f"({m['threads']} threads), load average {m['load_average'][0]}, {m['date']}.",
            "",
            r["markdown"],
            "",
            _aa_text(aa),
            "",
        ]
        for t in r["targets"]:
            parts.append(
                f"- {t['what']}: {t['measured']:.3g} (target {t['target']}): {'met' if t['met'] else 'missed'}"
            )
            judged.append((name, t))
        parts.append("")
    path = out / f"summary{suffix}.md"
    path.write_text("\n".join(parts))
    _plot(judged, out / f"summary{suffix}.png")
    return path


def _aa_text(aa: dict | None) -> str:
    if aa is None:
        return "A/A check: none (nothing is timed side by side)."
    verdict = "holds 1.00" if aa["passed"] else "DOES NOT hold 1.00: the numbers above are suspect"
    noisy = (aa["high"] - aa["low"]) / 2 > 0.10
    return f"A/A check: {aa['ratio']:.3f} [{aa['low']:.3f}, {aa['high']:.3f}] ({verdict})" + (
        "; the machine was too noisy to judge a 10% difference: re-run on an idle one." if noisy else "."
    )


def _plot(judged: list, path: Path) -> None:
    """Each target's measured value divided by its target value (>= 1 is met for '>=', <= 1 for '<=')."""
    if not judged:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colours = [], [], []
    for name, t in judged:
        target = float(t["target"].split()[-1])
        labels.append(f"{name}: {t['what']}")
        values.append(t["measured"] / target)
        colours.append("tab:green" if t["met"] else "tab:red")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1))
    ax.barh(labels, values, color=colours)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("measured / target (green: met)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help=f"all, or some of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small proxies, minutes on 2 cores")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")
    args = parser.parse_args(argv)
    names = BENCHMARKS if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from all, {', '.join(BENCHMARKS)}")
    print(f"machine: {machine()}")
    for name in names:
        start = time.perf_counter()
        result = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        path = write(name, result, args.quick, args.out)
        print(f"\n## {result['title']} ({time.perf_counter() - start:.0f} s) -> {path}\n{result['markdown']}")
        print(_aa_text(result["aa"]))
        for t in result["targets"]:
            print(
                f"  {t['what']}: {t['measured']:.3g} (target {t['target']}) {'met' if t['met'] else 'MISSED'}"
            )
    print(f"\nsummary: {summary(args.quick, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
