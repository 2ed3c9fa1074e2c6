"""The written report: content (front rows, chosen model's figures), self-containment, escaping; Markdown and
terminal summaries."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
from report_fixtures import write_run
from rich.console import Console

from reports import (
    compare_runs,
    comparison_table,
    load_run,
    markdown,
    summary_table,
    write_html,
    write_markdown,
)


class _Tables(HTMLParser):
    """Collects each table's rows (cell texts) by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._id = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self.tables[self._id].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._id:
            self.tables[self._id][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._id = None


def _tables(text: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def test_html_content(run_dir: Path) -> None:
    run = load_run(run_dir)
    path = write_html(run, run_dir / "report.html")
    assert path == run_dir / "report.html"
    text = path.read_text()
    tables = _tables(text)

    front = tables["front-table"]
    header, rows = front[0], front[1:]
    assert header[:5] == ["trial", "quality", "worst latency", "worst device", "feasible"]
    assert "latency a12 (calibrated ±12.3%)" in header and "latency m1 (spec-derived)" in header
    expected = run.front.sort_values("worst_latency_ms")
    assert [r[0] for r in rows] == [str(t) for t in expected["trial"]]
    assert [r[1] for r in rows] == [f"{q:.2f}" for q in expected["quality"]]
    assert [r[2] for r in rows] == [f"{v:.2f} ms" for v in expected["worst_latency_ms"]]
    assert [r[-1] for r in rows] == list(expected["arch"])

    devices = {r[0]: r for r in tables["device-table"][1:]}
    assert devices["a12"][1:] == ["9.42 ms", "-", "-", "18.40 MB", "4.87 MB", "4.71 MB", "calibrated ±12.3%"]
    assert devices["a14"][1] == "5.18 ms" and devices["m1"][1] == "3.96 ms"
    assert devices["m1"][-1] == "spec-derived"

    assert "Chosen: trial 14 (pal6), quality 57.85, 9.42 ms on a12 (within the 10 ms budget)" in text
    assert "mobilenetv3_large_050" in text
    layer_rows = {r[0]: r for r in tables["layer-table"][1:]}
    assert layer_rows["saliency.up"][3] == "CPU (fallback)" and layer_rows["stem.conv"][3] == "ANE"
    assert [r[0] for r in tables["head-table"][1:]] == ["backbone", "tagging", "detection", "saliency"]
    assert [r[0] for r in tables["compression-table"][1:]] == ["fp32", "fp16", "fp16", "pal6"]
    assert tables["compression-table"][-1][-1] == "-0.76"
    assert {r[0]: r[3] for r in tables["provenance-table"][1:]} == {
        "a12": "calibrated ±12.3%",
        "a14": "calibrated ±8.9%",
        "m1": "spec-derived",
    }
    config = {r[0]: r[1] for r in tables["config-table"][1:]}
    assert config["budget_ms"] == "10.0" and config["sampler"] == "nsga2"
    for div in ("pareto-plot", "hv-plot", "device-plot", "head-plot"):
        assert f'id="{div}"' in text


def test_html_is_self_contained(run_dir: Path) -> None:
    text = write_html(load_run(run_dir), run_dir / "report.html").read_text()
    assert len(re.findall(r"plotly\.js v\d", text)) == 1  # the bundle, inlined once
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    assert text.count("Plotly.newPlot") == 4


def test_html_escapes_run_supplied_text(tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>"
    path = write_run(tmp_path, "x<b>")
    card = json.loads((path / "chosen/card.json").read_text())
    card["arch"] = evil
    card["artifacts"]["model.mlpackage"] = {"error": "</script><script>alert(2)</script>"}
    (path / "chosen/card.json").write_text(json.dumps(card))
    front = pd.read_csv(path / "front.csv")
    front["arch"] = evil
    front.to_csv(path / "front.csv", index=False)
    meta = json.loads((path / "run.json").read_text())
    meta["command"] = "compress search --budget 10ms & <script>alert(3)</script>"
    (path / "run.json").write_text(json.dumps(meta))
    text = write_html(load_run(path), path / "report.html").read_text()
    assert evil not in text and "<b>" not in text
    assert "alert(2)" not in text.replace("&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;", "")
    assert "<script>alert(3)" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "compress report: x&lt;b&gt;" in text


def test_html_compare_section(tmp_path: Path) -> None:
    a = load_run(write_run(tmp_path, "a"))
    b = load_run(write_run(tmp_path, "b", trials=20, seed=1))
    text = write_html(a, tmp_path / "cmp.html", compare=b).read_text()
    tables = _tables(text)
    assert tables["compare-table"][0] == ["figure", "a", "b", "change (B - A)"]
    rows = {r[0]: r for r in tables["compare-table"][1:]}
    assert rows["finished trials"][1:] == ["15", "21", "+6"]
    assert text.index('id="compare-plot"') < text.index('id="pareto-plot"')
    assert len(re.findall(r"plotly\.js v\d", text)) == 1
    # the bundle comes before the first figure that uses it
    assert text.index("plotly.js v") < text.index("Plotly.newPlot")


def test_markdown(run_dir: Path) -> None:
    run = load_run(run_dir)
    path = write_markdown(run, run_dir / "report.md")
    text = path.read_text()
    assert text == markdown(run)
    assert text.startswith("# compress report: demo\n")
    assert "| a12 | 9.42 ms | 18.40 MB | 4.87 MB | calibrated ±12.3% |" in text
    for trial in run.front["trial"]:
        assert re.search(rf"^\| {trial} \| ", text, re.M)
    assert "Neural Engine fallbacks: `s3.b0.se.scale`, `saliency.up`" in text
    assert "| pal6 | 25% | 6.40 M | 4.87 MB | 57.85 | -0.76 |" in text


def test_markdown_escapes_table_cells(tmp_path: Path) -> None:
    path = write_run(tmp_path, "demo")
    front = pd.read_csv(path / "front.csv")
    front["quant"] = "pal4|<b>"
    front.to_csv(path / "front.csv", index=False)
    text = markdown(load_run(path))
    assert "pal4\\|&lt;b&gt;" in text and "<b>" not in text


def test_markdown_compare(tmp_path: Path) -> None:
    a = load_run(write_run(tmp_path, "a"))
    b = load_run(write_run(tmp_path, "b", trials=20, seed=1))
    text = markdown(a, compare=b)
    assert "## Comparison: a vs b" in text
    assert "| finished trials | 15 | 21 | +6 |" in text


def _render(renderable: object) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_summary_table(run_dir: Path) -> None:
    text = _render(summary_table(load_run(run_dir)))
    assert "demo: chosen trial 14 (pal6), quality 57.85" in text
    for figure in (
        "9.42 ms",
        "5.18 ms",
        "3.96 ms",
        "18.40 MB",
        "4.87 MB",
        "calibrated ±12.3%",
        "spec-derived",
    ):
        assert figure in text


def test_summary_table_does_not_read_run_text_as_markup(tmp_path: Path) -> None:
    path = write_run(tmp_path, "[bold red]run")
    text = _render(summary_table(load_run(path)))
    assert "[bold red]run: chosen trial" in text


def test_comparison_table(tmp_path: Path) -> None:
    a = load_run(write_run(tmp_path, "a"))
    b = load_run(write_run(tmp_path, "b", trials=20, seed=1))
    text = _render(comparison_table(compare_runs(a, b)))
    assert "a vs b" in text
    assert re.search(r"finished trials\s+│\s+15\s+│\s+21\s+│\s+\+6", text)
