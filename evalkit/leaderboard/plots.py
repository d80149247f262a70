"""Figures of a leaderboard (matplotlib, Agg): learned layer weights per upstream x task, and score bars.

Each function returns PNG bytes, so the page can embed them (base64) and
the build can also write them as files.
"""

from __future__ import annotations

import io

import numpy as np

from evalkit.leaderboard.collect import Suite
from evalkit.leaderboard.table import Table


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files, no display)."""
    # deferred: matplotlib is heavy, and a build with --no-plots never draws
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain(text: str) -> str:
    """Names from result files are text, never mathtext: escape the `$` that would start it."""
    return str(text).replace("$", r"\$")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def layer_weights_heatmap(suite: Suite, upstream: str) -> bytes | None:
    """Rows: tasks; columns: layers (0 = the input of the first context layer); colour: softmax weight."""
    rows = [
        (t, suite.entries[(upstream, t)].data.get("layer_weights"))
        for t in suite.tasks
        if (upstream, t) in suite.entries
    ]
    rows = [(t, w) for t, w in rows if w]
    if not rows:
        return None
    width = max(len(w) for _, w in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, (_, w) in enumerate(rows):
        grid[i, : len(w)] = w
    fig, ax = _pyplot().subplots(figsize=(1.2 + 0.35 * width, 0.8 + 0.35 * len(rows)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-9, float(np.nanmax(grid))))
    ax.set_yticks(range(len(rows)), [_plain(t.upper()) for t, _ in rows])
    ax.set_xticks(range(width), [str(i) for i in range(width)], fontsize=7)
    ax.set_xlabel("layer")
    ax.set_title(f"Learned layer weights: {_plain(upstream)}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def score_bars(table: Table) -> bytes | None:
    """Horizontal bars of the suite score (complete scores solid, partial ones hatched)."""
    if not any(c.id == "score" for c in table.columns):
        return None
    rows = [r for r in table.rows if isinstance(r.cells["score"].value, float)]
    if not rows:
        return None
    names = [r.upstream for r in rows]
    values = [r.cells["score"].value for r in rows]
    partial = [r.cells["score"].display.startswith("(") for r in rows]
    fig, ax = _pyplot().subplots(figsize=(6, 0.6 + 0.35 * len(rows)))
    bars = ax.barh(range(len(rows)), values, color=["#9bb" if p else "#377" for p in partial])
    for bar, p in zip(bars, partial):
        if p:
            bar.set_hatch("//")
    ax.set_yticks(range(len(rows)), [_plain(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("score (0 = FBANK, 1000 = reference best)")
    ax.set_title(_plain(table.suite_label), fontsize=9)
    return _png(fig)
