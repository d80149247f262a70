"""The leaderboard as one self-contained static HTML page: inline CSS and JS, figures as base64 PNG.

Every string that comes from a result file goes through `html.escape`
(names, paths, configs, warnings); the only script on the page is ours, and
a Content-Security-Policy with its hash forbids any other, so a model named
`<script>...</script>` renders as text. Sorting: click a column header, or
load the page with `#sort=<column>[:asc|desc]`.
"""

from __future__ import annotations

import base64
import hashlib
import html

from evalkit.leaderboard.table import Cell, Column, Table

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table.lb{border-collapse:collapse;margin:.5em 0}
table.lb th,table.lb td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:right;vertical-align:top}
table.lb th{cursor:pointer;background:#f4f4f4;user-select:none;white-space:nowrap}
table.lb th[aria-sort=ascending]::after{content:" \\25B2"}
table.lb th[aria-sort=descending]::after{content:" \\25BC"}
table.lb td.name,table.lb th[data-col=upstream]{text-align:left;white-space:nowrap}
td.best{background:#a5d6a7;font-weight:bold}
td.tied{background:#dcedc8;font-weight:bold}
td.better{background:#c8e6c9;font-weight:bold}
td.worse{background:#ffcdd2;font-weight:bold}
.cfg{font-size:12px;color:#444;text-align:left}
.cfg table td{border:none;padding:0 .5em 0 0;text-align:left}
.legend,.meta{color:#555;font-size:12px;max-width:60em}
.warn li{color:#8a4b00;font-size:12px}
figure{display:inline-block;margin:.5em 1em .5em 0}
"""

SCRIPT = """
(function () {
  function key(td, type) {
    var v = td.getAttribute('data-sort');
    if (v === null || v === '') return null;
    return type === 'text' ? v.toLowerCase() : parseFloat(v);
  }
  function sortTable(table, col, dir) {
    var ths = table.tHead.rows[0].cells, idx = -1;
    for (var i = 0; i < ths.length; i++) if (ths[i].getAttribute('data-col') === col) idx = i;
    if (idx < 0) return;
    var th = ths[idx], type = th.getAttribute('data-type');
    if (dir !== 'asc' && dir !== 'desc') dir = th.getAttribute('data-dir');
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[idx], type), y = key(b.cells[idx], type);
      if (x === null || y === null) return (x === null) - (y === null);
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < ths.length; j++) ths[j].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 'asc' ? 'ascending' : 'descending');
    table.setAttribute('data-sorted', col + ':' + dir);
  }
  var tables = document.querySelectorAll('table.lb');
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener('click', function () {
        var col = th.getAttribute('data-col'), dir = th.getAttribute('data-dir');
        if (table.getAttribute('data-sorted') === col + ':' + dir) dir = dir === 'asc' ? 'desc' : 'asc';
        sortTable(table, col, dir);
        history.replaceState(null, '', '#sort=' + encodeURIComponent(col) + ':' + dir);
      });
    });
  });
  function fromHash() {
    var m = /sort=([^&:]+)(?::(asc|desc))?/.exec(location.hash);
    if (!m) return;
    var col = decodeURIComponent(m[1]);
    Array.prototype.forEach.call(tables, function (t) { sortTable(t, col, m[2]); });
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def _default_dir(c: Column) -> str:
    if c.kind == "name" or c.higher_is_better is None:
        return "asc"
    return "desc" if c.higher_is_better else "asc"


def _short(v) -> str:
    """Numbers to 4 significant digits, containers element-wise, strings as they are."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def _detail_text(detail: dict) -> str:
    return "\n".join(f"{k}: {_short(v)}" for k, v in detail.items())


def _cell_html(c: Column, cell: Cell, row_details: str) -> str:
    sort = "" if cell.value is None else cell.value
    if isinstance(sort, float):
        sort = repr(sort)
    attrs = f' data-col="{esc(c.id)}" data-sort="{esc(sort)}"'
    if c.kind == "name":
        return f'<td class="name"{attrs}><details><summary>{esc(cell.display)}</summary>{row_details}</details></td>'
    cls = f' class="{cell.mark}"' if cell.mark in ("best", "tied", "better", "worse") else ""
    title = f' title="{esc(_detail_text(cell.detail))}"' if cell.detail else ""
    return f"<td{cls}{attrs}{title}>{esc(cell.display)}</td>"


DETAIL_KEYS = (
    "metric",
    "test",
    "ci95",
    "task_version",
    "head",
    "lr",
    "steps",
    "best_step",
    "layer",
    "p_best_better",
)


def _row_details(table: Table, row) -> str:
    """The expandable config behind every number of a row: one line per task."""
    keys = tuple(table.detail_keys or DETAIL_KEYS)
    if any("sd" in cell.detail for r in table.rows for cell in r.cells.values()):
        keys += ("sd", "seeds")  # several head seeds: their spread and each one's value
    head = "".join(f"<th>{esc(k)}</th>" for k in ("task",) + keys)
    lines = []
    for c in table.columns:
        if c.kind != "task" or not row.cells[c.id].detail:
            continue
        d = row.cells[c.id].detail
        vals = "".join(f"<td>{esc(_short(d[k]) if k in d else '')}</td>" for k in keys)
        lines.append(f"<tr><td>{esc(c.id)}</td>{vals}</tr>")
    pre = row.cells.get("pretraining")
    extra = f"<div>pre-training: {esc(pre.display)}</div>" if pre is not None and pre.value else ""
    return f'<div class="cfg"><table><tr>{head}</tr>{"".join(lines)}</table>{extra}</div>'


def table_html(table: Table) -> str:
    ths = "".join(
        f'<th data-col="{esc(c.id)}" data-dir="{_default_dir(c)}" data-type="{"text" if c.text else "num"}"'
        f">{esc(c.label)}</th>"
        for c in table.columns
    )
    body = []
    for r in table.rows:
        details = _row_details(table, r)
        tds = "".join(_cell_html(c, r.cells[c.id], details) for c in table.columns)
        body.append(f'<tr data-upstream="{esc(r.upstream)}">{tds}</tr>')
    return (
        f'<table class="lb" data-suite="{esc(table.suite_id)}"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _img(png: bytes, alt: str) -> str:
    return (
        f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        "</figure>"
    )


def _notes_html(notes: list[str]) -> list[str]:
    if not notes:
        return []
    return [
        '<details open><summary>Notes</summary><ul class="warn">'
        + "".join(f"<li>{esc(n)}</li>" for n in notes)
        + "</ul></details>"
    ]


def render_page(sections: list[dict], warnings: list[str], title: str = "evalkit leaderboard") -> str:
    """`sections`: one per suite, {"table": Table, "score_png": bytes|None, "layer_pngs": {upstream: bytes},
    "twins": Table|None}."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<p class="meta">Built only from result JSON files. Click a column header to sort (again to reverse), '
        "or open the page with <code>#sort=COLUMN</code>. Hover a number for the configuration behind it; "
        "expand an upstream to see all of them.</p>",
    ]
    for s in sections:
        t: Table = s["table"]
        parts += [
            f'<section id="suite-{esc(t.suite_id)}"><h2>{esc(t.suite_label)}</h2>',
            table_html(t),
            '<p class="legend">Green: the best entry of a task, and (lighter) every entry not significantly '
            "worse than it (paired bootstrap over the test items, 95%). A score in parentheses misses "
            f"tasks. {esc(t.score_note)}</p>",
        ]
        parts += _notes_html(t.notes)
        if s.get("twins") is not None:
            twins: Table = s["twins"]
            parts += [
                "<h3>Pre-training vs random-init twin</h3>",
                table_html(twins),
                f'<p class="legend">Green: significantly better than the twin; red: significantly worse. '
                f"{esc(twins.legend or '')}</p>",
            ]
            parts += _notes_html(twins.notes)
        if s.get("score_png"):
            parts.append(_img(s["score_png"], f"scores, {t.suite_label}"))
        if s.get("layer_pngs"):
            parts.append(
                "<details><summary>Learned layer weights</summary>"
                + "".join(_img(png, f"layer weights of {u}") for u, png in s["layer_pngs"].items())
                + "</details>"
            )
        parts.append("</section>")
    if warnings:
        parts.append(
            f'<h2>Skipped files ({len(warnings)})</h2><ul class="warn">'
            + "".join(f"<li>{esc(w)}</li>" for w in warnings)
            + "</ul>"
        )
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
