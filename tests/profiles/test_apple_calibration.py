"""The Apple cost model: evidence, bounds, exact fit-vs-profile predictions, intervals, sanity relations."""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace

import numpy as np
import pytest

from profiles import ProfileError, estimate, estimate_graph, extract_graph, load_profile
from profiles._applefit import PARAMS
from profiles._evidence import MORE, PUBLISHED, REFERENCE_DIR, RUNTIMES, load_evidence
from profiles._registry import DEVICES
from profiles.reference_models import reference_model

REFERENCE = ("mobilenet_v2_1.0", 224)

# The published rows live in shared/reference beside the repository (CI has them there). A clone without it
# skips the tests that re-read them; CI (CI=true) never skips them.
_HAVE_ROWS = all((REFERENCE_DIR / name).is_file() for name in (PUBLISHED, MORE))
needs_rows = pytest.mark.skipif(
    not _HAVE_ROWS and not os.environ.get("CI"),
    reason=f"the published Apple rows are not at {REFERENCE_DIR} (shared/reference beside the repository)",
)


@pytest.fixture(scope="module")
def evidence():
    return load_evidence()


@pytest.fixture(scope="module")
def mobilenet():
    return extract_graph(reference_model(REFERENCE[0]), (1, 3, REFERENCE[1], REFERENCE[1]))


@needs_rows
def test_evidence_keeps_core_ml_rows_and_says_why_others_are_left_out(evidence):
    rows, dropped = evidence
    assert len(rows) >= 140 and set(rows["tool"]) <= {"xcode", "modelbench", "paper", "app", *RUNTIMES}
    tflite = rows[rows["tool"].isin(RUNTIMES)]
    assert set(tflite["source"]) == {"S5", "S6", "S7"} and (tflite["model"] == "mobilenet_v1_1.0").all()
    assert set(tflite.loc[tflite["tool"] == "tflite_cpu", "threads"]) == {1, 2}
    assert not rows[rows["source"].isin(["S8", "S10", "S11"])].size
    assert {"a11", "a13", "a14", "a16", "a17pro", "m1"} <= set(rows["device"])
    assert {"cpu", "gpu", "all"} == set(rows["units"])
    reasons = " ".join(dropped["reason"])
    for why in ("frame-paced", "another runtime", "not a device class", "no reference model"):
        assert why in reasons
    assert (rows["sigma"] > 0).all() and not rows["source"].eq("S4").any()


def test_fitted_costs_stay_inside_their_physical_ranges():
    ranges = {(p.unit, p.knob): (p.lo, p.hi) for p in PARAMS}
    for d in DEVICES:
        for name, unit in load_profile(d).units.items():
            c = unit.costs
            assert all(0 < v <= 1 for v in c.efficiency.values()), (d, name)
            assert all(0 < v <= 1 for v in c.mem_efficiency.values()), (d, name)
            lo, hi = ranges[(name, "inference_us")]
            assert lo - 1e-6 <= c.inference_overhead_us <= hi + 1e-6, (d, name)
            assert c.overlap == "network" and 0.3 < c.time_scale < 3.5


@needs_rows
def test_a_neural_engine_launch_is_bounded_by_the_smallest_published_rows():
    lo, hi = next((p.lo, p.hi) for p in PARAMS if (p.unit, p.knob) == ("ane", "inference_us"))
    rows, _ = load_evidence()
    smallest_xcode = rows[(rows["tool"] == "xcode") & (rows["units"] == "all")]["latency_ms"].min()
    assert lo >= 10 and hi < 1000 * smallest_xcode


def test_interval_brackets_the_prediction_and_confidence_is_monotone(mobilenet):
    for d in DEVICES:
        c = estimate_graph(mobilenet, d)
        assert c.latency_ms_p10 < c.latency_ms_p90, d
        assert c.latency_ms_at(0.5) <= c.latency_ms_at(0.9) <= c.latency_ms_at(0.95)
        assert c.latency_ms_at(0.9) == pytest.approx(c.latency_ms_p90)
        assert c.confidence_within(c.latency_ms_at(0.8)) == pytest.approx(0.8, abs=1e-6)
        assert c.as_dict()["latency_ms_p90"] == c.latency_ms_p90
    with pytest.raises(ProfileError, match=r"confidence must lie in \[0.05, 0.95\], but got 0.99"):
        estimate_graph(mobilenet, "a14").latency_ms_at(0.99)


def test_sanity_relations_between_chips_and_units(mobilenet):
    """Newer is faster; M1 (A14's Neural Engine, twice its spec bandwidth) within 2.5x of A14 and not
    slower; CPU-only slower than all units; A11 (GPU only) the slowest.

    CPU-only against all units compares what each is expected to measure (the median of the interval), the
    quantity Core ML's unit choice is modelled by: on A11 the point predictions of MobileNetV2 put the CPU
    below the GPU (16.0 against 17.9 ms), but the CPU's held-out rows measure x0.78 of its predictions and
    the GPU's x0.66, so the GPU is the faster unit and all units choose it."""
    ms = {d: estimate_graph(mobilenet, d).latency_ms for d in DEVICES}
    assert ms["a15"] <= ms["a14"] and ms["a16"] <= ms["a15"]
    assert ms["a14"] / 2.5 <= ms["m1"] <= ms["a14"]
    assert ms["a11"] == max(ms.values())
    for d in DEVICES:
        cpu = estimate_graph(mobilenet, d, compute_units="cpu_only").latency_ms_at(0.5)
        assert cpu > estimate_graph(mobilenet, d).latency_ms_at(0.5), d


def test_compute_units_option_is_checked(mobilenet):
    with pytest.raises(ProfileError, match="compute_units must be one of all, cpu_and_gpu"):
        estimate_graph(mobilenet, "a14", compute_units="npu")
    cpu_only = replace(load_profile("a11"), units={"cpu": load_profile("a11").units["cpu"]})
    with pytest.raises(ProfileError, match=r"device a11 has none of the units \('gpu',\)"):
        estimate(
            reference_model("mobilenet_v3_small_1.0"), (1, 3, 96, 96), cpu_only, compute_units="gpu_only"
        )


def test_a_tool_term_is_free_only_where_one_chip_unit_has_two_tools():
    """A term must not stand in for a chip's speed: two tools on different units of one chip, or one tool
    alone on a chip, identify nothing; the reference ``xcode`` never gets a term."""
    import pandas as pd

    from profiles._applefit import identified_tools

    rows = pd.DataFrame(
        {
            "device": ["a11", "a11", "a13", "a13", "a13", "a14", "a14"],
            "units": ["cpu", "gpu", "cpu", "cpu", "gpu", "all", "all"],
            "tool": ["tflite_cpu", "app", "app", "tflite_cpu", "tflite_gpu", "xcode", "paper"],
        }
    )
    assert identified_tools(rows) == {"app", "tflite_cpu", "paper"}
    assert identified_tools(rows[rows["device"] != "a13"]) == {"paper"}
    assert identified_tools(rows[rows["device"] == "a11"]) == set()


def test_a_tflite_row_runs_at_neon_rate_on_its_threads():
    """TFLite's CPU kernels use NEON, not the AMX rate of the spec's CPU peak: threads x P-core clock x 16."""
    from profiles._applefit import neon_profile
    from profiles._shipped import spec_profile

    a13 = spec_profile("a13")
    assert a13.units["cpu"].peak("fp32") == pytest.approx(1000.0)
    assert neon_profile(a13, 2).units["cpu"].peak("fp32") == pytest.approx(2 * 2.65 * 16)
    assert neon_profile(a13, 1).units["cpu"].peak("fp16") == pytest.approx(2.65 * 16)
    a11 = spec_profile("a11")  # no AMX: its spec peak is the 2-core NEON estimate already
    assert neon_profile(a11, 2).units["cpu"].peak("fp32") == pytest.approx(
        a11.units["cpu"].peak("fp32"), rel=1e-3
    )
    assert neon_profile(a13, 1).units["gpu"] == a13.units["gpu"]
    cpu = a13.units["cpu"]
    blank = replace(a13, units={**a13.units, "cpu": replace(cpu, peak_gflops={
        "fp32": replace(cpu.peak_gflops["fp32"], source="a guess")})})  # fmt: skip
    with pytest.raises(ProfileError, match="states no P-core clock"):
        neon_profile(blank, 1)


@pytest.mark.slow
@needs_rows
def test_fit_predicts_exactly_what_the_shipped_profiles_predict(evidence):
    """The fit's vectorised predictions and ``estimate_graph`` on the written profiles agree on every row."""
    from profiles._applefit import _UNITS_OF, _graph, build_model, neon_profile, predict
    from profiles._cost import restrict_units, schedule
    from profiles._quant import parse_quant
    from profiles._shipped import spec_profile

    rows, _ = evidence
    model = build_model(rows, {d: spec_profile(d) for d in DEVICES})
    theta = _theta_from_profiles(model)
    fitted = predict(model, theta)
    for i, r in enumerate(rows.itertuples()):
        prof = restrict_units(load_profile(r.device), _UNITS_OF[r.units])
        if r.tool == "tflite_cpu":
            prof = neon_profile(prof, r.threads)
        shipped = schedule(_graph(r.model, int(r.input)), prof, parse_quant(r.quant)).total_ms
        assert shipped == pytest.approx(fitted[i], rel=1e-4), r.label


def _theta_from_profiles(model):
    """Parameters read back from the shipped profiles (a14's Neural Engine, a13's CPU and GPU)."""
    from profiles._applefit import CLOCK_REF, clock
    from profiles._shipped import spec_profile

    theta = {}
    for unit, dev in (("ane", "a14"), ("gpu", "a13"), ("cpu", "a13")):
        spec = spec_profile(dev)
        c = load_profile(dev).units[unit].costs
        clk = clock(spec, unit) if unit in CLOCK_REF else 1.0
        theta.update(
            {
                ("unit", unit, "eff_conv"): math.log(c.efficiency["conv"]),
                ("unit", unit, "eff_pw"): math.log(c.efficiency["default"]),
                ("unit", unit, "eff_dw"): math.log(c.efficiency["dw"]),
                ("unit", unit, "mem"): math.log(c.mem_efficiency["default"]),
                ("unit", unit, "onchip"): math.log(c.onchip_ratio),
                ("unit", unit, "layer_us"): math.log(c.overhead_us["conv"] * clk),
                ("unit", unit, "elt_us"): math.log(c.overhead_us["default"] * clk),
                ("unit", unit, "inference_us"): math.log(c.inference_overhead_us),
                ("unit", unit, "int8"): math.log(c.int8_speedup),
            }
        )
    for d in DEVICES:
        for unit, u in load_profile(d).units.items():
            theta[("chip", d, unit)] = math.log(u.costs.time_scale)
    return theta


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
#: How far a reproduced number may sit from the shipped one. The bounded least-squares fits (one per held-out
#: fold, from two starts, on the smooth objective of ``profiles._cost.overlapped``) round differently on
#: different CPUs and BLAS builds: perturbing every published latency by 1e-11 moves held-out predictions by up
#: to 0.5% and the full fit's terms by about 1e-6 (2026-12-02). With the hard max and loose tolerances they had
#: before, the same perturbation, and two machines, moved held-out figures by 3 points and a CPU interval by
#: 50% (p90 x2.61 against x3.90). A change to the evidence, the bounds or the model moves them far more (e.g.
#: the A16 / A17 Pro Xcode rows' source-out level: +37% -> +12%).
RTOL, ATOL = 0.05, 0.01


def _tolerance(line: str, x: float, y: float) -> float:
    """A percentage error (a ``*_pct`` key or a number followed by %) is 100 x (ratio - 1): its noise is
    relative to the ratio, so it gets RTOL of ``100 + |pct|`` points; every other number RTOL of itself."""
    if "pct" in line or "%" in line:
        return ATOL + RTOL * (100.0 + max(abs(x), abs(y)))
    return ATOL + RTOL * max(abs(x), abs(y))


def _float_noise_mismatches(got: str, shipped: str) -> list[str]:
    """Where two dumped profiles differ by more than floating-point noise: any text, or a number beyond
    :func:`_tolerance`."""
    if _NUMBER.sub("#", got) != _NUMBER.sub("#", shipped):
        return ["the text differs (not only numbers)"]
    bad = []
    for a, b in zip(got.splitlines(), shipped.splitlines(), strict=True):
        pairs = zip(map(float, _NUMBER.findall(a)), map(float, _NUMBER.findall(b)), strict=True)
        bad += [f"{x:g} vs shipped {y:g} in {a[:60]!r}" for x, y in pairs if abs(x - y) > _tolerance(a, x, y)]
    return bad


def test_the_reproduction_check_tolerates_rounding_noise_and_nothing_more() -> None:
    shipped = 'loo_pct = -2.81\nq05 = 0.6238\nnote = "x1.37"\n'
    assert _float_noise_mismatches('loo_pct = -2.74\nq05 = 0.6227\nnote = "x1.37"\n', shipped) == []
    assert _float_noise_mismatches('loo_pct = -2.81\nq05 = 0.6238\nnote = "x1.52"\n', shipped)
    assert _float_noise_mismatches('loo_pct = -9.5\nq05 = 0.6238\nnote = "x1.37"\n', shipped)
    assert _float_noise_mismatches('loo_pct = -2.81\nq05 = 0.6238\nnote = "y1.37"\n', shipped)
    # a held-out error of 8.1% against 7.5%: the prediction moved 0.5%, noise; 8.1% against 14%: not
    assert _float_noise_mismatches("loo_pct = 8.1\n", "loo_pct = 7.52\n") == []
    assert _float_noise_mismatches("loo_pct = 8.1\n", "loo_pct = 14.0\n")
    assert (
        _float_noise_mismatches('worst_row = "A13 GPU: +186.2%"\n', 'worst_row = "A13 GPU: +183.3%"\n') == []
    )
    assert _float_noise_mismatches("q90 = 2.61\n", "q90 = 3.9\n")


@needs_rows
@pytest.mark.slow
def test_shipped_profiles_are_what_the_calibration_reproduces(tmp_path, monkeypatch):
    """Re-run the whole calibration (fit + grouped validation) and compare with profiles/devices/*.toml, up to
    the floating-point noise between machines (:data:`RTOL`, :data:`ATOL`)."""
    from profiles._schema import dump_profile
    from profiles._shipped import calibrate_shipped

    res = calibrate_shipped()
    for d in DEVICES:
        bad = _float_noise_mismatches(dump_profile(res.profiles[d]), dump_profile(load_profile(d)))
        assert not bad, f"{d}: rerun benchmarks/apple_calibration.py --write ({len(bad)} differ: {bad[:5]})"
    assert np.isfinite(res.rows["source_pct"]).all()
