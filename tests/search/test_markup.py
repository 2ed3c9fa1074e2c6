"""User strings (paths, device and row names) are shown as text: rich markup and Markdown cannot break out."""

from __future__ import annotations

import pandas as pd

from reports._markdown import _esc
from search import SearchResult
from search.summary import print_summary


def test_summary_prints_a_run_dir_with_rich_markup(tmp_path, capsys):
    run_dir = tmp_path / "runs[" / "x]"
    result = SearchResult(run_dir, pd.DataFrame(), pd.DataFrame(), {"trial": 3}, None)
    print_summary(result)
    out = capsys.readouterr().out.replace("\n", "")
    assert "runs[/x]" in out and "chosen trial 3" in out


def test_markdown_escapes_names():
    assert _esc("dev*1_[x](y)|`z`") == "dev\\*1\\_\\[x\\](y)\\|\\`z\\`"
    assert _esc("<script>") == "&lt;script&gt;"
