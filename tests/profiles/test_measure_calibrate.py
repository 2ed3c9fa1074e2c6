"""Measurement, the host profile fit, calibration and its leave-one-out error."""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import profiles
from profiles import ProfileError, _host, calibrate, estimate, extract_graph, load_profile, measure_latency
from profiles._calibrate import apply_params, predict_ms
from profiles._evidence import RUNTIMES
from profiles._host import fit_host


def test_measure_latency_is_positive_and_tracks_work():
    small = measure_latency(nn.Conv2d(8, 8, 3, padding=1), (1, 8, 16, 16), rounds=3, round_ms=2)
    big = measure_latency(nn.Conv2d(64, 64, 3, padding=1), (1, 64, 64, 64), rounds=3, round_ms=2)
    assert 0 < small < big


def test_measurement_restores_thread_count():
    before = torch.get_num_threads()
    measure_latency(nn.ReLU(), (1, 4, 4, 4), threads=1, rounds=1, round_ms=1)
    assert torch.get_num_threads() == before


def test_measure_rejects_bad_options():
    with pytest.raises(ProfileError, match="rounds must be >= 1"):
        measure_latency(nn.ReLU(), (1, 4), rounds=0)
    with pytest.raises(ProfileError, match="clock must be"):
        measure_latency(nn.ReLU(), (1, 4), clock="sundial")
    with pytest.raises(ProfileError, match="threads must be >= 1"):
        measure_latency(nn.ReLU(), (1, 4), threads=0)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML runs on macOS")
def test_measure_coreml_says_it_needs_macos(tmp_path):
    with pytest.raises(ProfileError, match="Core ML models run only on macOS"):
        profiles.measure_coreml(tmp_path / "model.mlpackage")


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="needs macOS to run Core ML")
def test_measure_coreml_for_real(tmp_path):  # pragma: no cover - macOS only
    import coremltools as ct

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    traced = torch.jit.trace(model, torch.rand(1, 3, 32, 32))
    ml = ct.convert(traced, inputs=[ct.TensorType(shape=(1, 3, 32, 32))], convert_to="mlprogram")
    ml.save(str(tmp_path / "m.mlpackage"))
    result = profiles.measure_coreml(tmp_path / "m.mlpackage", compute_units=["cpu_only", "all"])
    assert set(result) == {"cpu_only", "all"} and all(v > 0 for v in result.values())


def _nets(n: int = 12) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        c, r = int(rng.choice([8, 16, 32])), int(rng.choice([16, 24, 32]))
        layers = [
            nn.Conv2d(3, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c),
        ]
        out.append(extract_graph(nn.Sequential(*layers), (1, 3, r, r)))
    return out


def test_fit_host_recovers_known_costs():
    graphs = _nets()
    truth = np.zeros((14, 4))  # per class: ms per FLOP, per activation byte, per weight byte, per op
    truth[:, 3] = 0.004  # 4 us per op
    truth[0, 0], truth[2, 0], truth[5, 1] = 2e-8, 5e-8, 1e-6  # conv, dw: ms per FLOP; bn: ms per byte
    truth[0, 2] = 2e-7  # conv: ms per weight byte
    node_ms = [(_host._node_rows(g) * truth[g.arrays["cls"]]).sum(axis=1) for g in graphs]
    per_call, per_inference = 0.003, 0.05
    totals = np.array(
        [
            t.sum() + per_call * g.arrays["calls"].sum() + per_inference
            for g, t in zip(graphs, node_ms, strict=True)
        ]
    )
    costs, fitted, loo = fit_host(graphs, node_ms, totals, peak_gflops=200.0, bandwidth_gbs=10.0)
    assert np.allclose(fitted, totals, rtol=0.02)
    assert np.median(np.abs(loo / totals - 1)) < 0.02
    # the fitted costs, written into a profile, predict the same totals through the cost model
    from dataclasses import replace

    host = load_profile("a16")
    cpu = replace(host.units["cpu"], costs=costs, fuses=False)
    cpu = replace(cpu, peak_gflops={"fp32": replace(cpu.peak_gflops["fp32"], value=200.0)})
    cpu = replace(cpu, bandwidth_gbs=replace(cpu.bandwidth_gbs, value=10.0))
    prof = replace(host, units={"cpu": cpu}, default_quant="fp32")
    predicted = [profiles.estimate_graph(g, prof).latency_ms for g in graphs]
    assert np.allclose(predicted, totals, rtol=0.02)


def test_fit_host_rescales_op_times_that_whole_nets_contradict():
    """Op times measured one by one (hooks, timers) can run slower than inside a whole forward: with enough
    whole nets the fit follows the nets, not the inflated op times."""
    graphs = _nets(16)
    truth = np.zeros((14, 4))
    truth[:, 3] = 0.004
    truth[0, 0], truth[2, 0], truth[5, 1] = 2e-8, 5e-8, 1e-6
    true_ms = [(_host._node_rows(g) * truth[g.arrays["cls"]]).sum(axis=1) for g in graphs]
    totals = np.array([t.sum() + 0.05 for t in true_ms])
    inflated = truth * np.array([1.3, 1.3, 1.3, 1.0])  # FLOP and byte terms timed 30% slow, per-op right
    node_ms = [(_host._node_rows(g) * inflated[g.arrays["cls"]]).sum(axis=1) for g in graphs]
    _, fitted, loo = fit_host(graphs, node_ms, totals, peak_gflops=200.0, bandwidth_gbs=10.0)
    assert np.allclose(fitted, totals, rtol=0.02)
    assert np.median(np.abs(loo / totals - 1)) < 0.03
    # with too few nets to separate a scale from an overhead, the inflated op times stay and miss the totals
    _, few, _ = fit_host(graphs[:6], node_ms[:6], totals[:6], peak_gflops=200.0, bandwidth_gbs=10.0)
    assert np.median(np.abs(few / totals[:6] - 1)) > 0.05


@pytest.mark.slow
def test_measure_host_writes_a_usable_profile(host_toml):
    path = host_toml  # measure_host: 10 single layers, 3 + 2 random nets and the reference net (conftest)
    p = load_profile(path)
    assert p.name == "host" and p.basis == "measured" and list(p.units) == ["cpu"]
    assert len(p.calibration.rows) == 16 and p.calibration.loo_median_abs_pct is not None
    assert p.units["cpu"].costs.module_overhead_us >= 0
    cost = estimate(nn.Conv2d(3, 8, 3), (1, 3, 32, 32), path)
    assert cost.latency_ms > 0 and cost.source == "measured"


# ----------------------------------------------------------------------------------------------------------
# calibration


def _tiny(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, groups=c), nn.Conv2d(c, 2 * c, 1)
    )


def _measurements(profile, theta, sizes=(8, 16, 32, 48, 64)) -> tuple[pd.DataFrame, dict]:
    refs = {f"tiny{c}": (_tiny(c), (1, 3, 64, 64)) for c in sizes}
    truth = apply_params(load_profile(profile), theta)
    rows = []
    for name, (model, shape) in refs.items():
        ms = predict_ms(truth, extract_graph(model, shape), "fp16")
        rows.append(
            dict(model=name, chip=truth.chip, weights="fp16", activations="fp16", input=64, latency_ms=ms)
        )
    return pd.DataFrame(rows), refs


def test_calibrate_recovers_a_slower_device_with_small_loo_error():
    theta = {("ane", "compute"): np.log(0.5), ("ane", "inference"): np.log(3.0)}
    df, refs = _measurements("a16", theta)
    before = [predict_ms(load_profile("a16"), extract_graph(*refs[m]), "fp16") for m in df.model]
    result = calibrate("a16", df, reference_models=refs)
    assert result.profile.basis == "calibrated"
    assert list(result.table.columns[:3]) == ["row", "model", "quant"]
    after_err = (result.table.fitted_ms / result.table.measured_ms - 1).abs()
    before_err = (np.array(before) / df.latency_ms - 1).abs()
    assert after_err.median() < 0.25 * before_err.median()
    assert result.loo_median_abs_pct < 100 * before_err.median()
    assert result.profile.calibration.rows[0].measured_ms == pytest.approx(df.latency_ms[0], rel=1e-4)


def test_calibrate_errors():
    df, refs = _measurements("a16", {})
    with pytest.raises(ProfileError, match=r"no measurements for chip 'A11' \(device a11\); chips present"):
        calibrate("a11", df, reference_models=refs)
    with pytest.raises(ProfileError, match=r"lack column\(s\) \['latency_ms'\]"):
        calibrate("a16", df.drop(columns="latency_ms"), reference_models=refs)
    bad = df.assign(latency_ms=-1.0)
    with pytest.raises(ProfileError, match="latency_ms must be a positive number"):
        calibrate("a16", bad, reference_models=refs)
    with pytest.raises(ProfileError, match="no reference model for 'xception'"):
        calibrate("a16", df.assign(model="xception"))


def test_shipped_profiles_carry_held_out_errors_and_intervals():
    """Every Apple profile stores grouped held-out errors and, per unit, ordered interval quantiles."""
    errors = [abs(r.loo_pct) for d in profiles.DEVICES for r in load_profile(d).calibration.rows]
    assert len(errors) >= 100
    for d in profiles.DEVICES:
        cal = load_profile(d).calibration
        core_ml = [r for r in cal.rows if r.source.rsplit("(", 1)[-1].rstrip(")") not in RUNTIMES]
        kinds = ("network", "source", "chip") if core_ml else ("chip",)  # figures of Core ML rows only
        for by in kinds:
            assert cal.validation[f"{by}_median_pct"] <= cal.validation[f"{by}_worst_pct"], (d, by)
        assert set(cal.interval) == set(load_profile(d).units), d
        for qs in cal.interval.values():
            values = [qs[k] for k in ("q05", "q10", "q20", "q50", "q80", "q90", "q95")]
            assert values == sorted(values) and qs["n"] >= 1, d


def test_reference_models_match_published_sizes():
    from profiles.reference_models import list_reference_models, reference_model

    published = {
        "mobilenet_v2_1.0": 3.50,
        "mobilenet_v3_small_1.0": 2.54,
        "resnet50": 25.56,
        "mobileone_s4": 14.84,
        "resnet18": 11.69,
        "resnet101": 44.55,
        "vgg16_bn": 138.37,
        "densenet121": 7.98,
        "densenet201": 20.01,
        "alexnet": 61.10,
        "mobilenet_v2_0.35": 1.68,
    }
    assert set(published) - {"mobilenet_v2_0.35"} <= set(list_reference_models())
    for name, mparams in published.items():
        n = sum(p.numel() for p in reference_model(name).parameters()) / 1e6
        assert n == pytest.approx(mparams, abs=0.01), name
