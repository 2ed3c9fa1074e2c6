"""Plot and table data: checked as data, not pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import CHOSEN_LATENCY

from reports import (
    compare_runs,
    compression_rows,
    device_plot_data,
    front_plot_data,
    hypervolume_plot_data,
    layer_table,
    load_run,
)
from reports._data import provenance_label


def test_front_plot_data(run_dir: Path) -> None:
    run = load_run(run_dir)
    data = front_plot_data(run)
    front = run.front.sort_values("worst_latency_ms")
    assert data.trial == front["trial"].tolist()
    assert data.latency_ms == sorted(data.latency_ms)
    assert data.quality == front["quality"].tolist()
    assert data.chosen_trial == run.card["trial"] and data.chosen_trial in data.trial
    assert data.feasible == [lat <= 10.0 for lat in data.latency_ms]
    assert False in data.feasible  # the fixture's front straddles the budget
    assert data.budget_ms == 10.0
    assert data.peak_memory_mb == front[[f"peak_memory_mb.{d}" for d in run.devices]].max(axis=1).tolist()
    assert len(data.other_quality) == len(run.trials) - len(run.front)
    assert data.baseline_name == ["mobilenetv3_large_050", "mobilenetv3_large_075"]
    assert data.baseline_latency_ms == [8.77, 11.6]
    assert all(label.endswith(f"[{q}]") for label, q in zip(data.label, front["quant"], strict=True))


def test_front_plot_data_skips_failed_trials(run_dir: Path) -> None:
    trials = pd.read_csv(run_dir / "trials.csv")
    off_front = ~trials["trial"].isin(pd.read_csv(run_dir / "front.csv")["trial"])
    trials.loc[trials.index[off_front][0], "state"] = "FAIL"
    trials.to_csv(run_dir / "trials.csv", index=False)
    run = load_run(run_dir)
    assert len(front_plot_data(run).other_quality) == len(run.trials) - len(run.front) - 1


def test_hypervolume_plot_data_is_in_trial_order(run_dir: Path) -> None:
    hv = pd.read_csv(run_dir / "hypervolume.csv").iloc[::-1]
    hv.to_csv(run_dir / "hypervolume.csv", index=False)
    data = hypervolume_plot_data(load_run(run_dir))
    assert data.trial_number == list(range(len(hv)))
    assert data.hypervolume == sorted(data.hypervolume)  # the fixture's history never decreases


def test_device_plot_data(run_dir: Path) -> None:
    data = device_plot_data(load_run(run_dir))
    assert data.device == ["a12", "a14", "m1"]
    assert data.latency_ms == [CHOSEN_LATENCY[d] for d in data.device]
    assert data.latency_error_ms == pytest.approx([9.42 * 0.123, 5.18 * 0.089, 0.0])
    assert data.provenance == ["calibrated ±12.3%", "calibrated ±8.9%", "spec-derived"]
    assert data.source == ["calibrated", "calibrated", "spec"]
    assert data.peak_memory_mb == [18.4, 19.2, 20.0]
    assert data.disk_mb == [4.87] * 3
    assert (data.budget_ms, data.memory_budget_mb, data.disk_budget_mb) == (10.0, 64.0, None)


def test_layer_table_flags_neural_engine_fallbacks(run_dir: Path) -> None:
    data = layer_table(load_run(run_dir))
    assert data.device == "a12"
    assert data.columns[:5] == ["name", "op", "head", "unit", "ms"]
    flagged = [row[0] for row, fb in zip(data.rows, data.fallback, strict=True) if fb]
    assert flagged == ["s3.b0.se.scale", "saliency.up"]
    assert set(data.unit_ms) == {"ANE", "GPU", "CPU"}
    assert data.unit_ms["GPU"] == pytest.approx(0.37) and data.unit_ms["CPU"] == pytest.approx(0.66)
    assert data.total_ms == pytest.approx(sum(data.unit_ms.values()))


def test_layer_table_flags_nothing_on_a_device_without_neural_engine(run_dir: Path) -> None:
    layers = pd.read_csv(run_dir / "chosen/layers.csv")
    layers["unit"] = "gpu"
    layers.to_csv(run_dir / "chosen/layers.csv", index=False)
    data = layer_table(load_run(run_dir))
    assert not any(data.fallback)
    assert data.unit_ms == {"GPU": pytest.approx(data.total_ms)}


def test_layer_table_head_costs(run_dir: Path) -> None:
    run = load_run(run_dir)
    data = layer_table(run)
    assert [h.head for h in data.heads] == ["backbone", "tagging", "detection", "saliency"]
    by_head = run.layers.groupby("head")["ms"].sum()
    for h in data.heads:
        assert h.ms == pytest.approx(by_head[h.head])
        assert h.layers == int((run.layers["head"] == h.head).sum())
        assert h.params == run.card["heads"][h.head]["params"]
    assert sum(h.share for h in data.heads) == pytest.approx(1.0)


def test_compression_rows(run_dir: Path) -> None:
    rows = compression_rows(load_run(run_dir))
    assert [r.scheme for r in rows] == ["fp32", "fp16", "fp16", "pal6"]
    assert [r.prune for r in rows] == [0.0, 0.0, 0.25, 0.25]
    assert rows[0].quality_change == 0.0
    assert rows[-1].quality_change == pytest.approx(57.85 - 58.61)
    assert rows[-1].disk_mb == 4.87 and rows[-1].params == 6_400_000


def test_compression_rows_empty_when_card_has_none(run_dir: Path) -> None:
    card = json.loads((run_dir / "chosen/card.json").read_text())
    del card["compression"]
    (run_dir / "chosen/card.json").write_text(json.dumps(card))
    assert compression_rows(load_run(run_dir)) == []


@pytest.mark.parametrize(
    ("prov", "label"),
    [
        ({"source": "measured"}, "measured"),
        ({"source": "calibrated", "error_pct": 4.25}, "calibrated ±4.2%"),
        ({"source": "calibrated", "error_pct": None}, "calibrated (error unknown)"),
        ({"source": "spec"}, "spec-derived"),
        ({"source": "spec-derived"}, "spec-derived"),
        ({}, "unknown"),
    ],
)
def test_provenance_label(prov: dict, label: str) -> None:
    assert provenance_label(prov) == label


def test_compare_runs(tmp_path: Path) -> None:
    from report_fixtures import write_run

    a = load_run(write_run(tmp_path, "a", trials=14, seed=0))
    b = load_run(write_run(tmp_path, "b", trials=20, seed=1))
    cmp = compare_runs(a, b)
    assert (cmp.name_a, cmp.name_b) == ("a", "b")
    rows = {r.label: r for r in cmp.rows}
    assert rows["finished trials"].a == 15 and rows["finished trials"].b == 21
    assert rows["finished trials"].delta == 6
    assert rows["front size"].a == len(a.front) and rows["front size"].b == len(b.front)
    assert rows["chosen worst latency"].cells() == ("chosen worst latency", "9.42 ms", "9.42 ms", "0.00 ms")
    assert rows["chosen quant"].delta is None
    assert rows["best feasible quality"].a == a.front.loc[a.front["feasible"], "quality"].max()
