"""HTML building blocks: escaped tables, sections and the page shell (CSS and the table-sorting script).

Everything a run supplies (names, arch strings, commands, config values) goes through :func:`html.escape`
here; callers pass plain text, never markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["Cell", "page", "para", "pre", "section", "table"]


class Cell(NamedTuple):
    """A table cell: the text shown and, for numbers, the value the sorting script compares."""

    text: str
    sort: float | None = None


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #212121; }
header { background: #263238; color: #eceff1; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { margin: 28px 0; }
h2 { border-bottom: 2px solid #cfd8dc; padding-bottom: 4px; font-size: 18px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #e0e0e0; padding: 3px 8px; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
#compare-table td { white-space: normal; max-width: 480px; overflow-wrap: anywhere; }
th { background: #eceff1; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
tr.chosen td { background: #fff8e1; font-weight: 600; }
tr.fallback td { background: #ffebee; }
tr.infeasible td { color: #757575; }
.flag { color: #c62828; font-weight: 600; }
.note { color: #546e7a; }
pre { background: #f5f5f5; padding: 8px; overflow-x: auto; }
code { font-size: 12px; }
.headline { font-size: 16px; }
"""

_SORT_JS = """
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function isNumber(text) { return text !== "" && isFinite(Number(text)); }
  function sortBy(table, th, col) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = rows.every(function (r) { var k = key(r, col); return k === "" || isNumber(k); });
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col), d;
      if (numeric) {
        d = (x === "" ? Infinity : Number(x)) - (y === "" ? Infinity : Number(y));
        if (isNaN(d)) { d = 0; }
      } else {
        d = x.localeCompare(y);
      }
      return ascending ? d : -d;
    });
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.title = "click to sort";
      th.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });
})();
"""


def _cell(value: Any) -> str:
    if isinstance(value, Cell):
        attr = "" if value.sort is None else f' data-sort="{value.sort!r}"'
        return f"<td{attr}>{html.escape(value.text)}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    table_id: str | None = None,
    sortable: bool = False,
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are plain strings or :class:`Cell` (escaped here)."""
    attrs = (f' id="{html.escape(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        tr = f'<tr class="{html.escape(cls)}">' if cls else "<tr>"
        body.append(tr + "".join(_cell(v) for v in row) + "</tr>")
    inner = f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
    return f'<div class="scroll"><table{attrs}>{inner}</table></div>'


def section(section_id: str, title: str, *parts: str) -> str:
    """A titled section; ``parts`` are HTML fragments built by this module or by plotly."""
    return f'<section id="{html.escape(section_id)}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def para(text: str, *, cls: str = "") -> str:
    """A paragraph of plain text."""
    attr = f' class="{html.escape(cls)}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def pre(value: Any) -> str:
    """A JSON-formatted block."""
    return f"<pre><code>{html.escape(json.dumps(value, indent=2, sort_keys=True, default=str))}</code></pre>"


def page(*, title: str, header_lines: Sequence[str], body: Sequence[str]) -> str:
    """The whole document: head with inline CSS, a header, the sections and the sorting script last."""
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in header_lines)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>{lines}</header><main>{''.join(body)}</main>"
        f"<script>{_SORT_JS}</script></body></html>\n"
    )
