"""The leaderboard of one suite as data (columns, rows, marks, the config behind each number), and its
Markdown, CSV, LaTeX and JSON renderings.

Values stay fractions as in the result files (CSV and JSON carry them raw);
the human-facing renderings print percentages, except MTWV, which SUPERB
prints as is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evalkit.leaderboard.collect import Entry, Suite, budget_gap
from evalkit.leaderboard.score import LOWER_IS_BETTER, TOPLINES, Reference, rank_score
from evalkit.leaderboard.significance import Marks

METRIC_LABELS = {
    "accuracy": "Acc",
    "per": "PER",
    "wer": "WER",
    "cer": "CER",
    "eer": "EER",
    "der": "DER",
    "mtwv": "MTWV",
    "slot_type_f1": "F1",
    "slot_value_cer": "CER",
    "min_dcf": "minDCF",
}
UNSCALED = frozenset({"mtwv", "min_dcf"})


def metric_label(metric: str) -> str:
    unit = "" if metric in UNSCALED else "%"
    return f"{METRIC_LABELS.get(metric, metric)}{unit} {'↓' if metric in LOWER_IS_BETTER else '↑'}"


def task_label(task: str) -> str:
    return task.upper().replace("QBE", "QbE")


def format_metric(metric: str, value: float | None, sd: float | None = None) -> str:
    """A value in display units; with `sd` (several head seeds), `mean ± sd`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.4f}" if metric in UNSCALED else f"{100 * value:.2f}"
    return text if sd is None else f"{text} ± {format_metric(metric, sd)}"


@dataclass
class Column:
    id: str
    label: str
    kind: str  # "name" | "task" | "score" | "rank" | "info"
    higher_is_better: bool | None = None
    metric: str | None = None
    text: bool = False  # sorts as text, not as a number


@dataclass
class Cell:
    value: float | str | None
    display: str
    mark: str = ""  # "best" | "tied" | "" (twin table: "better" | "worse" | "")
    detail: dict = field(default_factory=dict)


@dataclass
class Row:
    upstream: str
    cells: dict[str, Cell]


@dataclass
class Table:
    suite_id: str
    suite_label: str
    columns: list[Column]
    rows: list[Row]
    score_note: str
    reference: dict | None
    notes: list[str]
    legend: str | None = None  # what the marks mean, when not the leaderboard's own (best / tied)
    detail_keys: list[str] | None = None  # what an expanded row of the page shows, when not the leaderboard's

    def to_dict(self) -> dict:
        return asdict(self)


def pretraining_text(info) -> str:
    """A short, plain rendering of `upstream_info.pretraining` (whatever shape it has)."""
    if info is None:
        return ""
    if isinstance(info, dict):
        parts = [
            f"{k}={v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k}={v}"
            for k, v in info.items()
            if not isinstance(v, dict | list)
        ]
        return ", ".join(parts)
    return str(info)


def cell_detail(e: Entry, marks: Marks | None) -> dict:
    """The configuration behind one number, for hover/expand in the page and the JSON."""
    d = e.data
    head = d.get("head")
    head_info = (d.get("heads") or {}).get(head, {}) if head else {}
    ci = ((d.get("ci95") or {}).get("test") or {}).get(e.primary)
    out = {
        "file": e.name,
        "task_version": d["task_version"],
        "metric": e.primary,
        "test": e.value,
        "dev": (d["metrics"].get("dev") or {}).get(e.primary),
        "ci95": ci,
        "head": f"{head} ({head_info['type']})" if head_info.get("type") else head,
        "lr": d.get("lr"),
        "lr_grid": d.get("lr_grid"),
        "steps": head_info.get("steps"),
        "best_step": head_info.get("best_step"),
        "layer": d.get("layer"),
        "samples": d.get("samples"),
        "seed": d.get("seed"),
        "wall_time_s": d.get("wall_time_s"),
    }
    if e.seeds:  # several head seeds: the value is their mean
        out |= {"sd": e.sd, "seeds": {s: v for s, v in e.seed_values().items()}}
    gap = budget_gap(e)
    if gap:
        out["off_budget"] = f"{gap[0]} steps; the profile's budget is {gap[1]}"
    if marks is not None and e.upstream in marks.p_better:
        out["p_best_better"] = round(marks.p_better[e.upstream], 4)
    return {k: v for k, v in out.items() if v is not None}


def build_table(
    suite: Suite,
    marks: dict[str, Marks],
    reference: Reference | None,
    score_note: str,
    excluded: set[str] | None = None,
) -> Table:
    """Rows: upstreams; columns: each task's primary metric on test, the scores, parameters, pre-training.

    `excluded` tasks stay in the table but out of the suite score (e.g. a stale reference point).
    """
    tasks = suite.tasks
    first = {t: next(iter(suite.column(t).values())) for t in tasks}
    columns = [Column("upstream", "Upstream", "name", text=True)]
    columns += [
        Column(
            t,
            f"{task_label(t)} {metric_label(first[t].primary)}",
            "task",
            first[t].higher_is_better,
            first[t].primary,
        )
        for t in tasks
    ]
    if reference is not None:
        columns.append(Column("score", "Score ↑", "score", True))
    columns += [
        Column("rank", "Mean rank ↓", "rank", False),
        Column("params", "Params (M)", "info", False),
        Column("pretraining", "Pre-training", "info", text=True),
    ]
    table_values = {
        u: {t: suite.entries[(u, t)].value for t in tasks if (u, t) in suite.entries}
        for u in suite.upstreams
        if u not in TOPLINES  # a reference row: never ranked among models
    }
    ranks = rank_score(table_values, {t: first[t].higher_is_better for t in tasks})
    rows = []
    names = display_names(suite)
    for u in suite.upstreams:
        cells: dict[str, Cell] = {
            "upstream": Cell(u, names[u], detail={"upstream": u} if names[u] != u else {})
        }
        info: dict = {}
        for t in tasks:
            e = suite.entries.get((u, t))
            if e is None:
                cells[t] = Cell(None, "–")
                continue
            info = info or (e.data.get("upstream_info") or {})
            m = marks.get(t)
            cells[t] = Cell(
                e.value,
                format_metric(e.primary, e.value, e.sd),
                m.mark.get(u, "") if m else "",
                cell_detail(e, m),
            )
        if reference is not None:
            cells["score"] = _score_cell(suite, u, reference, excluded or set())
        cells["rank"] = Cell(ranks[u], f"{ranks[u]:.2f}") if u in ranks else Cell(None, "topline")
        params = info.get("parameters")
        cells["params"] = Cell(params, f"{params / 1e6:.2f}" if params is not None else "–")
        pre = info.get("pretraining")
        cells["pretraining"] = Cell(
            pretraining_text(pre) or None,
            pretraining_text(pre) or "–",
            detail={"pretraining": pre} if pre is not None else {},
        )
        rows.append(Row(u, cells))
    rows.sort(key=lambda r: _sort_key(r, reference is not None))
    ref = None if reference is None else json.loads(reference.to_json())
    if any(e.seeds for e in suite.entries.values()):
        score_note = f"{SEEDS_NOTE} {score_note}"
    return Table(suite.id, suite.label, columns, rows, score_note, ref, [])


SEEDS_NOTE = (
    "a ± b: the mean and the standard deviation over head seeds, where a result has several; the score, "
    "ranks and marks use the mean, and the significance tests draw a seed's run at random per resample."
)


def display_names(suite: Suite) -> dict[str, str]:
    """Checkpoint folders are shown by their folder name (`/runs/x/upstreams/hubert` -> `hubert`) where
    that name is unique in the suite; anything else, by its spec as given."""
    names = {}
    for u in suite.upstreams:
        entry = next(e for (v, _), e in suite.entries.items() if v == u)
        checkpoint = (entry.data.get("upstream_info") or {}).get("checkpoint")
        names[u] = Path(str(checkpoint)).name if checkpoint and u in (str(checkpoint), entry.alias) else u
    counts = Counter(names.values())
    return {u: n if counts[n] == 1 and n else u for u, n in names.items()}


def score_task(task: str, reference: Reference) -> str:
    """The reference's task for a result's task: itself, or for the official SUPERB points the real-corpus
    variants (`asr_superb` -> asr, `er_superb_fold3` -> er)."""
    if reference.suite == "superb" and "_superb" in task:
        return task.split("_superb", 1)[0]
    return task


def entry_values(suite: Suite, upstream: str, reference: Reference, excluded: set[str]) -> dict[str, float]:
    """{reference entry: test value} of one upstream; results mapping to one entry (ER's five SUPERB
    folds) are averaged, as SUPERB reports ER."""
    found: dict[str, list[float]] = {}
    for (u, task), e in suite.entries.items():
        if u != upstream or task in excluded:
            continue
        base = score_task(task, reference)
        for entry_name in reference.fbank:
            ref_task, _, metric = entry_name.partition("/")
            v = e.data["metrics"]["test"].get(metric or e.primary)
            if ref_task == base and isinstance(v, int | float) and not isinstance(v, bool):
                found.setdefault(entry_name, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in found.items()}


ER_FOLDS = 5  # IEMOCAP's sessions: SUPERB's ER averages the five leave-one-session-out folds


def _er_folds(suite: Suite, upstream: str, excluded: set[str]) -> int:
    """How many of the ER folds (`er_superb_fold<k>`, `er_superb_budget_fold<k>`) an upstream has results for."""
    return len(
        {
            task.rsplit("fold", 1)[1]
            for (u, task) in suite.entries
            if u == upstream and task not in excluded and task.startswith("er_superb") and "fold" in task
        }
    )


def _score_cell(suite: Suite, upstream: str, reference: Reference, excluded: set[str]) -> Cell:
    values = entry_values(suite, upstream, reference, excluded)
    if not values:
        return Cell(None, "–")
    points = reference.points(values, partial=True)
    n_tasks = len({n.partition("/")[0] for n in reference.fbank})
    score = sum(points.values()) / len(points)
    missing = sorted(set(reference.fbank) - set(values))  # a whole task, or one of SF's two entries
    detail = {"points": {t: round(p, 1) for t, p in points.items()}, "tasks": f"{len(points)}/{n_tasks}"}
    if reference.suite == "superb" and 0 < (folds := _er_folds(suite, upstream, excluded)) < ER_FOLDS:
        # SUPERB's ER is the mean over IEMOCAP's five folds: fewer is not SUPERB's ER
        detail["er_folds"] = f"{folds}/{ER_FOLDS}"
        missing.append("er (folds)")
    complete = not missing
    if missing and len(points) == n_tasks:
        detail["missing"] = missing
    return Cell(score, f"{score:.1f}" if complete else f"({score:.1f})", detail=detail)


def _sort_key(row: Row, by_score: bool):
    if row.upstream in TOPLINES:  # the ceiling heads the table, as a reference row
        return (-1, 0.0, row.upstream)
    score = row.cells.get("score")
    if by_score and score is not None and isinstance(score.value, float):
        return (0, -score.value, row.upstream)
    rank = row.cells["rank"].value
    return (1, rank if isinstance(rank, float) and not math.isnan(rank) else math.inf, row.upstream)


# --- renderings -------------------------------------------------------------------------------


def _legend(t: Table) -> str:
    if t.legend:
        return t.legend
    return (
        "Bold: the best entry of a task and every entry not significantly worse than it (paired "
        "bootstrap over test items, 95%). Score in parentheses: not every task of the suite is present. "
        + t.score_note
    )


# Markdown syntax a name could carry into a table: emphasis, code, links, strike-through, cell breaks,
# and `_` where it can open or close emphasis (not inside a word, as in `fbank_context`)
_MD_SPECIAL = re.compile(r"[\\`*\[\]~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_escape(text) -> str:
    """Text as literal Markdown: its syntax backslash-escaped, HTML (tags, entities) as entities."""
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), str(text))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(t: Table) -> str:
    md = md_escape
    lines = [
        f"## {md(t.suite_label)}",
        "",
        "| " + " | ".join(md(c.label) for c in t.columns) + " |",
        "|" + "|".join("---" if c.kind == "name" else "---:" for c in t.columns) + "|",
    ]
    for r in t.rows:
        cells = []
        for c in t.columns:
            cell = r.cells[c.id]
            text = md(cell.display)
            cells.append(f"**{text}**" if cell.mark else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", md(_legend(t)), ""])


def to_csv(t: Table) -> str:
    """Raw values (fractions, parameters as counts) for further processing; where a result has several
    head seeds, `<task>:sd` columns hold the standard deviation over them (the value is their mean)."""
    buf = io.StringIO()
    tasks = [c for c in t.columns if c.kind == "task"]
    with_sd = any("sd" in r.cells[c.id].detail for r in t.rows for c in tasks)
    _write_csv_row(
        buf,
        [c.id if c.kind != "task" else f"{c.id}:{c.metric}" for c in t.columns]
        + [f"{c.id}:mark" for c in tasks]
        + ([f"{c.id}:sd" for c in tasks] if with_sd else []),
    )
    for r in t.rows:
        vals = ["" if r.cells[c.id].value is None else r.cells[c.id].value for c in t.columns]
        sds = [r.cells[c.id].detail.get("sd", "") for c in tasks] if with_sd else []
        _write_csv_row(buf, vals + [r.cells[c.id].mark for c in tasks] + sds)
    return buf.getvalue()


def _write_csv_row(buf: io.StringIO, row: list) -> None:
    # the writer quotes a field holding a newline (the line terminator) but not a bare CR, which a reader
    # takes for a line break: a row with one is quoted whole
    bare_cr = any(isinstance(c, str) and "\r" in c for c in row)
    quoting = csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL
    csv.writer(buf, lineterminator="\n", quoting=quoting).writerow(csv_safe(row))


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(cells: list) -> list:
    """Text cells that a spreadsheet would run as a formula, prefixed with a quote; numbers as they are."""
    return [
        "'" + c if isinstance(c, str) and c.startswith(_FORMULA_START) and not _NUMBER.fullmatch(c) else c
        for c in cells
    ]


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "–": "--",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(t: Table) -> str:
    spec = "l" + "r" * (len(t.columns) - 1)
    out = [
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(c.label) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    for r in t.rows:
        cells = []
        for c in t.columns:
            cell = r.cells[c.id]
            text = latex_escape(cell.display)
            cells.append(r"\textbf{" + text + "}" if cell.mark else text)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "% " + latex_escape(_legend(t)).replace("\n", " "), ""]
    return "\n".join(out)


def to_json(t: Table) -> str:
    return json.dumps(t.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n"
