"""reports: reading a run directory and showing it (terminal summary, plots, self-contained HTML)."""

from __future__ import annotations

from reports._compare import Comparison, ComparisonRow, compare_runs
from reports._console import comparison_table, summary_table
from reports._data import (
    CompressionRow,
    DevicePlotData,
    FrontPlotData,
    HeadCost,
    HypervolumePlotData,
    LayerTable,
    compression_rows,
    device_plot_data,
    front_plot_data,
    hypervolume_plot_data,
    layer_table,
)
from reports._html import write_html
from reports._markdown import markdown, write_markdown
from reports._report import Report, make_report
from reports._run import FORMAT, Run, latest_run, load_run

__all__ = [
    "FORMAT",
    "Comparison",
    "ComparisonRow",
    "CompressionRow",
    "DevicePlotData",
    "FrontPlotData",
    "HeadCost",
    "HypervolumePlotData",
    "LayerTable",
    "Report",
    "Run",
    "compare_runs",
    "comparison_table",
    "compression_rows",
    "device_plot_data",
    "front_plot_data",
    "hypervolume_plot_data",
    "latest_run",
    "layer_table",
    "load_run",
    "make_report",
    "markdown",
    "summary_table",
    "write_html",
    "write_markdown",
]
