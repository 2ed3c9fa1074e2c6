"""How the shipped Apple profiles are calibrated, validated and given prediction intervals.

1. Evidence: every usable Core ML row of ``shared/reference/apple-published-latencies.csv`` and
   ``apple-latencies-more.csv``, and TFLite's fp32 rows of A11-A13 through a runtime term
   (:func:`profiles._evidence.load_evidence`, with the reason for each row left out). The validation
   figures and intervals a profile stores are those of Core ML rows: what it predicts.
2. One bounded fit for all chips (:mod:`profiles._applefit`): unit costs shared by every chip within their
   physical ranges, chips differing through their spec numbers, plus shrunk chip and tool terms.
3. Grouped cross-validation, each fold a refit without the rows it predicts (from two starts, the full fit
   and the priors' centres, keeping the lower cost: the bounded fit has local minima, and a held-out
   prediction must not depend on where the optimiser started): leave-one-**network**-out
   (every width, depth and scheme of one design), leave-one-**source**-out (one publication / harness),
   leave-one-**chip**-out (what a spec-derived chip's prediction is worth) and leave-one-row-out (for
   reference only: a row's near-duplicates stay in).
4. Intervals (what a new network on that chip and unit may measure): for a calibrated (chip, unit),
   quantiles of measured / predicted over its leave-one-network-out rows; with fewer than
   :data:`MIN_RESIDUALS` own rows, those of every calibrated chip on that unit; for a spec-derived (chip,
   unit), the leave-one-chip-out rows of every calibrated chip on that unit.
5. Profiles: the shared costs with the chip's term folded in (``calibrated`` units) or without it
   (``spec-derived``), the validation figures, active bounds and intervals in ``[calibration]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from profiles._applefit import PARAMS, Model, build_model, fit, predict, profile_costs, tool_factor
from profiles._evidence import MORE, PUBLISHED, RUNTIMES, load_evidence
from profiles._registry import DEVICES, DEVICES_DIR, load_profile
from profiles._schema import (
    INTERVAL_LEVELS,
    Calibration,
    CalibrationRow,
    DeviceProfile,
    UnitCosts,
    dump_profile,
)

__all__ = ["FOLDS", "MIN_RESIDUALS", "ShippedCalibration", "calibrate_shipped", "spec_profile"]

#: Grouped validation: name -> evidence column whose values are left out one at a time.
FOLDS = {"network": "family", "source": "source", "chip": "device", "row": None}
#: Fewest held-out residuals of one chip and unit behind a chip-specific interval.
MIN_RESIDUALS = 8
_NOTE = (
    "one bounded fit for every chip on {n} published rows ({files}; {other} of them TFLite's, through a "
    "runtime term); unit costs shared by all chips "
    "within their physical ranges, this chip's spec rates and bandwidth, {terms}; predicts an Xcode "
    "performance report (median)"
)


#: Costs that leave a unit's spec numbers alone (the fit's design reads specs only).
_NEUTRAL = UnitCosts(
    efficiency={"default": 1.0}, mem_efficiency={"default": 1.0}, overhead_us={}, inference_overhead_us=0.0
)


def spec_profile(name: str) -> DeviceProfile:
    """The shipped device's spec numbers (rates, bandwidth, fallbacks) with neutral costs: what is refitted."""
    p = load_profile(name)
    return replace(p, units={n: replace(u, costs=_NEUTRAL) for n, u in p.units.items()})


@dataclass(frozen=True)
class ShippedCalibration:
    """The fit, its held-out predictions per fold kind, and the profiles written from them."""

    model: Model
    theta: dict
    active: list[str]
    heldout: dict[str, np.ndarray]  # fold kind -> held-out prediction per evidence row (ms)
    excluded: Any  # DataFrame: label, reason
    profiles: dict[str, DeviceProfile]

    @property
    def rows(self) -> Any:
        """The evidence with its held-out predictions and errors (``{fold}_ms``, ``{fold}_pct``)."""
        df = self.model.rows.copy()
        for k, pred in self.heldout.items():
            df[f"{k}_ms"] = pred
            df[f"{k}_pct"] = 100.0 * (pred / df["latency_ms"] - 1.0)
        return df


def _crossval(model: Model, full: dict, kind: str, log: Any) -> np.ndarray:
    rows = model.rows
    col = FOLDS[kind]
    groups = np.arange(len(rows)) if col is None else rows[col].to_numpy()
    out = np.empty(len(rows))
    values = list(dict.fromkeys(groups))
    for j, g in enumerate(values):
        test = np.flatnonzero(groups == g)
        train = np.flatnonzero(groups != g)
        f = min((fit(model, train, start=full), fit(model, train)), key=lambda f: f.cost)
        out[test] = predict(model, f.theta, test) * tool_factor(model, f.theta, test)
        if log and (j + 1) % 20 == 0:
            log(f"  leave-one-{kind}-out: {j + 1}/{len(values)} folds")
    return out


def _quantiles(ratios: np.ndarray) -> dict[str, float]:
    q = {k: float(f"{np.quantile(ratios, lv):.4g}") for k, lv in INTERVAL_LEVELS.items()}
    return {**q, "n": float(len(ratios))}


def _stats(err: np.ndarray) -> tuple[float, float]:
    a = np.abs(err)
    return (round(float(np.median(a)), 2), round(float(a.max()), 2)) if len(a) else (math.nan, math.nan)


def _validation(df: Any, mask: np.ndarray, kinds: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in kinds:
        med, worst = _stats(df.loc[mask, f"{k}_pct"].to_numpy())
        if not math.isnan(med):
            out.update({f"{k}_median_pct": med, f"{k}_worst_pct": worst, f"{k}_rows": float(mask.sum())})
    return out


def _held_out(df: Any, mine: np.ndarray, core: np.ndarray) -> tuple[dict[str, float], np.ndarray, str]:
    """(validation figures, held-out % errors, how they were held out) of the chip's Core ML rows, or of every
    calibrated chip's, left out one chip at a time, where it has none."""
    if (mine & core).any():
        kinds = [k for k in FOLDS if f"{k}_pct" in df and k != "row"]
        err = df.loc[mine & core, "network_pct"].to_numpy()
        return _validation(df, mine & core, kinds), err, "leave-one-network-out"
    err = df.loc[core, "chip_pct"].to_numpy()
    return _validation(df, core, ["chip"]), err, "leave-one-chip-out (all calibrated chips)"


def _profile(name: str, spec: DeviceProfile, res: ShippedCalibration, df: Any, files: str) -> DeviceProfile:
    theta = res.theta
    mine = (df["device"] == name).to_numpy()
    core = ~df["tool"].isin(RUNTIMES).to_numpy()  # what the profiles predict: the figures and intervals
    calibrated = {k[2] for k in theta if k[0] == "chip" and k[1] == name and mine.any()}
    calibrated &= set(df.loc[mine, "unit"])
    tools = {k[1]: math.exp(v) for k, v in theta.items() if k[0] == "tool"}
    chip_terms = {k[2]: math.exp(theta[k]) for k in theta if k[0] == "chip" and k[1] == name}
    terms = "tool terms " + ", ".join(f"{t} x{v:.3g}" for t, v in tools.items()) if tools else "no tool terms"
    units = {}
    for u, unit in spec.units.items():
        basis = "calibrated" if u in calibrated else "spec-derived"
        level = math.exp(theta.get(("level", u), 0.0))
        why = (
            f"time scale x{level * chip_terms[u]:.3g} (the {u} common term x{level:.3g}, this chip's own "
            f"x{chip_terms[u]:.3g} from its rows)"
            if u in calibrated
            else f"no rows on this unit: time scale x{level:.3g}, the {u} common term"
        )
        note = _NOTE.format(n=len(df), other=int((~core).sum()), files=files, terms=f"{why}; {terms}")
        theta_u = theta if u in calibrated else {k: v for k, v in theta.items() if k[:2] != ("chip", name)}
        units[u] = replace(unit, costs=profile_costs(theta_u, spec, u, basis, note))
    validation, err, held = _held_out(df, mine, core)
    rows = tuple(
        CalibrationRow(
            model=f"{t.label} [{t.unit}]",
            quant=t.quant,
            input=int(t.input),
            measured_ms=float(f"{t.latency_ms:.6g}"),
            predicted_ms=float(f"{t.network_ms:.6g}"),
            loo_pct=round(float(t.network_pct), 2),
            source=f"{t.source} ({t.tool})",
        )
        for t in df[mine].itertuples()
    )
    listed = [r for r, c in zip(rows, core[mine], strict=True) if c]
    worst = int(np.argmax(np.abs(err))) if len(err) else 0
    interval, interval_basis = _intervals(name, spec, df[core], calibrated)
    basis = "calibrated" if calibrated else "spec-derived"
    cal = Calibration(
        basis=basis,
        data=f"{files}: {int(mine.sum())} rows for {spec.chip} ({len(df)} in the fit)",
        note=_NOTE.format(n=len(df), other=int((~core).sum()), files=files, terms=terms)
        + f"; errors below: {held}, of Core ML rows",
        loo_median_abs_pct=round(float(np.median(np.abs(err))), 3) if len(err) else None,
        loo_worst_pct=round(float(np.max(np.abs(err))), 3) if len(err) else None,
        worst_row=(listed[worst].model + f": {err[worst]:+.1f}%") if listed else "",
        rows=rows,
        validation=validation,
        bounds=tuple(res.active),
        interval=interval,
        interval_basis=interval_basis,
    )
    return replace(spec, units=units, calibration=cal)


def _intervals(name: str, spec: DeviceProfile, df: Any, calibrated: set[str]) -> tuple[dict, str]:
    """Per unit: quantiles of measured / predicted on held-out rows (see the module docstring)."""
    out, how = {}, []
    for u in spec.units:
        own = df[(df["device"] == name) & (df["unit"] == u)]
        known = df[(df["unit"] == u) & df["device"].isin(_calibrated_devices(df, u))]
        if u in calibrated and len(own) >= MIN_RESIDUALS:
            ratios = own["latency_ms"] / own["network_ms"]
            how.append(f"{u}: its own rows, leave-one-network-out ({len(own)})")
        elif u in calibrated:
            ratios = known["latency_ms"] / known["network_ms"]
            how.append(
                f"{u}: leave-one-network-out rows of every calibrated chip on this unit ({len(known)})"
            )
        else:
            ratios = known["latency_ms"] / known["chip_ms"]
            how.append(f"{u}: leave-one-chip-out rows of every calibrated chip on this unit ({len(known)})")
        if len(ratios):
            out[u] = _quantiles(np.asarray(ratios, dtype=float))
    return out, "; ".join(how)


def _calibrated_devices(df: Any, unit: str) -> list[str]:
    return sorted(set(df.loc[df["unit"] == unit, "device"]))


def calibrate_shipped(
    reference_dir: str | Path | None = None,
    *,
    write: bool = False,
    log: Any = None,
    folds: tuple[str, ...] = ("network", "source", "chip"),
) -> ShippedCalibration:
    """Fit, cross-validate and build every shipped Apple profile; ``write=True`` rewrites their TOML files.

    ``folds`` picks the validations to run; profiles need ``network``, ``source`` and ``chip`` (what they
    store). ``row`` (one refit per row, for reference only) is printed by the benchmark, never stored, so
    the profiles do not depend on it. ``log(str)`` gets progress.
    """
    say = log or (lambda s: None)
    rows, excluded = load_evidence(reference_dir)
    specs = {d: spec_profile(d) for d in DEVICES}
    say(f"{len(rows)} rows ({len(excluded)} left out); building the design")
    model = build_model(rows, specs)
    full = fit(model)
    say(f"fit: cost {full.cost:.1f}; active bounds: {full.active or 'none'}")
    heldout = {}
    for kind in folds:
        heldout[kind] = _crossval(model, full.theta, kind, say)
        say(f"leave-one-{kind}-out done")
    res = ShippedCalibration(model, full.theta, full.active, heldout, excluded, {})
    df = res.rows
    files = f"{PUBLISHED} + {MORE}"
    built = (
        {d: _profile(d, specs[d], res, df, files) for d in DEVICES}
        if {"network", "source", "chip"} <= set(folds)
        else {}
    )
    if write:
        for d, p in built.items():
            (DEVICES_DIR / f"{d}.toml").write_text(dump_profile(p), encoding="utf-8")
    return replace(res, profiles=built)


__all__ += ["PARAMS"]
