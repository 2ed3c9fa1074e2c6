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
    from compress.training import _progress
    from search.run import _SearchProgress
    from search.study import Limits

    bars = [_progress(True, 3, 0), _SearchProgress(True, 3, Limits(10.0, ("a11",)))]
    try:
        assert all(b._bar.console.stderr for b in bars)
    finally:
        for b in bars:
            b.close()
