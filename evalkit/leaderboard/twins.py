"""Does pre-training help? Each pre-trained upstream against its random-init twin, task by task.

A random-init twin (`evalkit run` makes one per architecture) has the
pre-trained model's architecture and weights drawn as at the start of its
pre-training; its checkpoint says whom it stands for
(`pretraining: {method: random-init, twin_of: "hubert, wav2vec2"}`). For
every such pair in a suite and every task both have, the table gives how much
better the pre-trained upstream is, in the task column's units (positive:
pre-training helps, whichever way the metric points), and whether that is
significant: a paired bootstrap over the test items (the leaderboard's own
test, `significance.paired_bootstrap`) run both ways, so a difference is
called better, worse, or neither.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.leaderboard.collect import Entry, Suite
from evalkit.leaderboard.significance import ItemStats, load_item_stats, paired_bootstrap
from evalkit.leaderboard.table import (
    METRIC_LABELS,
    UNSCALED,
    Cell,
    Column,
    Row,
    Table,
    display_names,
    task_label,
)

LEGEND = (
    "Each cell: how much better the pre-trained upstream is than its random-init twin, in the task's "
    "units (percentage points; MTWV as is); positive means pre-training helps, whichever way the metric "
    "points. Bold: significant (paired bootstrap over test items, 95%, run both ways); a bold negative "
    "number is a task where the twin is significantly better."
)


def twin_pairs(suite: Suite) -> list[tuple[str, str]]:
    """(pre-trained upstream, its twin) for every twin in the suite whose `twin_of` names an upstream there.

    Names are matched against checkpoint folder names (what `evalkit run` writes into `twin_of`) and the
    names the table shows.
    """
    names = display_names(suite)
    by_name: dict[str, str] = {}
    for u in suite.upstreams:
        by_name.setdefault(names[u], u)
        checkpoint = _info(suite, u).get("checkpoint") or ""
        if checkpoint:
            by_name.setdefault(Path(str(checkpoint)).name, u)
    pairs = []
    for twin in suite.upstreams:
        pre = _info(suite, twin).get("pretraining")
        if not isinstance(pre, dict) or pre.get("method") != "random-init" or not pre.get("twin_of"):
            continue
        for name in str(pre["twin_of"]).split(","):
            upstream = by_name.get(name.strip())
            if upstream is not None and upstream != twin:
                pairs.append((upstream, twin))
    return sorted(pairs)


def _info(suite: Suite, upstream: str) -> dict:
    entry = next(e for (u, _), e in suite.entries.items() if u == upstream)
    return entry.data.get("upstream_info") or {}


def improvement(e: Entry, twin: Entry) -> float:
    """How much better `e` is than `twin` in the display units of the task's primary metric."""
    scale = 1.0 if e.primary in UNSCALED else 100.0
    diff = e.value - twin.value
    return scale * (diff if e.higher_is_better else -diff)


def twin_table(suite: Suite, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Table | None:
    """The comparison as a leaderboard `Table` (rendered by the same Markdown/CSV/LaTeX/JSON/HTML code),
    or None when the suite holds no pair."""
    pairs = twin_pairs(suite)
    if not pairs:
        return None
    names = display_names(suite)
    tasks = suite.tasks
    first = {t: next(iter(suite.column(t).values())) for t in tasks}
    columns = [Column("upstream", "Upstream vs twin", "name", text=True)]
    columns += [
        Column(
            t,
            f"{task_label(t)} {METRIC_LABELS.get(first[t].primary, first[t].primary)}",
            "task",
            True,
            first[t].primary,
        )
        for t in tasks
    ]
    columns += [Column("better", "Better", "info", True), Column("worse", "Worse", "info", False)]
    stats: dict[str, ItemStats] = {}  # a twin shared by several upstreams is read once

    def items(e: Entry) -> ItemStats:
        if e.name not in stats:
            stats[e.name] = load_item_stats(e)
        return stats[e.name]

    rows, notes = [], []
    for upstream, twin in pairs:
        label = f"{names[upstream]} vs {names[twin]}"
        cells = {"upstream": Cell(label, label, detail={"upstream": upstream, "twin": twin})}
        better = worse = 0
        for t in tasks:
            e, z = suite.entries.get((upstream, t)), suite.entries.get((twin, t))
            if e is None or z is None:
                cells[t] = Cell(None, "–")
                continue
            gain = improvement(e, z)
            digits = 4 if e.primary in UNSCALED else 2
            detail = {"metric": e.primary, "upstream": e.value, "twin": z.value}
            mark = ""
            if e.value != z.value:
                try:
                    a, b = items(e), items(z)
                    p_up = paired_bootstrap(a, b, e.higher_is_better, n=n_boot, seed=seed)
                    p_twin = paired_bootstrap(b, a, e.higher_is_better, n=n_boot, seed=seed)
                except (EvalkitError, ConfigError) as err:
                    notes.append(f"{label}, {t}: no significance test: {err}")
                else:
                    detail.update(p_upstream_better=round(p_up, 4), p_twin_better=round(p_twin, 4))
                    mark = "better" if p_up >= level else "worse" if p_twin >= level else ""
            better += mark == "better"
            worse += mark == "worse"
            cells[t] = Cell(gain, f"{gain:+.{digits}f}", mark, detail)
        cells["better"] = Cell(better, str(better))
        cells["worse"] = Cell(worse, str(worse))
        rows.append(Row(label, cells))
    return Table(
        suite.id,
        f"{suite.label}: pre-training vs random-init twin",
        columns,
        rows,
        "",
        None,
        notes,
        legend=LEGEND,
        detail_keys=["metric", "upstream", "twin", "p_upstream_better", "p_twin_better"],
    )
