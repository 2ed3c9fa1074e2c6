"""``compress report`` in-process: default run, formats, --compare, --out, and the errors it lets through."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from report_fixtures import write_run
from typer.testing import CliRunner

from compress.cli.report import report_cmd
from compress.errors import ConfigError, RunError


@pytest.fixture
def app() -> typer.Typer:
    """The command registered as the lead registers it on the top-level app."""
    app = typer.Typer()
    app.command("report")(report_cmd)

    @app.callback()
    def _root() -> None:
        """compress"""

    return app


def _invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "200"})


def test_default_is_latest_run_under_runs(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path / "runs", "old", created="2025-01-01T00:00:00+00:00")
    new = write_run(tmp_path / "runs", "new", created="2025-02-01T00:00:00+00:00")
    monkeypatch.chdir(tmp_path)
    result = _invoke(app)
    assert result.exit_code == 0, result.output
    assert (new / "report.html").is_file() and not (tmp_path / "runs/old/report.html").exists()
    assert "new: chosen trial 14 (pal6)" in result.output
    assert "9.42 ms" in result.output
    assert "report written to runs/new/report.html" in result.output


def test_markdown_to_out(app: typer.Typer, run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pr" / "summary.md"
    result = _invoke(app, str(run_dir), "--format", "md", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# compress report: demo")
    assert not (run_dir / "report.html").exists()


def test_compare(app: typer.Typer, tmp_path: Path) -> None:
    a = write_run(tmp_path, "a")
    b = write_run(tmp_path, "b", trials=20, seed=1)
    result = _invoke(app, "--compare", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert (a / "compare-b.html").is_file()
    assert "a vs b" in result.output and "finished trials" in result.output


def test_no_runs_is_a_run_error(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(app)
    assert isinstance(result.exception, RunError)
    assert "no runs under runs/" in str(result.exception)


def test_unknown_format_is_a_config_error(app: typer.Typer, run_dir: Path) -> None:
    result = _invoke(app, str(run_dir), "--format", "pdf")
    assert isinstance(result.exception, ConfigError)
    assert "unknown report format 'pdf' (--format); choose one of: html, md" in str(result.exception)


def test_run_dir_and_compare_together_is_a_config_error(app: typer.Typer, run_dir: Path) -> None:
    result = _invoke(app, str(run_dir), "--compare", str(run_dir), str(run_dir))
    assert isinstance(result.exception, ConfigError)
    assert "give either RUN_DIR" in str(result.exception)


def test_compare_needs_two_runs(app: typer.Typer, run_dir: Path) -> None:
    result = _invoke(app, "--compare", str(run_dir))
    assert result.exit_code == 2  # usage error from the parser
    assert "--compare" in result.output
