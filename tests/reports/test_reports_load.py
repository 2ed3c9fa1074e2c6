"""Reading run directories: the happy path, latest_run, and every error a damaged or foreign run gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import DEVICES, write_run

from compress.errors import RunError
from reports import FORMAT, latest_run, load_run


def test_load_run_reads_every_part(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.name == "demo"
    assert run.devices == list(DEVICES)
    assert run.budget_ms == 10.0
    assert run.config["sampler"] == "nsga2"
    assert run.slowest_device == "a12"
    assert run.card["trial"] in set(run.front["trial"])
    assert run.front["feasible"].dtype == bool
    assert len(run.trials) > len(run.front) > 0
    assert list(run.baselines["name"]) == ["mobilenetv3_large_050", "mobilenetv3_large_075"]
    assert len(run.hypervolume) == len(run.trials)
    assert set(run.layers["head"]) == {"backbone", "tagging", "detection", "saliency"}
    assert run.provenance["a12"] == {"source": "calibrated", "error_pct": 12.3}


def test_load_run_accepts_string_feasible_column(run_dir: Path) -> None:
    front = pd.read_csv(run_dir / "front.csv")
    front["feasible"] = ["true" if f else "false" for f in front["feasible"]]
    front.to_csv(run_dir / "front.csv", index=False)
    run = load_run(run_dir)
    assert run.front["feasible"].tolist() == [lat <= 10.0 for lat in run.front["worst_latency_ms"]]


def test_latest_run_picks_the_newest_created(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "old", created="2025-01-01T10:00:00+00:00")
    write_run(root, "new", created="2025-03-01T10:00:00+00:00")
    write_run(root, "mid", created="2025-02-01T10:00:00+00:00")
    (root / "not-a-run").mkdir()
    assert latest_run(root) == root / "new"


def test_latest_run_without_runs_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"no runs under .*compress search --budget 10ms"):
        latest_run(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    with pytest.raises(RunError, match="no runs under"):
        latest_run(tmp_path / "runs")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"nope does not exist"):
        load_run(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(RunError, match="is not a run directory: it is a file"):
        load_run(tmp_path / "f.txt")


def test_missing_run_json(run_dir: Path) -> None:
    (run_dir / "run.json").unlink()
    with pytest.raises(RunError, match=r"demo is not a run directory: run.json is missing \(create one with"):
        load_run(run_dir)


@pytest.mark.parametrize("fmt", [0, 2, "1"])
def test_run_from_another_format(run_dir: Path, fmt: object) -> None:
    meta = json.loads((run_dir / "run.json").read_text())
    meta["format"] = fmt
    (run_dir / "run.json").write_text(json.dumps(meta))
    expected = rf"run.json format {fmt} is not supported; this toolkit reads format {FORMAT}"
    with pytest.raises(RunError, match=expected):
        load_run(run_dir)


def test_run_json_without_format(run_dir: Path) -> None:
    meta = json.loads((run_dir / "run.json").read_text())
    del meta["format"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="has no 'format' field"):
        load_run(run_dir)


def test_run_json_that_does_not_parse(run_dir: Path) -> None:
    (run_dir / "run.json").write_text("{not json")
    with pytest.raises(RunError, match=r"run.json is not valid JSON"):
        load_run(run_dir)


def test_run_json_without_config(run_dir: Path) -> None:
    meta = json.loads((run_dir / "run.json").read_text())
    del meta["config"]["devices"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="needs a 'config' object with 'budget_ms' and 'devices'"):
        load_run(run_dir)


FILES = [
    "front.csv",
    "trials.csv",
    "baselines.csv",
    "hypervolume.csv",
    "chosen/card.json",
    "chosen/layers.csv",
]


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_named(run_dir: Path, name: str) -> None:
    (run_dir / name).unlink()
    expected = rf"demo is incomplete: {name} is missing .*compress search --budget 10ms"
    with pytest.raises(RunError, match=expected):
        load_run(run_dir)


def test_every_missing_file_is_named(run_dir: Path) -> None:
    (run_dir / "front.csv").unlink()
    (run_dir / "chosen/card.json").unlink()
    with pytest.raises(RunError, match=r"front.csv, chosen/card.json are missing"):
        load_run(run_dir)


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("front.csv", "worst_latency_ms"),
        ("front.csv", "latency_ms.a14"),
        ("front.csv", "peak_memory_mb.m1"),
        ("trials.csv", "state"),
        ("baselines.csv", "name"),
        ("hypervolume.csv", "hypervolume"),
        ("chosen/layers.csv", "unit"),
    ],
)
def test_missing_column_is_named(run_dir: Path, name: str, column: str) -> None:
    path = run_dir / name
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    with pytest.raises(RunError, match=rf"{name} is missing column\(s\) \['{column}'\]"):
        load_run(run_dir)


def test_empty_csv_is_reported_as_missing_columns(run_dir: Path) -> None:
    (run_dir / "hypervolume.csv").write_text("")
    expected = r"hypervolume.csv is missing column\(s\) \['trial_number', 'hypervolume'\]"
    with pytest.raises(RunError, match=expected):
        load_run(run_dir)


@pytest.mark.parametrize("key", ["trial", "devices", "quality", "budget_ms"])
def test_card_missing_key(run_dir: Path, key: str) -> None:
    card = json.loads((run_dir / "chosen/card.json").read_text())
    del card[key]
    (run_dir / "chosen/card.json").write_text(json.dumps(card))
    with pytest.raises(RunError, match=rf"card.json is missing key\(s\) \['{key}'\]"):
        load_run(run_dir)


def test_card_device_missing_figure(run_dir: Path) -> None:
    card = json.loads((run_dir / "chosen/card.json").read_text())
    del card["devices"]["a14"]["peak_memory_mb"]
    (run_dir / "chosen/card.json").write_text(json.dumps(card))
    with pytest.raises(RunError, match=r"devices.a14 is missing key\(s\) \['peak_memory_mb'\]"):
        load_run(run_dir)


def test_latest_run_falls_back_to_mtime_when_created_ties(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = write_run(root, "a", created="2025-01-01T00:00:00+00:00")
    b = write_run(root, "b", created="2025-01-01T00:00:00+00:00")
    os.utime(a / "run.json", (2_000_000_000, 2_000_000_000))
    os.utime(b / "run.json", (1_000_000_000, 1_000_000_000))
    assert latest_run(root) == a
