"""The command line's global options: --version, -h everywhere, --debug listed, --quiet; progress on stderr."""

from __future__ import annotations

import pytest

from compress import __version__
from compress.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"compress {__version__}"


@pytest.mark.parametrize("args", [["-h"], ["search", "-h"], ["profile", "-h"], ["report", "--help"]])
def test_short_help_everywhere(capsys, args):
    assert main(args) == 0
    assert "Usage: compress" in capsys.readouterr().out


def test_debug_and_quiet_are_listed(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    assert "--debug" in out and "--quiet" in out and "--version" in out


def test_quiet_report_prints_nothing(capsys, tiny_run, tmp_path):
    assert main(["-q", "report", str(tiny_run.run_dir), "--out", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and (tmp_path / "r.html").is_file()
    assert main(["report", str(tiny_run.run_dir), "--out", str(tmp_path / "r2.html")]) == 0
    assert "report written to" in capsys.readouterr().out  # without -q the summary is back


def test_progress_bars_write_to_stderr():
    """Every bar of the toolkit is a ``compress.progress.Bar`` on stderr (stdout holds results only)."""
    from compress.progress import Bar
    from search.run import _SearchProgress
    from search.study import Limits

    lasting = Bar("supernet", total=3, enabled=True, transient=False)
    search = _SearchProgress(True, 3, Limits(10.0, ("a11",)))
    try:
        assert lasting._progress.console.stderr and search._bar._progress.console.stderr
    finally:
        lasting.close()
        search.close()


def test_disabled_and_off_terminal_transient_bars_draw_nothing(capsys):
    from compress.progress import Bar, track

    assert list(track(range(3), total=3, description="x", enabled=True)) == [0, 1, 2]  # pytest: no terminal
    with Bar("quiet", total=2, enabled=False, transient=False) as bar:
        bar.update(1, info="loss=1")
        assert bar._progress is None
    assert capsys.readouterr() == ("", "")


def test_the_time_goal_counts_from_the_commands_process_start(monkeypatch):
    """Run as the console script (no ``argv``), ``compress search``'s time goal counts from the process's
    creation, so the interpreter's start and the imports lie inside it; called in-process with arguments (a
    test, an API user), from the search's own start. The search command hands that start to ``run_search``."""
    import sys
    import time

    import compress.cli as cli
    import search

    monkeypatch.setattr(cli, "STARTED", None)
    assert main(["--version"]) == 0 and cli.STARTED is None
    monkeypatch.setattr(sys, "argv", ["compress", "--version"])
    with pytest.raises(SystemExit):
        main()
    assert cli.STARTED is not None and cli.STARTED < time.monotonic()

    got = []
    monkeypatch.setattr(search, "run_search", lambda cfg, *, progress, started: got.append(started))
    monkeypatch.setattr("search.summary.print_summary", lambda result: None)
    main(["search", "--budget", "10ms", "--out", "/nonexistent-not-written"])
    assert got == [cli.STARTED]
