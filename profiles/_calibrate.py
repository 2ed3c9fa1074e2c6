"""Calibration: fit a profile's free cost parameters to measured latencies, with leave-one-out error.

Measurements use the CSV format of ``shared/reference/apple-published-latencies.csv``: one row per
(model, chip, weights, activations, input, latency_ms), optionally ``approx`` (``yes`` for values read off a
plot) and ``tool``. Each row's model is a reference model (:mod:`profiles.reference_models`) or one passed in
``reference_models``; ``weights``/``activations`` map to a scheme (``fp16``/``fp16`` -> fp16,
``palettize-4bit`` -> pal4, ``int8``/``fp16`` -> int8, ``int8``/``int8`` -> w8a8). Sparsity rows are skipped
(sparsity is not a scheme of this toolkit).

The fitted parameters are log-multipliers on the profile's current costs, per compute unit: ``compute``
(every op class's efficiency), ``dw`` (depthwise efficiency on top), ``mem`` (bandwidth efficiency),
``layer`` (per-layer overheads), ``inference`` (per-inference overhead) and, on the Neural Engine, ``int8``
(the w8a8 rate). The fit minimises squared log errors ``log(predicted / measured) / sigma_row`` plus a
Gaussian prior pulling every multiplier towards 1 (the profile's current values), so a device with a single
row moves only as far as that row justifies. ``sigma_row`` is 0.05 for a clean measurement, 0.15 for a value
read off a plot (``approx = yes``) and 0.30 for whole-app timings (``tool`` containing ``app``), whose
pre- and post-processing the model does not describe. Leave-one-out: each row is predicted by a fit made
without it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._graph import Graph, extract_graph
from profiles._quant import parse_quant
from profiles._registry import load_profile
from profiles._schema import Calibration, CalibrationRow, ComputeUnit, DeviceProfile, UnitCosts

__all__ = ["PARAMS", "CalibrationResult", "apply_params", "calibrate", "load_measurements", "predict_ms"]

#: Free parameters: (unit, knob) -> prior sigma of the log-multiplier.
PARAMS: dict[tuple[str, str], float] = {
    ("ane", "compute"): 0.7,
    ("ane", "dw"): 0.7,
    ("ane", "mem"): 0.7,
    ("ane", "layer"): 1.0,
    ("ane", "inference"): 1.0,
    ("ane", "int8"): 0.5,
    ("gpu", "compute"): 0.7,
    ("gpu", "dw"): 0.7,
    ("gpu", "layer"): 1.0,
    ("gpu", "inference"): 1.0,
    ("ane", "elt"): 1.0,
    ("gpu", "elt"): 1.0,
}
#: Prior sigma (ms) of a measurement tool's additive offset against the reference tool.
TOOL_SIGMA_MS = 0.5
#: Op classes whose per-layer overhead the ``elt`` knob scales (pooling, SE gates, residual adds, cat).
_ELT = ("gpool", "pool", "eltwise", "upsample", "cat")
_REQUIRED = ("model", "chip", "weights", "activations", "input", "latency_ms")


def norm_chip(chip: str) -> str:
    return re.sub(r"[\s_-]", "", str(chip)).lower()


def scheme_of(weights: str, activations: str) -> str | None:
    w, a = str(weights).strip().lower(), str(activations).strip().lower()
    if w.startswith("sparse"):
        return None
    if a == "int8":
        return "w8a8"
    m = re.match(r"palettize-(\d)bit(?:-g(\d+))?", w)
    if m:
        return f"pal{m.group(1)}" + (f"-g{m.group(2)}" if m.group(2) else "")
    if w in ("fp16", "fp32", "int8") or w.startswith("pal"):
        parse_quant(w)
        return w
    raise ProfileError(
        f"measurement row has weights={weights!r}, activations={activations!r}: not a known scheme"
    )


def _sigma(row: Mapping[str, Any]) -> float:
    if "app" in str(row.get("tool", "")).lower():
        return 0.30
    return 0.15 if str(row.get("approx", "no")).strip().lower() in ("yes", "true", "1") else 0.05


def load_measurements(measurements: Any) -> Any:
    """A measurement table as a DataFrame (from a DataFrame or a CSV path), checked for the needed columns."""
    import pandas as pd

    if isinstance(measurements, pd.DataFrame):
        df = measurements.copy()
    else:
        try:
            df = pd.read_csv(measurements)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ProfileError(f"cannot read measurements {str(measurements)!r}: {exc}") from exc
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ProfileError(
            f"measurements lack column(s) {missing}; need {', '.join(_REQUIRED)} "
            "(the format of shared/reference/apple-published-latencies.csv)"
        )
    bad = pd.to_numeric(df["latency_ms"], errors="coerce")
    if bad.isna().any() or (bad <= 0).any():
        rows = [int(i) for i in df.index[bad.isna() | (bad <= 0)]]
        raise ProfileError(f"measurements: latency_ms must be a positive number; bad rows {rows}")
    return df


# ----------------------------------------------------------------------------------------------------------
# parameters


def _scaled(costs: UnitCosts, theta: Mapping[str, float]) -> UnitCosts:
    def scale(table: dict[str, float], f: float, cap: float | None = None) -> dict[str, float]:
        return {k: min(v * f, cap) if cap else v * f for k, v in table.items()}

    eff = scale(costs.efficiency, math.exp(theta.get("compute", 0.0)), cap=1.0)
    if "dw" in theta:
        base = costs.efficiency.get("dw", costs.efficiency.get("default", 1.0)) * math.exp(
            theta.get("compute", 0.0)
        )
        eff["dw"] = min(1.0, base * math.exp(theta["dw"]))
    overhead = scale(costs.overhead_us, math.exp(theta.get("layer", 0.0)))
    if "elt" in theta:
        for c in _ELT:
            overhead[c] = overhead.get(c, overhead.get("default", 0.0)) * math.exp(theta["elt"])
    return replace(
        costs,
        efficiency=eff,
        mem_efficiency=scale(costs.mem_efficiency, math.exp(theta.get("mem", 0.0))),
        overhead_us=overhead,
        inference_overhead_us=costs.inference_overhead_us * math.exp(theta.get("inference", 0.0)),
        int8_speedup=costs.int8_speedup * math.exp(theta.get("int8", 0.0)),
    )


def apply_params(profile: DeviceProfile, theta: Mapping[tuple[str, str], float]) -> DeviceProfile:
    """The profile with its unit costs multiplied by ``exp(theta[(unit, knob)])``."""
    units: dict[str, ComputeUnit] = {}
    for name, unit in profile.units.items():
        knobs = {k: v for (u, k), v in theta.items() if u == name}
        units[name] = replace(unit, costs=_scaled(unit.costs, knobs)) if knobs else unit
    return replace(profile, units=units)


# ----------------------------------------------------------------------------------------------------------
# rows and predictions

_GRAPHS: dict[tuple[str, int], Graph] = {}


def _graph(name: str, size: int, reference_models: Mapping[str, Any] | None) -> Graph:
    from profiles.reference_models import reference_model, reference_name

    if reference_models and name in reference_models:
        item = reference_models[name]
        if isinstance(item, Graph):
            return item
        model, shape = item if isinstance(item, tuple) else (item, (1, 3, size, size))
        return extract_graph(model, shape, name=name)
    key = (reference_name(name), size)
    if key not in _GRAPHS:
        _GRAPHS[key] = extract_graph(reference_model(key[0]), (1, 3, size, size), name=key[0])
    return _GRAPHS[key]


@dataclass(frozen=True)
class _Row:
    label: str
    model: str
    quant: str
    size: int
    measured: float
    sigma: float
    graph: Graph
    source: str
    tool: str = ""


def _rows(df: Any, reference_models: Mapping[str, Any] | None) -> tuple[list[_Row], list[str]]:
    rows, skipped = [], []
    for _, r in df.iterrows():
        scheme = scheme_of(r["weights"], r["activations"])
        label = f"{r['model']} {r['weights']}/{r['activations']}"
        if scheme is None:
            skipped.append(f"{label} (sparsity is not modelled)")
            continue
        m = re.match(r"\s*(\d+)", str(r["input"]))
        if not m:
            raise ProfileError(f"measurement row {label!r}: input {r['input']!r} is not a resolution")
        size = int(m.group(1))
        graph = _graph(str(r["model"]), size, reference_models)
        src = str(r.get("source", ""))
        tool = str(r.get("tool", ""))
        rows.append(
            _Row(label, str(r["model"]), scheme, size, float(r["latency_ms"]), _sigma(r), graph, src, tool)
        )
    return rows, skipped


def predict_ms(profile: DeviceProfile, graph: Graph, quant: str) -> float:
    """Predicted latency (ms) of a graph on a profile: the cost model's total only (no sizes)."""
    from profiles._cost import schedule

    return schedule(graph, profile, parse_quant(quant)).total_ms


# ----------------------------------------------------------------------------------------------------------
# fitting


def _units_used(profile: DeviceProfile, rows: list[_Row]) -> set[str]:
    from profiles._cost import schedule

    return {u for r in rows for u in schedule(r.graph, profile, parse_quant(r.quant)).used}


def _free(profile: DeviceProfile, rows: list[_Row]) -> list[tuple[str, str]]:
    """Parameters the rows can inform: knobs of the units they run on (int8 only with w8a8 rows)."""
    used = _units_used(profile, rows)
    keys = [k for k in PARAMS if k[0] in used]
    if not any(r.quant == "w8a8" for r in rows):
        keys = [k for k in keys if k[1] != "int8"]
    return keys


def reference_tool(rows: list[_Row]) -> str:
    """The tool whose latencies a profile predicts: the most frequent Xcode tool, else the most frequent."""
    tools = [r.tool for r in rows]
    xcode = [t for t in tools if "xcode" in t.lower()]
    pool = xcode or tools
    return max(sorted(set(pool)), key=pool.count) if pool else ""


def _row_ms(profile: DeviceProfile, row: _Row, theta: Mapping[Any, float]) -> float:
    return max(1e-4, predict_ms(profile, row.graph, row.quant) + theta.get(("tool", row.tool), 0.0))


def _sigmas(keys: list[tuple[str, str]], prior_scale: float) -> np.ndarray:
    return np.array([TOOL_SIGMA_MS if k[0] == "tool" else PARAMS[k] * prior_scale for k in keys])


def _fit(
    bases: list[DeviceProfile],
    rows_by: list[list[_Row]],
    keys: list[tuple[str, str]],
    prior_scale: float,
    means: Mapping[tuple[str, str], float] | None = None,
) -> dict[tuple[str, str], float]:
    """Shared parameters for all (profile, rows) pairs by regularised least squares.

    Unit knobs are log-multipliers with prior N(0, sigma); ``("tool", name)`` keys are additive ms offsets
    of that measurement tool with prior N(means[key], TOOL_SIGMA_MS).
    """
    from scipy.optimize import least_squares

    sig = _sigmas(keys, prior_scale)
    mu = np.array([(means or {}).get(k, 0.0) for k in keys])
    if not keys or sum(len(r) for r in rows_by) == 0:
        return dict(zip(keys, mu, strict=True))

    def residuals(x: np.ndarray) -> np.ndarray:
        theta = dict(zip(keys, x, strict=True))
        res = []
        for base, rows in zip(bases, rows_by, strict=True):
            prof = apply_params(base, theta)
            res += [math.log(_row_ms(prof, r, theta) / r.measured) / r.sigma for r in rows]
        return np.concatenate([np.array(res), (x - mu) / sig])

    fit = least_squares(residuals, mu.copy(), diff_step=1e-3, x_scale=sig, max_nfev=60 * len(keys))
    return dict(zip(keys, fit.x, strict=True))


def _keys(profile: DeviceProfile, rows: list[_Row], ref_tool: str) -> list[tuple[str, str]]:
    tools = sorted({r.tool for r in rows} - {ref_tool})
    return _free(profile, rows) + [("tool", t) for t in tools]


@dataclass(frozen=True)
class CalibrationResult:
    """A calibrated profile, the fitted multipliers and the per-row leave-one-out table."""

    profile: DeviceProfile
    params: dict[tuple[str, str], float]
    table: Any  # pandas DataFrame: model, quant, input, measured_ms, fitted_ms, loo_ms, loo_pct, sigma
    skipped: tuple[str, ...] = ()
    tool_offsets: dict[str, float] | None = None
    reference_tool: str = ""

    @property
    def loo_median_abs_pct(self) -> float:
        return float(self.table["loo_pct"].abs().median()) if len(self.table) else float("nan")

    @property
    def worst(self) -> tuple[str, float]:
        """(row label, leave-one-out % error) of the worst row."""
        i = self.table["loo_pct"].abs().idxmax()
        return str(self.table.loc[i, "row"]), float(self.table.loc[i, "loo_pct"])


def _table(rows: list[_Row], fitted: list[float], loo: list[float]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "row": [r.label for r in rows],
            "model": [r.model for r in rows],
            "quant": [r.quant for r in rows],
            "input": [r.size for r in rows],
            "measured_ms": [r.measured for r in rows],
            "fitted_ms": fitted,
            "loo_ms": loo,
            "loo_pct": [100.0 * (p / r.measured - 1.0) for p, r in zip(loo, rows, strict=True)],
            "sigma": [r.sigma for r in rows],
            "tool": [r.tool for r in rows],
        }
    )


def _with_calibration(
    profile: DeviceProfile, table: Any, data: str, note: str, basis: str, fitted_units: set[str]
) -> DeviceProfile:
    rows = tuple(
        CalibrationRow(
            model=str(t.row),
            quant=str(t.quant),
            input=int(t.input),
            measured_ms=float(f"{t.measured_ms:.6g}"),
            predicted_ms=float(f"{t.loo_ms:.6g}"),
            loo_pct=round(float(t.loo_pct), 2),
        )
        for t in table.itertuples()
    )
    err = table["loo_pct"].abs()
    worst = int(err.values.argmax()) if len(err) else 0
    cal = Calibration(
        basis=basis,
        data=data,
        note=note,
        loo_median_abs_pct=round(float(err.median()), 3) if len(err) else None,
        loo_worst_pct=round(float(err.max()), 3) if len(err) else None,
        worst_row=f"{rows[worst].model}: {table['loo_pct'].iloc[worst]:+.1f}%" if rows else "",
        rows=rows,
    )
    units = {
        n: replace(u, costs=replace(u.costs, basis=basis, note=note)) if n in fitted_units else u
        for n, u in profile.units.items()
    }
    return replace(profile, units=units, calibration=cal)


def calibrate(
    profile: str | DeviceProfile,
    measurements: Any,
    *,
    reference_models: Mapping[str, Any] | None = None,
    prior_scale: float = 1.0,
    data: str = "",
    tool: str | None = None,
    tool_offsets: Mapping[tuple[str, str], float] | None = None,
) -> CalibrationResult:
    """Fit ``profile``'s free parameters to the rows of ``measurements`` for its chip.

    ``measurements``: a DataFrame or CSV path in the format of ``apple-published-latencies.csv``; rows whose
    ``chip`` differs from the profile's are ignored. ``reference_models`` maps extra model names to a module,
    a ``(module, input_shape)`` pair or a :class:`Graph`. ``prior_scale`` widens (> 1) or tightens the prior
    around the current values. Returns the calibrated profile (costs and calibration section updated) and
    the leave-one-out table; write it with ``profiles._schema.dump_profile``.

    Rows measured with different tools (``tool`` column) differ by an additive offset each, fitted against
    the reference ``tool`` (default: the most frequent Xcode tool among the rows), whose latencies the
    calibrated profile predicts; ``tool_offsets`` gives prior means for ``("tool", name)`` offsets in ms.
    """
    base = load_profile(profile)
    df = load_measurements(measurements)
    mine = df[df["chip"].map(norm_chip) == norm_chip(base.chip)]
    if mine.empty:
        chips = sorted({str(c) for c in df["chip"]})
        raise ProfileError(
            f"no measurements for chip {base.chip!r} (device {base.name}); chips present: {chips}"
        )
    rows, skipped = _rows(mine, reference_models)
    if not rows:
        raise ProfileError(f"no usable measurements for chip {base.chip!r}; skipped: {skipped}")
    ref = reference_tool(rows) if tool is None else tool
    means = dict(tool_offsets or {})
    keys = _keys(base, rows, ref)
    theta = _fit([base], [rows], keys, prior_scale, means)
    fitted_profile = apply_params(base, theta)
    fitted = [_row_ms(fitted_profile, r, theta) for r in rows]
    loo = []
    for i, r in enumerate(rows):
        others = rows[:i] + rows[i + 1 :]
        k = [x for x in _keys(base, others, ref) if x[0] != "tool"] + [x for x in keys if x[0] == "tool"]
        th = _fit([base], [others], k, prior_scale, means)
        loo.append(_row_ms(apply_params(base, th), r, th))
    table = _table(rows, fitted, loo)
    unit_knobs = {k: v for k, v in theta.items() if k[0] != "tool"}
    note = f"predicts latencies as measured by {ref!r}; fitted multipliers: " + ", ".join(
        f"{u}.{k}={math.exp(v):.3g}" for (u, k), v in unit_knobs.items()
    )
    offsets = {k[1]: v for k, v in theta.items() if k[0] == "tool"}
    if offsets:
        note += "; tool offsets (ms): " + ", ".join(f"{t!r} {v:+.3f}" for t, v in offsets.items())
    source = data or f"{len(rows)} rows for chip {base.chip}"
    fitted_units = {u for u, _ in unit_knobs}
    result_profile = _with_calibration(fitted_profile, table, source, note, "calibrated", fitted_units)
    return CalibrationResult(result_profile, unit_knobs, table, tuple(skipped), offsets, ref)
