"""Every number of a profile with its source, as rows for tables (``compress profile show``)."""

from __future__ import annotations

from profiles._schema import Calibration, ComputeUnit, DeviceProfile, Sourced

__all__ = ["describe_profile", "summary_row"]


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _table(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())


def describe_profile(p: DeviceProfile) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` rows for every number in the profile, spec numbers with their sources."""
    rows: list[tuple[str, str, str]] = [
        ("device", f"{p.name}: {p.title}", p.path),
        ("chip", p.chip, ""),
        ("default quant", p.default_quant, ""),
        _sourced("RAM", p.ram_gb, " GB"),
        _sourced("unit switch cost", p.switch_cost_us, " us"),
    ]
    if p.ane_fallbacks:
        rows.append(("Neural Engine fallbacks", ", ".join(p.ane_fallbacks), "hollance/neural-engine docs"))
    for name, u in p.units.items():
        rows += _unit_rows(name, u)
    return rows + _calibration_rows(p.calibration)


def _sourced(key: str, s: Sourced, unit: str = "") -> tuple[str, str, str]:
    return (key, f"{_fmt(s.value)}{unit}", s.source)


def _unit_rows(name: str, u: ComputeUnit) -> list[tuple[str, str, str]]:
    """A compute unit's rows: cores, bandwidth, peak rates, then its fitted or spec-derived cost terms."""
    rows = [_sourced(f"{name}: cores", u.cores), _sourced(f"{name}: bandwidth", u.bandwidth_gbs, " GB/s")]
    for prec, s in u.peak_gflops.items():
        rows.append(_sourced(f"{name}: peak {prec}", s, " GFLOP/s"))
    c = u.costs
    how = f"{c.basis}: {c.note}" if c.note else c.basis
    rows.append((f"{name}: efficiency (of peak)", _table(c.efficiency), how))
    rows.append((f"{name}: bandwidth efficiency", _table(c.mem_efficiency), how))
    rows.append((f"{name}: per-layer overhead (us)", _table(c.overhead_us), how))
    if c.weight_mem_efficiency:
        rows.append((f"{name}: weight bandwidth efficiency", _table(c.weight_mem_efficiency), how))
    if c.channel_block:
        slow = _table(c.unaligned_slowdown) if c.unaligned_slowdown else "none"
        rows.append((f"{name}: slowdown off {c.channel_block}-channel blocks", slow, how))
    rows.append((f"{name}: per-inference overhead", f"{_fmt(c.inference_overhead_us)} us", how))
    if name == "ane" or c.int8_speedup != 1.0:
        rows.append((f"{name}: int8 rate multiplier", _fmt(c.int8_speedup), how))
    if c.onchip_ratio != 1.0 or c.overlap != "none" or c.time_scale != 1.0:
        what = f"on-chip reads x{_fmt(c.onchip_ratio)}, overlap {c.overlap}, time scale x{_fmt(c.time_scale)}"
        rows.append((f"{name}: memory and chip term", what, how))
    flags = f"fuses={u.fuses}, holds compressed weights={u.holds_compressed_weights}"
    rows.append((f"{name}: runtime", f"{flags}, rows padded to {u.pad_last_axis_bytes} B", "Core ML docs"))
    return rows


def _calibration_rows(cal: Calibration) -> list[tuple[str, str, str]]:
    """The calibration's rows: basis and error, held-out validation, prediction intervals, every data row."""
    err = "" if cal.loo_median_abs_pct is None else f", held-out median |error| {cal.loo_median_abs_pct:.1f}%"
    rows = [("calibration", f"{cal.basis}{err}", cal.data or cal.note)]
    if cal.worst_row:
        rows.append(("calibration: worst row", cal.worst_row, ""))
    for by in ("network", "source", "chip", "row"):
        if f"{by}_median_pct" in cal.validation:
            v = cal.validation
            rows.append(
                (
                    f"held-out error, leave-one-{by}-out",
                    f"median {v[f'{by}_median_pct']:.1f}%, worst {v[f'{by}_worst_pct']:.1f}% "
                    f"({int(v.get(f'{by}_rows', 0))} rows)",
                    "benchmarks/apple_calibration.py",
                )
            )
    for unit, qs in cal.interval.items():
        rows.append(
            (
                f"{unit}: prediction interval",
                f"x{qs['q10']:.3g} .. x{qs['q90']:.3g} (p10-p90), x{qs['q05']:.3g} .. x{qs['q95']:.3g} "
                f"(p5-p95) of the prediction; {int(qs.get('n', 0))} held-out rows",
                cal.interval_basis,
            )
        )
    if cal.bounds:
        rows.append(("active bounds", "; ".join(cal.bounds), "profiles/_applefit.py PARAMS"))
    for r in cal.rows:
        rows.append(
            (
                f"  row {r.model} [{r.quant}] @{r.input}",
                f"measured {_fmt(r.measured_ms)} ms, predicted {_fmt(r.predicted_ms)} ms ({r.loo_pct:+.1f}%)",
                r.source or "leave-one-out",
            )
        )
    return rows


def summary_row(p: DeviceProfile) -> dict[str, str]:
    """One line per device for ``compress profile list``."""

    def peak(unit: str, prec: str) -> str:
        u = p.units.get(unit)
        if u is None or prec not in u.peak_gflops:
            return "-"
        return f"{u.peak_gflops[prec].value / 1000:.3g}"

    cal = p.calibration
    return {
        "device": p.name,
        "chip": p.chip,
        "units": " ".join(p.units),
        "ANE fp16 TOPS": peak("ane", "fp16"),
        "ANE int8 TOPS": peak("ane", "int8"),
        "GPU fp16 TFLOPS": peak("gpu", "fp16"),
        "CPU fp32 TFLOPS": peak("cpu", "fp32"),
        "GB/s": f"{next(iter(p.units.values())).bandwidth_gbs.value:.4g}",
        "RAM GB": f"{p.ram_gb.value:g}",
        "basis": p.basis,
        "held-out": "-" if cal.loo_median_abs_pct is None else f"{cal.loo_median_abs_pct:.1f}%",
        "p10-p90": _interval(p),
    }


def _interval(p: DeviceProfile) -> str:
    """The main unit's p10-p90 band as multipliers of the prediction (``x0.8-1.3``), ``-`` if none."""
    unit = next((u for u in ("ane", "gpu", "cpu") if u in p.calibration.interval), None)
    if unit is None:
        return "-"
    qs = p.calibration.interval[unit]
    return f"{unit} x{qs['q10']:.2g}-{qs['q90']:.2g}"
