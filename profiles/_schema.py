"""Device profiles as data: frozen dataclasses, a strict TOML loader and a TOML writer.

A profile file describes one device class::

    name = "a16"                    # file stem
    title = "A16 Bionic (iPhone 14 Pro, iPhone 15)"
    chip = "A16"                    # matches the ``chip`` column of measurement CSVs
    year = 2022
    default_quant = "fp16"
    ram_gb = { value = 6.0, source = "..." }
    switch_cost_us = { value = 30.0, source = "..." }
    ane_fallbacks = ["dilated_conv", "pool_kernel_gt13", ...]

    [units.ane]                     # one table per compute unit: cpu, gpu, ane
    cores = { value = 16, source = "..." }
    bandwidth_gbs = { value = 51.2, source = "..." }
    peak_gflops = { fp16 = { value = 17000, source = "..." }, int8 = { ... } }
    fuses = true                    # conv + bn + activation run as one layer (Core ML); false for eager torch
    holds_compressed_weights = true # the runtime keeps palettized/int8 weights compressed in memory
    pad_last_axis_bytes = 64        # activation rows padded to this many bytes (ANE buffers)

    [units.ane.costs]               # the cost model's free parameters (fitted by calibration)
    efficiency = { conv = 0.3, pw = 0.3, dw = 0.05, default = 0.2 }   # fraction of peak, per op class
    mem_efficiency = { default = 0.8 }                                 # fraction of bandwidth, per op class
    overhead_us = { default = 2.0 }                                    # fixed cost per layer, per op class
    inference_overhead_us = 40.0
    int8_speedup = 1.0              # w8a8 compute-rate multiplier on this unit
    onchip_ratio = 1.0              # activations read this many times faster than DRAM (on-chip memory)
    overlap = "network"             # memory overlaps compute: none | layer | network (profiles._cost)
    time_scale = 1.0                # fitted chip term on this unit's layer times
    basis = "calibrated"            # measured | calibrated | spec-derived
    note = "..."

    [calibration]                   # where the costs came from, with the error
    basis = "calibrated"
    data = "shared/reference/apple-published-latencies.csv (22 rows)"
    loo_median_abs_pct = 3.1
    ...
    [[calibration.rows]]
    model = "resnet50"  ...

Every spec number is a ``{ value, source }`` pair; the loader rejects unknown keys (naming file and key),
missing sources, non-positive rates and unknown op classes.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from profiles._errors import ProfileError

__all__ = [
    "BASES",
    "FALLBACK_RULES",
    "INTERVAL_LEVELS",
    "OP_CLASSES",
    "PRECISIONS",
    "UNIT_NAMES",
    "Calibration",
    "CalibrationRow",
    "ComputeUnit",
    "DeviceProfile",
    "Sourced",
    "UnitCosts",
    "dump_profile",
    "parse_profile",
]

#: Op classes the cost model distinguishes (graph nodes are classified into these).
OP_CLASSES = (
    "conv",  # dense k x k convolution (k > 1), also transposed
    "pw",  # 1 x 1 convolution, groups = 1
    "dw",  # depthwise convolution (groups = in = out channels)
    "gconv",  # grouped, not depthwise
    "linear",  # fully connected / matmul
    "bn",  # batch norm (folded into the conv where the unit fuses)
    "act",  # relu, relu6, hardswish, hardsigmoid, silu, sigmoid, ...
    "pool",  # windowed avg/max pooling
    "gpool",  # global / adaptive pooling, mean over H, W
    "upsample",  # interpolate / upsample
    "eltwise",  # add, mul, sub, div (incl. broadcast)
    "cat",  # concatenate / stack
    "reshape",  # view, reshape, flatten, permute, ... (no compute)
    "other",
)
PRECISIONS = ("fp32", "fp16", "int8")
UNIT_NAMES = ("cpu", "gpu", "ane")
BASES = ("measured", "calibrated", "spec-derived")
OVERLAPS = ("none", "layer", "network")
#: Levels of the stored latency-ratio quantiles (``q10`` = the 10th percentile of measured / predicted).
INTERVAL_LEVELS = {"q05": 0.05, "q10": 0.10, "q20": 0.20, "q50": 0.50, "q80": 0.80, "q90": 0.90, "q95": 0.95}
#: Named rules for layers Core ML runs off the Neural Engine (hollance/neural-engine unsupported-layers.md).
FALLBACK_RULES = (
    "dilated_conv",
    "pool_kernel_gt13",
    "pool_stride_gt2",
    "upsample_gt2",
    "broadcast_mul",
    "other",
)


@dataclass(frozen=True)
class Sourced:
    """A spec number and where it comes from."""

    value: float
    source: str


@dataclass(frozen=True)
class UnitCosts:
    """Free parameters of one compute unit's cost model (see :mod:`profiles._cost`)."""

    efficiency: dict[str, float]
    mem_efficiency: dict[str, float]
    overhead_us: dict[str, float]
    inference_overhead_us: float
    int8_speedup: float = 1.0
    onchip_ratio: float = 1.0  # activations read at this multiple of the DRAM bandwidth (on-chip memory)
    overlap: str = "none"  # memory overlaps compute: none | layer | network (see profiles._cost._part_times)
    time_scale: float = 1.0  # fitted chip term: multiplies this unit's layer times (1: spec and costs alone)
    module_overhead_us: float = 0.0  # per nn.Module forward call (eager torch on the host; 0 for Core ML)
    basis: str = "spec-derived"
    note: str = ""
    #: Fraction of bandwidth at which weights are read, per op class; empty: as ``mem_efficiency`` (weights
    #: and activations alike). The host fits it apart: activations stay in cache, weights of a whole net
    #: do not (a 1x1 conv with 3000 channels at 3x3 px reads 30 MB of weights for 0.1 MB of activations).
    weight_mem_efficiency: dict[str, float] = field(default_factory=dict)
    #: CPU SIMD width in fp32 channels (16 with AVX-512); 0: no channel-alignment effect (Apple units).
    channel_block: int = 0
    #: Per op class, how much slower an op runs when its channels are not a multiple of ``channel_block``
    #: (0.2: 20% slower; measured on the host: odd-width depthwise convs leave oneDNN's blocked kernels).
    unaligned_slowdown: dict[str, float] = field(default_factory=dict)

    def per_class(self, table: str) -> np.ndarray:
        """One value per op class (``default`` fills classes not named), in :data:`OP_CLASSES` order."""
        if table == "weight_mem_efficiency" and not self.weight_mem_efficiency:
            table = "mem_efficiency"
        values = getattr(self, table)
        default = values.get("default", 0.0 if table in ("overhead_us", "unaligned_slowdown") else 1.0)
        return np.array([values.get(c, default) for c in OP_CLASSES], dtype=float)


@dataclass(frozen=True)
class ComputeUnit:
    """One compute unit (CPU, GPU or Neural Engine) of a device: spec rates and fitted costs."""

    name: str
    cores: Sourced
    bandwidth_gbs: Sourced
    peak_gflops: dict[str, Sourced]
    costs: UnitCosts
    fuses: bool = True
    holds_compressed_weights: bool = False
    pad_last_axis_bytes: int = 0

    def peak(self, precision: str) -> float:
        """Peak GFLOP/s at ``precision``, falling back fp16 -> fp32 when a rate is not listed."""
        for p in (precision, "fp16", "fp32"):
            if p in self.peak_gflops:
                return float(self.peak_gflops[p].value)
        raise ProfileError(f"unit {self.name!r} lists no peak rate")


@dataclass(frozen=True)
class CalibrationRow:
    """One measured latency and the leave-one-out prediction error for it."""

    model: str
    quant: str
    input: int
    measured_ms: float
    predicted_ms: float
    loo_pct: float
    source: str = ""


@dataclass(frozen=True)
class Calibration:
    """How a profile's costs were obtained, and their error where measured."""

    basis: str
    data: str = ""
    note: str = ""
    loo_median_abs_pct: float | None = None
    loo_worst_pct: float | None = None
    worst_row: str = ""
    rows: tuple[CalibrationRow, ...] = ()
    #: held-out error figures: ``{by}_median_pct`` / ``{by}_worst_pct`` / ``{by}_rows`` for ``by`` in
    #: network, source, chip, row (what was left out of the fit that predicted each row)
    validation: dict[str, float] = field(default_factory=dict)
    bounds: tuple[str, ...] = ()  # parameters sitting at a bound of their stated physical range
    #: per compute unit: quantiles of measured / predicted latency on held-out rows (``q05`` ... ``q95``) and
    #: ``n``, the number of residuals behind them; what ``Cost.latency_ms_p10`` / ``_p90`` multiply
    interval: dict[str, dict[str, float]] = field(default_factory=dict)
    interval_basis: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    """A device class: compute units, memory, Neural Engine fallbacks, switch cost and calibration."""

    name: str
    title: str
    chip: str
    year: int
    default_quant: str
    ram_gb: Sourced
    switch_cost_us: Sourced
    units: dict[str, ComputeUnit]
    calibration: Calibration
    ane_fallbacks: tuple[str, ...] = ()
    path: str = field(default="", compare=False)

    @property
    def basis(self) -> str:
        """``measured`` | ``calibrated`` | ``spec-derived``."""
        return self.calibration.basis

    @property
    def has_ane(self) -> bool:
        """Whether Core ML may schedule layers on this device's Neural Engine."""
        return "ane" in self.units

    @cached_property
    def tables(self) -> dict[str, dict[str, Any]]:
        """Per-unit numpy arrays the cost model indexes by op class (built once per profile object)."""
        out: dict[str, dict[str, Any]] = {}
        for name, unit in self.units.items():
            out[name] = {
                "eff": unit.costs.per_class("efficiency"),
                "mem": unit.costs.per_class("mem_efficiency"),
                "wmem": unit.costs.per_class("weight_mem_efficiency"),
                "slow": unit.costs.per_class("unaligned_slowdown"),
                "ovh": unit.costs.per_class("overhead_us") * 1e-3,
            }
        return out


# ----------------------------------------------------------------------------------------------------------
# loading


class _Reader:
    """Walks one parsed TOML document and raises errors that name the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> ProfileError:
        return ProfileError(f"{self.where}: {key}: {message}")

    def table(self, data: Any, key: str, known: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"must be a table, but got {type(data).__name__} {data!r}")
        unknown = sorted(set(data) - known)
        if unknown:
            raise self.fail(key, f"unknown key(s) {unknown}; known: {sorted(known)}")
        missing = sorted(required - set(data))
        if missing:
            raise self.fail(key, f"missing key(s) {missing}")
        return data

    def number(self, value: Any, key: str, *, positive: bool = True, allow_zero: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, but got {value!r}")
        if positive and (value < 0 or (value == 0 and not allow_zero)):
            bound = ">= 0" if allow_zero else "> 0"
            raise self.fail(key, f"must be {bound}, but got {value!r}")
        return float(value)

    def text(
        self, value: Any, key: str, *, choices: tuple[str, ...] | None = None, empty: bool = True
    ) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(key, f"must be a{' non-empty' if not empty else ''} string, but got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, but got {value!r}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, but got {value!r}")
        return value

    def sourced(self, data: Any, key: str, *, allow_zero: bool = False) -> Sourced:
        if not isinstance(data, dict) or "source" not in data:
            raise self.fail(
                key,
                f'must be {{ value = ..., source = "..." }} (every spec number needs a source), '
                f"but got {data!r}",
            )
        self.table(data, key, {"value", "source"}, {"value", "source"})
        value = self.number(data["value"], f"{key}.value", allow_zero=allow_zero)
        return Sourced(value, self.text(data["source"], f"{key}.source", empty=False))

    def per_class(self, data: Any, key: str, *, allow_zero: bool) -> dict[str, float]:
        allowed = set(OP_CLASSES) | {"default"}
        table = self.table(data, key, allowed, set())
        return {k: self.number(v, f"{key}.{k}", allow_zero=allow_zero) for k, v in table.items()}


def _costs(r: _Reader, data: Any, key: str) -> UnitCosts:
    known = {f.name for f in fields(UnitCosts)}
    t = r.table(data, key, known, {"efficiency", "mem_efficiency", "overhead_us", "inference_overhead_us"})
    eff = r.per_class(t["efficiency"], f"{key}.efficiency", allow_zero=False)
    if any(v > 1.0 for v in eff.values()):
        raise r.fail(f"{key}.efficiency", f"fractions of peak must lie in (0, 1], but got {eff}")
    return UnitCosts(
        efficiency=eff,
        mem_efficiency=r.per_class(t["mem_efficiency"], f"{key}.mem_efficiency", allow_zero=False),
        overhead_us=r.per_class(t["overhead_us"], f"{key}.overhead_us", allow_zero=True),
        inference_overhead_us=r.number(
            t["inference_overhead_us"], f"{key}.inference_overhead_us", allow_zero=True
        ),
        int8_speedup=r.number(t.get("int8_speedup", 1.0), f"{key}.int8_speedup"),
        onchip_ratio=r.number(t.get("onchip_ratio", 1.0), f"{key}.onchip_ratio"),
        overlap=r.text(t.get("overlap", "none"), f"{key}.overlap", choices=OVERLAPS),
        time_scale=r.number(t.get("time_scale", 1.0), f"{key}.time_scale"),
        module_overhead_us=r.number(
            t.get("module_overhead_us", 0.0), f"{key}.module_overhead_us", allow_zero=True
        ),
        basis=r.text(t.get("basis", "spec-derived"), f"{key}.basis", choices=BASES),
        note=r.text(t.get("note", ""), f"{key}.note"),
        weight_mem_efficiency=r.per_class(
            t.get("weight_mem_efficiency", {}), f"{key}.weight_mem_efficiency", allow_zero=False
        ),
        channel_block=int(r.number(t.get("channel_block", 0), f"{key}.channel_block", allow_zero=True)),
        unaligned_slowdown=r.per_class(
            t.get("unaligned_slowdown", {}), f"{key}.unaligned_slowdown", allow_zero=True
        ),
    )


def _unit(r: _Reader, name: str, data: Any) -> ComputeUnit:
    key = f"units.{name}"
    if name not in UNIT_NAMES:
        raise r.fail(key, f"unknown compute unit {name!r}; known: {', '.join(UNIT_NAMES)}")
    known = {f.name for f in fields(ComputeUnit)} - {"name"}
    t = r.table(data, key, known, {"cores", "bandwidth_gbs", "peak_gflops", "costs"})
    peaks = r.table(t["peak_gflops"], f"{key}.peak_gflops", set(PRECISIONS), set())
    if not peaks:
        raise r.fail(f"{key}.peak_gflops", f"needs at least one of {', '.join(PRECISIONS)}")
    pad = r.number(t.get("pad_last_axis_bytes", 0), f"{key}.pad_last_axis_bytes", allow_zero=True)
    return ComputeUnit(
        name=name,
        cores=r.sourced(t["cores"], f"{key}.cores"),
        bandwidth_gbs=r.sourced(t["bandwidth_gbs"], f"{key}.bandwidth_gbs"),
        peak_gflops={p: r.sourced(v, f"{key}.peak_gflops.{p}") for p, v in peaks.items()},
        costs=_costs(r, t["costs"], f"{key}.costs"),
        fuses=r.flag(t.get("fuses", True), f"{key}.fuses"),
        holds_compressed_weights=r.flag(
            t.get("holds_compressed_weights", False), f"{key}.holds_compressed_weights"
        ),
        pad_last_axis_bytes=int(pad),
    )


def _calibration(r: _Reader, data: Any) -> Calibration:
    known = {f.name for f in fields(Calibration)}
    t = r.table(data, "calibration", known, {"basis"})
    rows = []
    raw_rows = t.get("rows", [])
    if not isinstance(raw_rows, list):
        raise r.fail("calibration.rows", f"must be an array of tables, but got {raw_rows!r}")
    row_known = {f.name for f in fields(CalibrationRow)}
    for i, row in enumerate(raw_rows):
        k = f"calibration.rows[{i}]"
        rt = r.table(row, k, row_known, row_known - {"source"})
        rows.append(
            CalibrationRow(
                model=r.text(rt["model"], f"{k}.model", empty=False),
                quant=r.text(rt["quant"], f"{k}.quant", empty=False),
                input=int(r.number(rt["input"], f"{k}.input")),
                measured_ms=r.number(rt["measured_ms"], f"{k}.measured_ms"),
                predicted_ms=r.number(rt["predicted_ms"], f"{k}.predicted_ms", allow_zero=True),
                loo_pct=r.number(rt["loo_pct"], f"{k}.loo_pct", positive=False),
                source=r.text(rt.get("source", ""), f"{k}.source"),
            )
        )

    def opt(name: str) -> float | None:
        return None if name not in t else r.number(t[name], f"calibration.{name}", allow_zero=True)

    validation = r.table(
        t.get("validation", {}), "calibration.validation", set(t.get("validation", {})), set()
    )
    bounds = t.get("bounds", [])
    if not isinstance(bounds, list):
        raise r.fail("calibration.bounds", f"must be a list of strings, but got {bounds!r}")
    interval: dict[str, dict[str, float]] = {}
    for unit, qs in r.table(t.get("interval", {}), "calibration.interval", set(UNIT_NAMES), set()).items():
        k = f"calibration.interval.{unit}"
        qt = r.table(qs, k, set(INTERVAL_LEVELS) | {"n"}, set(INTERVAL_LEVELS))
        interval[unit] = {q: r.number(v, f"{k}.{q}") for q, v in qt.items()}
    return Calibration(
        validation={
            k: r.number(v, f"calibration.validation.{k}", positive=False) for k, v in validation.items()
        },
        bounds=tuple(r.text(b, f"calibration.bounds[{i}]") for i, b in enumerate(bounds)),
        interval=interval,
        interval_basis=r.text(t.get("interval_basis", ""), "calibration.interval_basis"),
        basis=r.text(t["basis"], "calibration.basis", choices=BASES),
        data=r.text(t.get("data", ""), "calibration.data"),
        note=r.text(t.get("note", ""), "calibration.note"),
        loo_median_abs_pct=opt("loo_median_abs_pct"),
        loo_worst_pct=opt("loo_worst_pct"),
        worst_row=r.text(t.get("worst_row", ""), "calibration.worst_row"),
        rows=tuple(rows),
    )


def parse_profile(text: str, *, where: str, name: str | None = None) -> DeviceProfile:
    """Parse and validate one profile document; ``where`` names the file in error messages."""
    r = _Reader(where)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(
            f"{where}: not valid TOML ({exc}); fix the file or delete it and re-create it"
        ) from exc
    known = {f.name for f in fields(DeviceProfile)} - {"path"}
    required = known - {"ane_fallbacks"}
    t = r.table(data, "(top level)", known, required)
    units_t = t["units"]
    if not isinstance(units_t, dict) or not units_t:
        raise r.fail("units", f"must hold at least one compute unit table ({', '.join(UNIT_NAMES)})")
    fallbacks = t.get("ane_fallbacks", [])
    if not isinstance(fallbacks, list):
        raise r.fail("ane_fallbacks", f"must be a list of rule names, but got {fallbacks!r}")
    for i, rule in enumerate(fallbacks):
        r.text(rule, f"ane_fallbacks[{i}]", choices=FALLBACK_RULES)
    profile = DeviceProfile(
        name=r.text(t["name"], "name", empty=False),
        title=r.text(t["title"], "title", empty=False),
        chip=r.text(t["chip"], "chip", empty=False),
        year=int(r.number(t["year"], "year")),
        default_quant=r.text(t["default_quant"], "default_quant", empty=False),
        ram_gb=r.sourced(t["ram_gb"], "ram_gb"),
        switch_cost_us=r.sourced(t["switch_cost_us"], "switch_cost_us", allow_zero=True),
        units={u: _unit(r, u, v) for u, v in units_t.items()},
        calibration=_calibration(r, t["calibration"]),
        ane_fallbacks=tuple(fallbacks),
        path=where,
    )
    if name is not None and profile.name != name:
        raise r.fail("name", f"must match the file name {name!r}, but got {profile.name!r}")
    return profile


# ----------------------------------------------------------------------------------------------------------
# writing (a small TOML emitter for this schema; tomllib only reads)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 6)) if math.isfinite(v) else "0.0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
    if isinstance(v, Sourced):
        return f"{{ value = {_value(v.value)}, source = {_value(v.source)} }}"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


_HOST_ONLY = ("weight_mem_efficiency", "channel_block", "unaligned_slowdown")


def dump_profile(p: DeviceProfile) -> str:
    """The profile as TOML text that :func:`parse_profile` reads back to an equal profile."""
    lines = [f"# Device profile {p.name}: see profiles/_schema.py for the format.", ""]
    for key in (
        "name",
        "title",
        "chip",
        "year",
        "default_quant",
        "ram_gb",
        "switch_cost_us",
        "ane_fallbacks",
    ):
        lines.append(f"{key} = {_value(getattr(p, key))}")
    for name, u in p.units.items():
        lines += ["", f"[units.{name}]"]
        for key in ("cores", "bandwidth_gbs", "fuses", "holds_compressed_weights", "pad_last_axis_bytes"):
            lines.append(f"{key} = {_value(getattr(u, key))}")
        for prec, s in u.peak_gflops.items():
            lines.append(f"peak_gflops.{prec} = {_value(s)}")
        lines += ["", f"[units.{name}.costs]"]
        for f in fields(UnitCosts):
            value = getattr(u.costs, f.name)
            if f.name in _HOST_ONLY and not value:  # host-only terms: not written where unused
                continue
            lines.append(f"{f.name} = {_value(value)}")
    c = p.calibration
    lines += [
        "",
        "[calibration]",
        f"basis = {_value(c.basis)}",
        f"data = {_value(c.data)}",
        f"note = {_value(c.note)}",
    ]
    for key in ("loo_median_abs_pct", "loo_worst_pct"):
        if getattr(c, key) is not None:
            lines.append(f"{key} = {_value(getattr(c, key))}")
    lines.append(f"worst_row = {_value(c.worst_row)}")
    if c.validation:
        lines.append(f"validation = {_value(c.validation)}")
    if c.bounds:
        lines.append(f"bounds = {_value(list(c.bounds))}")
    if c.interval_basis:
        lines.append(f"interval_basis = {_value(c.interval_basis)}")
    for unit, qs in c.interval.items():
        lines.append(f"interval.{unit} = {_value(qs)}")
    for row in c.rows:
        lines += ["", "[[calibration.rows]]"]
        for f in fields(CalibrationRow):
            lines.append(f"{f.name} = {_value(getattr(row, f.name))}")
    return "\n".join(lines) + "\n"


def read_profile_file(path: Path) -> DeviceProfile:
    """Load one profile file (the file stem must equal the profile's ``name``, except for ``--out`` files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text ({exc.reason}); is this a profile TOML file?") from exc
    return parse_profile(text, where=str(path))
