"""The report of a small real ``compress search`` run shows its front and its chosen model's figures."""

import json

import pandas as pd
import pytest

from reports import load_run, make_report


@pytest.mark.slow
def test_report_of_a_real_run(tiny_run):
    run_dir = tiny_run.run_dir
    report = make_report(run_dir)
    html = report.path.read_text()
    assert report.path == run_dir / "report.html"
    front = pd.read_csv(run_dir / "front.csv")
    for row in front.itertuples():
        assert row.arch.split(" | ")[0] in html
        assert f"{row.quality:.2f}" in html
    card = json.loads((run_dir / "chosen" / "card.json").read_text())
    for device, figures in card["devices"].items():
        assert device in html
        assert f"{figures['latency_ms']:.2f}" in html
    assert f"quality {card['quality']['aggregate']:.2f}" in html  # as the headline prints it (two decimals)
    run = load_run(run_dir)
    assert len(run.front) == len(front) and run.budget_ms == 10.0
