"""Re-anchoring a host profile to the machine's speed now: ``rescale_host``, ``refresh_host``, the CLI flag."""

from __future__ import annotations

import dataclasses
import time

import pytest
from torch import nn
from typer.testing import CliRunner

import compress.model
import profiles
from compress.cli import profile as cli
from profiles import ProfileError, _host, estimate, load_profile, measure_latencies, refresh_host
from profiles._refresh import anchor_nets, rescale_host
from profiles._schema import dump_profile

MODELS = [
    (nn.Conv2d(3, 8, 3), (1, 3, 32, 32)),
    (
        nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish(), nn.Conv2d(16, 16, 3, groups=16)),
        (1, 3, 64, 64),
    ),
]


def test_rescale_scales_every_estimate_by_exactly_the_ratio(host_toml):
    p = load_profile(host_toml)
    slower = rescale_host(p, 1.25, why="test")
    for model, shape in MODELS:
        assert estimate(model, shape, slower).latency_ms == pytest.approx(
            1.25 * estimate(model, shape, p).latency_ms, rel=1e-4
        )
    assert slower.calibration.rows[0].measured_ms == pytest.approx(
        1.25 * p.calibration.rows[0].measured_ms, rel=1e-5
    )
    assert "x1.2500 by test" in slower.calibration.note
    assert "x0.8000 by test" in slower.units["cpu"].peak_gflops["fp32"].source
    reread = profiles._schema.parse_profile(dump_profile(slower), where="rescaled")
    assert estimate(*MODELS[1], reread).latency_ms == pytest.approx(estimate(*MODELS[1], slower).latency_ms)
    with pytest.raises(ProfileError, match="ratio must be a positive number, but got 0"):
        rescale_host(p, 0.0, why="test")


def test_anchors_are_the_profiles_own_nets_rebuilt(host_toml):
    anchors = anchor_nets(load_profile(host_toml))
    labels = [a[0] for a in anchors]
    assert labels[-1] == _host.REFERENCE_NET and len(anchors) == 4  # 3 random nets + the reference
    stored = {r.model: r.measured_ms for r in load_profile(host_toml).calibration.rows}
    assert [a[3] for a in anchors] == [stored[label] for label in labels]


def test_refresh_writes_a_copy_scaled_by_the_median_change(host_toml, tmp_path, monkeypatch):
    stored = [a[3] for a in anchor_nets(load_profile(host_toml))]
    seen = {}

    def timed(items, **options):  # the machine now runs 10-30% slower, net by net
        seen.update(options, n=len(items))
        return [ms * f for ms, f in zip(stored, (1.1, 1.2, 1.2, 1.3), strict=True)]

    monkeypatch.setattr(profiles._refresh, "measure_latencies", timed)
    before = host_toml.read_text()
    out, ratio = refresh_host(host_toml, out=tmp_path / "now.toml", seconds=4.0, progress=False)
    assert ratio == pytest.approx(1.2) and seen["n"] == 4 and seen["spread_s"] == 4.0 and seen["rounds"] == 20
    assert host_toml.read_text() == before  # the measured profile is untouched when --out names another file
    for model, shape in MODELS:
        assert estimate(model, shape, out).latency_ms == pytest.approx(
            1.2 * estimate(model, shape, host_toml).latency_ms, rel=1e-4
        )
    assert "refresh_host" in load_profile(out).calibration.note


def test_refresh_refuses_what_it_cannot_re_anchor(host_toml, tmp_path):
    with pytest.raises(ProfileError, match="no host profile at .* measure this machine first"):
        refresh_host(tmp_path / "missing.toml", progress=False)
    with pytest.raises(ProfileError, match="is not a measured host profile"):
        refresh_host(profiles._registry.DEVICES_DIR / "a15.toml", out=tmp_path / "x.toml", progress=False)
    p = load_profile(host_toml)
    singles = tuple(r for r in p.calibration.rows if not r.model.startswith(("random-mbv3", "reference")))
    bare = tmp_path / "bare.toml"
    bare.write_text(
        dump_profile(dataclasses.replace(p, calibration=dataclasses.replace(p.calibration, rows=singles)))
    )
    with pytest.raises(ProfileError, match="stores 0 whole-net benchmarks this code can rebuild"):
        refresh_host(bare, progress=False)


def test_measure_spreads_rounds_over_the_time_asked():
    start = time.perf_counter()
    measure_latencies([(nn.ReLU(), (1, 4))], rounds=3, round_ms=1, spread_s=0.6)
    assert time.perf_counter() - start >= 0.6


def test_cli_refresh_re_anchors_the_profile_named_by_out(host_toml, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(profiles, "refresh_host", lambda path, **kw: calls.append((path, kw)) or (path, 1.04))
    monkeypatch.setattr(
        compress.model, "sample_nets", lambda n: [("search-space #0 @96", None, (1, 3, 96, 96))]
    )
    result = CliRunner().invoke(cli.app, ["measure", "--refresh", "--out", str(host_toml)])
    assert result.exit_code == 0, result.output
    assert "x1.040 (the machine runs +4.0%)" in result.output
    assert calls[0][0] == host_toml and calls[0][1]["extra"][0][0] == "search-space #0 @96"
    result = CliRunner().invoke(cli.app, ["measure", "--refresh", "--threads", "2", "--out", str(host_toml)])
    assert isinstance(result.exception, ProfileError) and "--threads does not apply" in str(result.exception)
    # a shipped device profile is not something to re-anchor: the library's error reaches the CLI
    monkeypatch.undo()
    result = CliRunner().invoke(
        cli.app, ["measure", "--refresh", "--out", str(profiles._registry.DEVICES_DIR / "a15.toml")]
    )
    assert isinstance(result.exception, ProfileError)
