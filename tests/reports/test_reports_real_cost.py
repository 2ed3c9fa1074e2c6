"""The layer table from a real ``profiles.Cost.layers`` of a preset network (as the search will write it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reports import layer_table, load_run


@pytest.fixture(scope="module")
def net_and_spec():
    from compress.model import MultiTaskNet, get_preset

    torch.manual_seed(0)
    spec = get_preset("mobilenetv3_small_050")
    return MultiTaskNet(spec).eval(), spec


@pytest.mark.parametrize("device", ["a11", "a12"])
def test_layer_table_from_profiles_cost(run_dir: Path, net_and_spec, device: str) -> None:
    import profiles

    net, spec = net_and_spec
    cost = profiles.estimate(net, (1, 3, spec.resolution, spec.resolution), device, quant="pal6")
    cost.layers.to_csv(run_dir / "chosen/layers.csv", index=False)  # as written: no "head" column
    data = layer_table(load_run(run_dir))

    assert data.total_ms == pytest.approx(cost.latency_ms)
    assert len(data.rows) == len(cost.layers)
    assert sum(h.ms for h in data.heads) == pytest.approx(cost.latency_ms)
    heads = [h.head for h in data.heads]
    assert heads[0] == "backbone"
    assert {"tagging", "detection", "saliency"} <= set(heads)
    assert set(data.unit_ms) == {u.upper() for u in cost.units}
    if "ane" not in cost.units:  # A11: no Neural Engine that Core ML uses, so nothing falls back from it
        assert not any(data.fallback)
    overhead = [fb for row, fb in zip(data.rows, data.fallback, strict=True) if row[1] == "inference"]
    assert overhead and not any(overhead)
    assert all(" -> " in str(row[-1]) for row in data.rows if row[1] != "inference")
