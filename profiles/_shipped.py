"""How the shipped profiles are calibrated on ``shared/reference/apple-published-latencies.csv``.

1. Every device starts from spec-derived priors: its own peak rates and bandwidth (with sources) and the
   same assumed fractions of peak per unit kind (:data:`PRIORS`).
2. For each chip with published rows, a *pooled* fit on the rows of all **other** chips (each with its own
   spec rates) gives shared multipliers; applied to the chip's priors, they are its prior for step 3, so a
   chip's prior never sees its own rows.
3. :func:`profiles.calibrate` fits the chip's own multipliers around that prior, with a leave-one-out
   prediction for every row.
4. Chips without published rows borrow the fitted costs (efficiencies, overheads, int8 rate) of the nearest
   calibrated generation (:data:`DONORS`); their own spec peak rates and bandwidth scale them. They are marked
   ``spec-derived``. GPU costs everywhere come from the A11 row (the only published GPU-only measurement).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from profiles._calibrate import (
    _fit,
    _free,
    _norm_chip,
    _rows,
    apply_params,
    calibrate,
    load_measurements,
    reference_tool,
)
from profiles._registry import DEVICES, DEVICES_DIR, load_profile
from profiles._schema import Calibration, DeviceProfile, UnitCosts, dump_profile

__all__ = ["DONORS", "PRIORS", "calibrate_shipped", "prior_profile"]

#: Spec-derived cost priors per unit kind (assumed fractions of the spec peak; no measurement behind them).
PRIORS = {
    "ane": UnitCosts(
        efficiency={"conv": 0.35, "pw": 0.35, "dw": 0.05, "gconv": 0.1, "linear": 0.2, "default": 0.2},
        mem_efficiency={"default": 0.7},
        overhead_us={"default": 2.0, "reshape": 0.0},
        inference_overhead_us=40.0,
        basis="spec-derived",
        note="prior: assumed fractions of the spec peak",
    ),
    "gpu": UnitCosts(
        efficiency={"conv": 0.4, "pw": 0.4, "dw": 0.08, "gconv": 0.15, "linear": 0.2, "default": 0.2},
        mem_efficiency={"default": 0.6},
        overhead_us={"default": 15.0, "reshape": 0.0},
        inference_overhead_us=300.0,
        basis="spec-derived",
        note="prior: assumed fractions of the spec peak",
    ),
    "cpu": UnitCosts(
        efficiency={"conv": 0.5, "pw": 0.6, "dw": 0.1, "gconv": 0.2, "linear": 0.4, "default": 0.3},
        mem_efficiency={"default": 0.5},
        overhead_us={"default": 5.0, "reshape": 0.0},
        inference_overhead_us=50.0,
        basis="spec-derived",
        note="prior: assumed fractions of the spec peak; no published CPU-only measurement to fit",
    ),
}
#: Device without published rows -> calibrated device whose fitted Neural Engine costs it borrows.
DONORS = {"a13": "a14", "a15": "a16", "m1": "a14", "m2": "a16", "m3": "a16", "m4": "a17pro"}
GPU_DONOR = "a11"
DEFAULT_CSV = "shared/reference/apple-published-latencies.csv"


def prior_profile(name: str) -> DeviceProfile:
    """The shipped device's spec numbers with spec-derived cost priors and no calibration."""
    p = load_profile(name)
    units = {n: replace(u, costs=PRIORS[n]) for n, u in p.units.items()}
    return replace(p, units=units, calibration=Calibration(basis="spec-derived", note=_a11_note(p)))


def _a11_note(p: DeviceProfile) -> str:
    if p.has_ane:
        return ""
    return "A11: third-party Core ML cannot use the Neural Engine (apple-devices.md §3.2); CPU + GPU only."


def _borrow(target: DeviceProfile, donor: DeviceProfile, unit: str, why: str) -> DeviceProfile:
    costs = replace(donor.units[unit].costs, basis="spec-derived", note=why)
    units = dict(target.units)
    units[unit] = replace(units[unit], costs=costs)
    return replace(target, units=units)


def calibrate_shipped(
    csv: str | Path = DEFAULT_CSV, *, write: bool = False, log: Any = None
) -> dict[str, Any]:
    """Calibrate all shipped profiles on the published CSV; returns {device: CalibrationResult or profile}.

    With ``write=True`` the TOML files in ``profiles/devices/`` are rewritten. ``log(str)`` gets progress.
    """
    say = log or (lambda s: None)
    df = load_measurements(csv)
    priors = {d: prior_profile(d) for d in DEVICES}
    chips = {_norm_chip(priors[d].chip): d for d in DEVICES}
    rows_by = {chips[c]: _rows(df[df["chip"].map(_norm_chip) == c], None)[0] for c in chips}
    with_rows = [d for d in DEVICES if rows_by[d]]
    results: dict[str, Any] = {}
    ref = reference_tool([r for d in with_rows for r in rows_by[d]])
    for d in with_rows:
        others = [o for o in with_rows if o != d]
        other_rows = [r for o in others for r in rows_by[o]]
        mine = set(_free(priors[d], rows_by[d]))
        units = sorted({k for o in others for k in _free(priors[o], rows_by[o])} & mine)
        keys = units + [("tool", t) for t in sorted({r.tool for r in other_rows} - {ref})]
        theta = _fit([priors[o] for o in others], [rows_by[o] for o in others], keys, prior_scale=2.0)
        say(f"{d}: prior from {len(others)} other chips ({len(other_rows)} rows)")
        base = apply_params(priors[d], theta)
        sub = df[df["chip"].map(_norm_chip) == _norm_chip(priors[d].chip)]
        offsets = {k: v for k, v in theta.items() if k[0] == "tool"}
        data = f"{Path(csv).name}: {len(rows_by[d])} rows for {priors[d].chip}"
        results[d] = calibrate(base, sub, data=data, tool=ref, tool_offsets=offsets)
        say(f"{d}: leave-one-out median |error| {results[d].loo_median_abs_pct:.1f}%")
    final = {d: results[d].profile for d in with_rows}
    gpu = final[GPU_DONOR]
    for d in DEVICES:
        p = final.get(d, priors[d])
        if d != GPU_DONOR:
            p = _borrow(
                p, gpu, "gpu", f"GPU costs fitted on the {gpu.chip} row, scaled by this GPU's spec rates"
            )
        if d in DONORS:
            donor = final[DONORS[d]]
            why = f"Neural Engine costs borrowed from {donor.name} (calibrated), scaled by this chip's spec"
            p = _borrow(p, donor, "ane", why)
            p = replace(p, calibration=Calibration(basis="spec-derived", note=why))
        final[d] = p
        if write:
            (DEVICES_DIR / f"{d}.toml").write_text(dump_profile(p), encoding="utf-8")
    return {"results": results, "profiles": final}
