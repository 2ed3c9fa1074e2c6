"""``compress report``: a run's self-contained HTML report (or Markdown summary) and a terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["report_cmd"]


def report_cmd(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="RUN_DIR",
            help="Run directory (default: the latest run under ./runs).",
            show_default=False,
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="Output format: html or md.")] = "html",
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            metavar="RUN_A RUN_B",
            help="Put two runs side by side: RUN_A RUN_B (the report is of RUN_A).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (default: RUN_DIR/report.html or .md).")
    ] = None,
) -> None:
    """Write RUN_DIR/report.html (self-contained, opens offline) and print a summary table."""
    from rich.console import Console

    from compress.cli import quiet
    from reports import make_report

    result = make_report(run_dir, fmt=format, compare=compare, out=out)
    if quiet():
        return
    console = Console()
    for renderable in result.summary:
        console.print(renderable)
    console.print(f"report written to {result.path}", markup=False, highlight=False)
