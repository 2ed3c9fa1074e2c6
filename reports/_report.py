"""One call behind ``compress report``: resolve the run(s), write the file, hand back what to print."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import ConfigError
from reports._compare import compare_runs
from reports._console import comparison_table, summary_table
from reports._html import write_html
from reports._markdown import write_markdown
from reports._run import latest_run, load_run

__all__ = ["FORMATS", "Report", "make_report"]

FORMATS = ("html", "md")


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote (``path``) and the rich renderables to print (``summary``)."""

    path: Path
    summary: tuple[Any, ...]


def make_report(
    run_dir: str | Path | None = None,
    *,
    fmt: str = "html",
    compare: tuple[str | Path, str | Path] | None = None,
    out: str | Path | None = None,
    root: str | Path = "runs",
) -> Report:
    """Write a run's report and return its path with a terminal summary.

    ``run_dir`` defaults to the latest run under ``root``. The file goes to ``out`` or, by default,
    ``RUN_DIR/report.html`` (``.md`` with ``fmt="md"``). With ``compare=(A, B)`` the report is of A with a
    side-by-side section for B, written by default to ``A/compare-<B>.html``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (--format); choose one of: {', '.join(FORMATS)}")
    if compare is not None:
        if run_dir is not None:
            raise ConfigError(
                f"give either RUN_DIR ({run_dir}) or --compare RUN_A RUN_B, not both (the report is of RUN_A)"
            )
        if len(compare) != 2:
            raise ConfigError(f"--compare takes two run directories, but got {len(compare)}: {list(compare)}")
        run, other = load_run(compare[0]), load_run(compare[1])
        default = run.path / f"compare-{other.name}.{fmt}"
    else:
        run, other = load_run(latest_run(root) if run_dir is None else run_dir), None
        default = run.path / f"report.{fmt}"
    target = Path(out) if out is not None else default
    writer = write_html if fmt == "html" else write_markdown
    path = writer(run, target, compare=other)
    summary: tuple[Any, ...] = (summary_table(run),)
    if other is not None:
        summary = (comparison_table(compare_runs(run, other)), *summary)
    return Report(path=path, summary=summary)
