"""Learning curves from result files: each task's dev metric against training steps, per upstream.

    python bench/curves.py RESULTS [RESULTS ...] [--tasks asr,sf] [--upstreams oracle,fbank]

A RESULTS folder is what `evalkit eval --output` writes (or `evalkit run`'s `results/`): one folder per
upstream, one `<task>.json` per task. Every trained head records its dev metric at each evaluation
(`heads.<head>.dev_curves`, per learning rate); this prints them as a markdown table per task, the
reference head's rates first, so that a task's budget can be read off where the best upstream's curve
flattens (issue 20: budgets set by convergence). Nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curves(folders: list[Path], tasks: set[str] | None, upstreams: set[str] | None) -> dict[str, list[dict]]:
    """{task: [{upstream, head, budget, lr, curve: [(step, dev)], chosen, test, metric}]}, from every result file."""
    rows: dict[str, list[dict]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*/*.json")):
            upstream, task = path.parent.name, path.stem
            if (tasks and task not in tasks) or (upstreams and upstream not in upstreams):
                continue
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # not a result file (a samples file is .jsonl; anything else is skipped)
            primary = result.get("primary_metric")
            for head, h in (result.get("heads") or {}).items():
                for lr, curve in (h.get("dev_curves") or {}).items():
                    rows.setdefault(task, []).append(
                        {
                            "upstream": upstream,
                            "head": head,
                            "budget": h.get("steps"),
                            "lr": lr,
                            "curve": [tuple(point) for point in curve],
                            "chosen": float(lr) == h.get("lr"),
                            "test": (h.get("metrics", {}).get("test") or {}).get(primary),
                            "metric": primary,
                        }
                    )
    return rows


def table(task: str, rows: list[dict]) -> str:
    steps = sorted({s for r in rows for s, _ in r["curve"]})
    head = f"### {task} (dev {rows[0]['metric']}; * = the head's chosen rate, then its test value)\n\n"
    head += "| upstream | head | budget | lr | " + " | ".join(str(s) for s in steps) + " | test |\n"
    head += "|---|---|---:|---|" + "---:|" * (len(steps) + 1) + "\n"
    lines = []
    for r in sorted(rows, key=lambda r: (r["upstream"], r["head"], r["budget"] or 0, float(r["lr"]))):
        at = dict(r["curve"])
        cells = [f"{at[s]:.3f}" if s in at else "" for s in steps]
        test = f"{r['test']:.3f}" if r["chosen"] and r["test"] is not None else ""
        star = "*" if r["chosen"] else ""
        lines.append(
            f"| {r['upstream']} | {r['head']} | {r['budget']} | {r['lr']}{star} | "
            + " | ".join(cells)
            + f" | {test} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="results folders (upstream/task.json inside)")
    ap.add_argument("--tasks", help="comma-separated tasks (default: all)")
    ap.add_argument("--upstreams", help="comma-separated upstream folder names (default: all)")
    args = ap.parse_args()
    pick = lambda s: set(s.split(",")) if s else None  # noqa: E731
    found = curves(args.results, pick(args.tasks), pick(args.upstreams))
    if not found:
        raise SystemExit(
            f"no dev curves in {', '.join(map(str, args.results))} (folders of upstream/task.json)"
        )
    print("\n".join(table(task, found[task]) for task in sorted(found)))


if __name__ == "__main__":
    main()
