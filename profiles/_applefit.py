"""One bounded fit of the Apple cost model to every published row, and its grouped cross-validation.

The model (:mod:`profiles._cost`) prices each layer from a chip's spec numbers (peak rate per precision,
bandwidth) and a few free costs per kind of compute unit. Those costs are **shared by every chip** — a chip
differs from another through its spec numbers — and each is a physical quantity with a stated range
(:data:`PARAMS`): fractions of the peak rate and of the bandwidth lie in (0, 1], per-layer overheads are
microseconds, the per-inference floor of the Neural Engine lies between 20 µs and the 0.12 ms that the smallest
published Xcode rows allow (MobileNetV3-Small on A16 runs in 0.13 ms). Two kinds of terms are on top, both
log-multipliers on latency, shrunk toward zero by a Gaussian prior and bounded to ±0.7:

- a **chip term** per (chip, unit) with rows on that unit (prior sd :data:`CHIP_SD`): how far the chip sits
  from what its spec predicts. Chips without rows get none (they are spec-derived), and leave-one-chip-out
  validation measures what that costs.
- a **tool term** per tool class (:data:`profiles._evidence.TOOLS`) other than the reference ``xcode``, and
  only for a tool that measured some chip's compute-unit setting beside another tool (:func:`identified_tools`;
  prior sd :data:`TOOL_SD`), so no tool term can stand in for a chip's speed. Another runtime's class
  (:data:`profiles._evidence.RUNTIMES`: TFLite's CPU kernels and GPU delegate) gets a wider prior
  (:data:`RUNTIME_SD`, bound :data:`RUNTIME_BOUND`), and its CPU rows run at NEON's rate on their threads
  (:func:`neon_profile`), not at the AMX rate of Core ML's CPU path.

The fit minimises squared log errors over each row's noise (``sigma``; rows of one source on one unit beyond
:data:`SOURCE_ROWS` are down-weighted as one harness, not independent evidence) plus the priors, with
``scipy.optimize.least_squares`` inside the parameter bounds. Predictions are exact re-implementations of
``_cost.schedule`` on pre-computed per-class sums, so a fit takes well under a second and every grouped
validation (by network, by source, by chip, by row) refits from scratch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from profiles._cost import FALLBACK_INDEX, overlapped, restrict_units, unit_terms
from profiles._errors import ProfileError
from profiles._evidence import RUNTIMES
from profiles._graph import Graph, extract_graph
from profiles._quant import parse_quant
from profiles._schema import OP_CLASSES, DeviceProfile, Sourced, UnitCosts

__all__ = ["CHIP_SD", "PARAMS", "TOOL_SD", "Fit", "Model", "build_model", "fit", "profile_costs"]

K = len(OP_CLASSES)
#: How the Apple units overlap memory and compute (``profiles._cost._part_times``): across the layers
#: a unit runs.
OVERLAP = "network"
_IDX = {c: i for i, c in enumerate(OP_CLASSES)}
#: op classes each efficiency knob covers (the rest, incl. default: ``pw``)
_EFF = {
    "conv": ("conv",),
    "dw": ("dw", "gconv"),
    "pw": tuple(c for c in OP_CLASSES if c not in ("conv", "dw", "gconv")),
}
_LAYER = ("conv", "pw", "dw", "gconv", "linear")  # per-layer overhead of compute layers; the rest: ``elt``


@dataclass(frozen=True)
class Param:
    """One free cost of one kind of unit: its range (the physical bound) and its prior centre."""

    unit: str
    knob: str  # eff_conv | eff_pw | eff_dw | mem | layer_us | elt_us | inference_us | int8
    lo: float
    hi: float
    prior: float
    why: str


def _p(unit: str, knob: str, lo: float, hi: float, prior: float, why: str) -> Param:
    return Param(unit, knob, lo, hi, prior, why)


PARAMS: tuple[Param, ...] = (
    _p("ane", "eff_conv", 0.02, 1.0, 0.35, "fraction of the spec peak (<= 1)"),
    _p("ane", "eff_pw", 0.02, 1.0, 0.35, "fraction of the spec peak (<= 1)"),
    _p("ane", "eff_dw", 0.002, 1.0, 0.05, "fraction of the spec peak (<= 1)"),
    _p("ane", "mem", 0.05, 1.0, 0.7, "fraction of the memory bandwidth (<= 1)"),
    _p("ane", "onchip", 1.0, 32.0, 4.0,
       "activation streaming at A14's 11 TOPS, x its DRAM bandwidth (1-32); other chips: x their peak / A14's "
       "(ONCHIP_SCALED)"),
    _p("ane", "layer_us", 0.3, 2.2, 1.0,
       "per compute layer, µs at A14's clock: <= 2.2 so that MobileNetV3-Small's 54 compute and 25 other "
       "layers plus a 20 µs launch fit in its 0.13 ms on A16 (1.55x A14's clock)"),
    _p("ane", "elt_us", 0.1, 2.2, 1.0, "per unfused pooling / elementwise / cat layer, µs at A14's clock (as above)"),
    _p("ane", "inference_us", 20.0, 120.0, 60.0,
       "per inference, µs: >= 20 (a model launch), <= 120 (MobileNetV3-Small runs in 0.13 ms on A16)"),
    _p("ane", "int8", 1.0, 2.0, 1.2, "w8a8 rate over the listed int8 peak (at most 2x fp16)"),
    _p("gpu", "eff_conv", 0.02, 1.0, 0.4, "fraction of the spec peak (<= 1)"),
    _p("gpu", "eff_pw", 0.02, 1.0, 0.4, "fraction of the spec peak (<= 1)"),
    _p("gpu", "eff_dw", 0.002, 1.0, 0.08, "fraction of the spec peak (<= 1)"),
    _p("gpu", "mem", 0.05, 1.0, 0.6, "fraction of the memory bandwidth (<= 1)"),
    _p("gpu", "onchip", 1.0, 16.0, 2.0, "activation reads from the GPU caches, x DRAM bandwidth (1-16)"),
    _p("gpu", "layer_us", 1.0, 100.0, 15.0, "per compute layer (kernel launch), µs at A13's clock"),
    _p("gpu", "elt_us", 0.5, 100.0, 15.0, "per unfused pooling / elementwise / cat layer, µs at A13's clock"),
    _p("gpu", "inference_us", 50.0, 3000.0, 300.0, "per inference (command buffer), µs"),
    _p("cpu", "eff_conv", 0.02, 1.0, 0.5, "fraction of the spec peak (<= 1)"),
    _p("cpu", "eff_pw", 0.02, 1.0, 0.6, "fraction of the spec peak (<= 1)"),
    _p("cpu", "eff_dw", 0.005, 1.0, 0.1, "fraction of the spec peak (<= 1)"),
    _p("cpu", "mem", 0.05, 1.0, 0.5, "fraction of the memory bandwidth (<= 1)"),
    _p("cpu", "onchip", 1.0, 16.0, 2.0, "activation reads from the CPU caches, x DRAM bandwidth (1-16)"),
    _p("cpu", "layer_us", 0.5, 100.0, 5.0, "per compute layer, µs"),
    _p("cpu", "elt_us", 0.5, 100.0, 5.0, "per unfused pooling / elementwise / cat layer, µs"),
    _p("cpu", "inference_us", 10.0, 2000.0, 50.0, "per inference, µs"),
)  # fmt: skip
#: Prior sd (log scale) of the unit costs around their centres: weak, the data decide.
PARAM_SD = 1.0
#: Prior sd of a chip's log-offset from what its spec predicts, and of a tool's log-offset.
CHIP_SD = 0.25
TOOL_SD = 0.2
TERM_BOUND = 0.7
#: Prior sd and bound of another runtime's term (TFLite's CPU kernels at 1 or 2 threads against Core ML's CPU
#: path, its GPU delegate against Core ML's GPU): wider than a Core ML tool's.
RUNTIME_SD = 0.5
RUNTIME_BOUND = 1.5
#: Prior sd and bound of a unit's common chip term (the mean of its chips' terms; what a chip without rows
#: gets): how far the shared costs, held inside their physical ranges, sit from the chips' measured speed.
LEVEL_SD = 0.5
LEVEL_BOUND = 1.2
#: Rows of one source on one unit of one chip beyond this count share their weight (one harness).
SOURCE_ROWS = 12
#: The fit's convergence: relative tolerances on the cost and the step, evaluations per round, and rounds
#: (each restarts from the last round's optimum until the cost stops falling). Tight, on the smooth objective
#: of :func:`profiles._cost.overlapped`, so a fit ends at its optimum, not where its trust region shrank: with
#: a hard max and 1e-6 the held-out figures moved by up to 3 points, and some intervals by 50%, between
#: machines (the same code and libraries), following their floating-point rounding.
FIT_TOL = 1e-10
FIT_NFEV = 200
FIT_ROUNDS = 5


# ----------------------------------------------------------------------------------------------------------
# the design: per-class sums of every row's parameter-free terms


@dataclass
class _Part:
    """The live nodes of one graph on one unit of one chip (a plan's primary or secondary share)."""

    device: str
    unit: str
    cls: np.ndarray
    f: np.ndarray  # flop-ms at eff 1 (int8 speed-up applied by the fit where ``int8``)
    r: np.ndarray  # activation byte-ms at mem 1 and onchip 1
    w: np.ndarray  # weight byte-ms at mem 1
    scale: np.ndarray
    const: float
    int8: bool


def _part(g: Graph, prof: DeviceProfile, unit: str, q: Any, mask: np.ndarray, device: str) -> _Part:
    t = unit_terms(g, prof, unit, q)
    keep = mask & t.live
    return _Part(
        device, unit, t.cls[keep], t.flop_ms[keep], t.act_ms[keep], t.weight_ms[keep], t.scale[keep],
        float(t.const_ms[mask].sum()), t.int8,
    )  # fmt: skip


@dataclass(frozen=True)
class Model:
    """Everything a fit needs: rows, their design (parts and plans) and the parameter layout."""

    rows: Any  # the evidence DataFrame, with a ``unit`` column (the unit each row measures)
    parts: list[_Part]
    plans: list[list[tuple[int, list[tuple[int, str]], float, tuple[str, ...]]]]  # per row
    keys: list[tuple[str, ...]]  # parameter keys: ("unit", unit, knob) | ("chip", device, unit) | ("tool", t)
    clocks: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, unit) -> clock()
    onchip: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, unit) -> onchip_scale()
    cache: dict = field(default_factory=dict, compare=False)


def _plans(g: Graph, prof: DeviceProfile, q: Any, device: str, parts: list[_Part]) -> list:
    """Every plan ``_cost.schedule`` weighs: (primary part, [(secondary part, unit)], switch ms, units)."""
    names = list(prof.units)
    fallback = np.zeros(len(g), dtype=bool)
    for rule in prof.ane_fallbacks:
        fallback |= g.arrays["fallback"][:, FALLBACK_INDEX[rule]]
    everything = np.ones(len(g), dtype=bool)
    out = []
    for primary in names:
        if primary == "ane" and q.name == "fp32":
            continue
        off = fallback if primary == "ane" else np.zeros(len(g), dtype=bool)
        others = [n for n in names if n != primary and n != "ane"] if primary == "ane" else []
        parts.append(_part(g, prof, primary, q, ~off if off.any() and others else everything, device))
        prim = len(parts) - 1
        secs, switch = [], 0.0
        if off.any() and others:
            for o in others:
                parts.append(_part(g, prof, o, q, off, device))
                secs.append((len(parts) - 1, o))
            edges = np.flatnonzero(np.diff(off.astype(np.int8)) != 0)
            act_b = 1.0 if q.act == "int8" else 2.0
            bw = prof.units[primary].bandwidth_gbs.value * 1e6
            switch = float(
                (prof.switch_cost_us.value * 1e-3 + g.arrays["out_elems"][edges] * act_b / bw).sum()
            )
        out.append((prim, secs, switch, (primary,)))
    return out


_GRAPHS: dict[tuple[str, int], Graph] = {}


def _graph(model: str, size: int) -> Graph:
    from profiles.reference_models import reference_model

    if (model, size) not in _GRAPHS:
        _GRAPHS[(model, size)] = extract_graph(reference_model(model), (1, 3, size, size), name=model)
    return _GRAPHS[(model, size)]


#: Evidence ``units`` -> compute-unit setting: Core ML runs a ``.cpuAndGPU`` model on the GPU (the CPU
#: only takes layers the GPU lacks, none in these nets), so GPU rows measure the GPU.
_UNITS_OF = {"all": "all", "gpu": "gpu_only", "cpu": "cpu_only"}


#: FP32 FLOP per cycle of one CPU core's NEON units (4 x 128-bit FMA), as the spec's CPU estimates assume.
NEON_FLOP_PER_CYCLE = 16


def neon_profile(prof: DeviceProfile, threads: int) -> DeviceProfile:
    """``prof`` with its CPU's peak at NEON's rate on ``threads`` performance cores (a TFLite row).

    TFLite's CPU kernels run on the cores' NEON units, not on the AMX blocks that the spec's CPU peak assumes
    for Core ML from A13 on; the clock is the one the spec's CPU estimate states ("N P-cores x G GHz"). How
    TFLite's kernels compare with Core ML's beyond that is the runtime's term. Chosen over scaling the spec
    peak by the share of P-cores a row's threads use, by the TFLite rows of other chips held out: A11's
    (S5) and A12's (S6) CPU rows left out come out -14% / -8% (share: +26% / +38%)."""
    cpu = prof.units["cpu"]
    text = " ".join(s.source for s in cpu.peak_gflops.values())
    hit = re.search(r"P-cores x ([\d.]+) GHz", text)
    if hit is None:
        raise ProfileError(f"{prof.name}: the CPU peak's source states no P-core clock to derive NEON's rate")
    rate = threads * float(hit.group(1)) * NEON_FLOP_PER_CYCLE
    peak = Sourced(rate, f"NEON: {threads} P-core(s) x {hit.group(1)} GHz x {NEON_FLOP_PER_CYCLE} FLOP/cycle")
    return replace(prof, units={**prof.units, "cpu": replace(cpu, peak_gflops={"fp32": peak})})


def identified_tools(rows: Any) -> set[str]:
    """Tool classes other than ``xcode`` that measured some chip's compute-unit setting beside another tool:
    only there can a tool's term be told from the chip's own speed."""
    sets = rows.groupby(["device", "units"])["tool"].agg(set)
    return {t for ts in sets if len(ts) > 1 for t in ts} - {"xcode"}


def _main(rows: Any, specs: dict[str, DeviceProfile]) -> list[str]:
    """The unit each row measures: the Neural Engine for ``all`` where the chip has one, else its setting."""
    return [
        ("ane" if specs[d].has_ane else "gpu") if u == "all" else u
        for d, u in zip(rows["device"], rows["units"], strict=True)
    ]


def build_model(rows: Any, specs: dict[str, DeviceProfile]) -> Model:
    """The design of every evidence row on its device's spec profile (``specs``: device -> profile)."""
    parts: list[_Part] = []
    plans = []
    rows = rows.assign(unit=_main(rows, specs))
    for r in rows.itertuples():
        prof = restrict_units(specs[r.device], _UNITS_OF[r.units])
        if r.tool == "tflite_cpu":
            prof = neon_profile(prof, r.threads)
        plans.append(_plans(_graph(r.model, int(r.input)), prof, parse_quant(r.quant), r.device, parts))
    keys: list[tuple[str, ...]] = [("unit", p.unit, p.knob) for p in PARAMS]
    pairs = sorted(set(zip(rows["device"], _main(rows, specs), strict=True)))
    keys += [("level", u) for u in sorted({u for _, u in pairs})]
    keys += [("chip", d, u) for d, u in pairs]
    keys += [("tool", t) for t in sorted(identified_tools(rows))]
    clocks = {(p.device, p.unit): clock(specs[p.device], p.unit) for p in parts}
    onchip = {(p.device, p.unit): onchip_scale(specs[p.device], p.unit) for p in parts}
    return Model(rows, parts, plans, keys, clocks, onchip)


# ----------------------------------------------------------------------------------------------------------
# parameters -> unit costs


def _base(theta: dict[tuple[str, ...], float], unit: str) -> dict[str, float]:
    return {p.knob: math.exp(theta[("unit", unit, p.knob)]) for p in PARAMS if p.unit == unit}


#: Per-layer overheads are fixed numbers of cycles: they scale with the clock, taken as the unit's peak rate
#: per core relative to this reference (A14's Neural Engine, A13's GPU); CPU overheads are not scaled.
CLOCK_REF = {"ane": 11000.0 / 16, "gpu": 1260.0 / 4}


def clock(spec: DeviceProfile, unit: str) -> float:
    """The unit's clock relative to :data:`CLOCK_REF` (peak fp16 rate per core), 1 for the CPU."""
    if unit not in CLOCK_REF:
        return 1.0
    u = spec.units[unit]
    return u.peak("fp16") / u.cores.value / CLOCK_REF[unit]


#: Units that stream activations at a bandwidth following their own peak rate (clock x width), not the chip's
#: DRAM: a chip's on-chip ratio is the fitted one (at the reference: A14's Neural Engine) times its
#: (peak / DRAM bandwidth) over the reference's, so A13's 8-core Neural Engine streams at about half of A14's
#: rate on the same DRAM (ratio x0.55) and M1's (A14's engine) at A14's rate on twice the DRAM (x0.5). Chosen
#: by the grouped held-out errors of ``benchmarks/apple_calibration.py`` (Neural Engine rows, leave-one-
#: source-out 27.4% -> 15.7%: A16 / A17 Pro derived from A14 +37% -> +12%); the GPU and CPU keep DRAM-bound
#: activations (no cross-chip evidence on them but S3). Weights stay DRAM-bound: reading them at the engine's
#: rate too gave 12.4% (18.1% capped at the DRAM bandwidth) but needs them held in the system cache between
#: predictions, which nothing in shared/reference states.
ONCHIP_REF = {"ane": 11000.0 / 34.1}
ONCHIP_SCALED: tuple[str, ...] = ("ane",)


def onchip_scale(spec: DeviceProfile, unit: str) -> float:
    """(peak / DRAM bandwidth) of the chip's unit over that of :data:`ONCHIP_REF` (1 where not scaled)."""
    if unit not in ONCHIP_SCALED:
        return 1.0
    u = spec.units[unit]
    return u.peak("fp16") / u.bandwidth_gbs.value / ONCHIP_REF[unit]


def unit_tables(
    theta: dict, device: str, unit: str, clk: float = 1.0, oscale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float, float]:
    """(efficiency, mem_efficiency, overhead ms per class, inference ms, int8 speed-up, on-chip ratio,
    chip factor) of a chip's unit."""
    v = _base(theta, unit)
    c = math.exp(theta.get(("level", unit), 0.0) + theta.get(("chip", device, unit), 0.0))
    eff = np.empty(K)
    for knob, classes in _EFF.items():
        eff[[_IDX[x] for x in classes]] = v[f"eff_{knob}"]
    mem = np.full(K, v["mem"])
    ovh = np.full(K, v["elt_us"] * 1e-3 / clk)
    ovh[[_IDX[x] for x in _LAYER]] = v["layer_us"] * 1e-3 / clk
    ovh[_IDX["reshape"]] = 0.0
    return eff, mem, ovh, v["inference_us"] * 1e-3, v.get("int8", 1.0), v["onchip"] * oscale, c


def profile_costs(theta: dict, spec: DeviceProfile, unit: str, basis: str, note: str) -> UnitCosts:
    """The :class:`UnitCosts` that make ``_cost`` predict exactly what the fit predicts."""
    eff, mem, ovh, inf, int8, onchip, chip = unit_tables(
        theta, spec.name, unit, clock(spec, unit), onchip_scale(spec, unit)
    )

    def table(values: np.ndarray, scale: float = 1.0) -> dict[str, float]:
        d = {c: float(f"{values[_IDX[c]] * scale:.6g}") for c in OP_CLASSES}
        return {"default": d["other"], **{k: x for k, x in d.items() if x != d["other"]}}

    return UnitCosts(
        efficiency=table(eff),
        mem_efficiency={"default": float(f"{mem[0]:.6g}")},
        overhead_us=table(ovh, 1e3),
        inference_overhead_us=float(f"{inf * 1e3:.6g}"),
        int8_speedup=float(f"{int8:.6g}"),
        onchip_ratio=float(f"{onchip:.6g}"),
        overlap=OVERLAP,
        time_scale=float(f"{chip:.6g}"),
        basis=basis,
        note=note,
    )


# ----------------------------------------------------------------------------------------------------------
# prediction and fit


def _arrays(model: Model) -> dict[str, Any]:
    """The design as flat numpy arrays over all parts' nodes (built once per model)."""
    if "arrays" not in model.cache:
        pairs = sorted({(p.device, p.unit) for p in model.parts})
        pos = {k: i for i, k in enumerate(pairs)}
        flat = [(i, prim, secs, sw) for i, row in enumerate(model.plans) for prim, secs, sw, _ in row]
        sec = np.full((len(flat), 2), -1)
        for j, (_, _, secs, _) in enumerate(flat):
            sec[j, : len(secs)] = [s for s, _ in secs]
        ps = model.parts
        model.cache["arrays"] = {
            "pairs": pairs,
            "du": np.array([pos[(p.device, p.unit)] for p in ps]),
            "node_part": np.concatenate([np.full(len(p.cls), i) for i, p in enumerate(ps)]),
            "node_du": np.concatenate([np.full(len(p.cls), pos[(p.device, p.unit)]) for p in ps]),
            "node_int8": np.concatenate([np.full(len(p.cls), p.int8) for p in ps]),
            "cls": np.concatenate([p.cls for p in ps]),
            "f": np.concatenate([p.f for p in ps]),
            "r": np.concatenate([p.r for p in ps]),
            "w": np.concatenate([p.w for p in ps]),
            "scale": np.concatenate([p.scale for p in ps]),
            "const": np.array([p.const for p in ps]),
            "row": np.array([f[0] for f in flat]),
            "prim": np.array([f[1] for f in flat]),
            "sec": sec,
            "switch": np.array([f[3] for f in flat]),
        }
    return model.cache["arrays"]


def _plan_ms(model: Model, theta: dict) -> tuple[np.ndarray, dict[str, Any]]:
    a = _arrays(model)
    tabs = [unit_tables(theta, d, u, model.clocks[(d, u)], model.onchip[(d, u)]) for d, u in a["pairs"]]
    eff, mem, ovh = (np.stack([t[i] for t in tabs]) for i in range(3))
    inf, i8, onchip, chip = (np.array([t[i] for t in tabs]) for i in (3, 4, 5, 6))
    du, cls = a["node_du"], a["cls"]
    f = a["f"] / np.where(a["node_int8"], i8[du], 1.0)
    compute = f / eff[du, cls] * a["scale"]
    memory = (a["r"] / onchip[du] + a["w"]) / mem[du, cls] * a["scale"]
    n = len(model.parts)
    o = np.bincount(a["node_part"], weights=ovh[du, cls] * a["scale"], minlength=n)
    body = overlapped(
        np.bincount(a["node_part"], weights=compute, minlength=n),
        np.bincount(a["node_part"], weights=memory, minlength=n),
    )
    part = (o + body) * chip[a["du"]] + a["const"] + inf[a["du"]]
    part_x = np.append(part, np.inf)
    sec = np.where(a["sec"] < 0, len(part), a["sec"])
    has = (a["sec"] >= 0).any(1)
    plan = part[a["prim"]] + a["switch"] + np.where(has, part_x[sec].min(1), 0.0)
    return plan, a


def predict(model: Model, theta: dict, rows: np.ndarray | None = None) -> np.ndarray:
    """Predicted ms of the model's rows (all, or the indices ``rows``) at parameters ``theta``."""
    plan, a = _plan_ms(model, theta)
    out = np.full(len(model.plans), np.inf)
    np.minimum.at(out, a["row"], plan)
    return out if rows is None else out[rows]


def tool_factor(model: Model, theta: dict, rows: np.ndarray) -> np.ndarray:
    return np.exp([theta.get(("tool", t), 0.0) for t in model.rows["tool"].to_numpy()[rows]])


def _weights(rows: Any) -> np.ndarray:
    """Row sigma, widened where one source holds many rows on one chip and unit (one harness)."""
    n = rows.groupby(["source", "device", "units"])["model"].transform("size").to_numpy()
    return rows["sigma"].to_numpy() * np.sqrt(np.maximum(1.0, n / SOURCE_ROWS))


@dataclass(frozen=True)
class Fit:
    """Fitted parameters (log scale), the keys that were free, and which bounds are active."""

    theta: dict[tuple[str, ...], float]
    free: list[tuple[str, ...]]
    active: list[str]
    cost: float


def _prior(key: tuple[str, ...]) -> tuple[float, float, float, float]:
    """(centre, sd, lo, hi) on the log scale."""
    if key[0] == "unit":
        p = next(p for p in PARAMS if (p.unit, p.knob) == key[1:])
        return math.log(p.prior), PARAM_SD, math.log(p.lo), math.log(p.hi)
    if key[0] == "level":
        return 0.0, LEVEL_SD, -LEVEL_BOUND, LEVEL_BOUND
    if key[0] == "tool" and key[1] in RUNTIMES:
        return 0.0, RUNTIME_SD, -RUNTIME_BOUND, RUNTIME_BOUND
    sd = CHIP_SD if key[0] == "chip" else TOOL_SD
    return 0.0, sd, -TERM_BOUND, TERM_BOUND


def _solve(residuals: Any, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, sd: np.ndarray) -> Any:
    """``least_squares`` inside the bounds, restarted from its optimum (a restart renews the trust region a
    converged-looking fit may have shrunk) until the cost stops falling (:data:`FIT_ROUNDS` at most)."""
    from scipy.optimize import least_squares

    res = None
    for _ in range(FIT_ROUNDS):
        r = least_squares(
            residuals, np.clip(x, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), x_scale=sd, diff_step=1e-4,
            ftol=FIT_TOL, xtol=FIT_TOL, max_nfev=FIT_NFEV,
        )  # fmt: skip
        done = res is not None and r.cost > res.cost - FIT_TOL * max(1.0, res.cost)
        if res is None or r.cost < res.cost:
            res, x = r, r.x
        if done:
            break
    return res


def fit(model: Model, train: np.ndarray | None = None, *, start: dict | None = None) -> Fit:
    """Fit on the rows ``train`` (indices; all by default). Keys no training row informs stay at their prior.

    ``start``: parameters to start from (a fit on more rows converges in fewer steps from there).
    """
    idx = np.arange(len(model.plans)) if train is None else np.asarray(train)
    rows = model.rows.iloc[idx]
    units_used = {model.parts[pl[0]].unit for i in idx for pl in model.plans[i]}
    units_used |= {model.parts[s].unit for i in idx for pl in model.plans[i] for s, _ in pl[1]}
    chips = set(zip(rows["device"], rows["unit"], strict=True))
    tools = identified_tools(rows)
    has_w8a8 = bool((rows["quant"] == "w8a8").any())
    free = []
    for k in model.keys:
        if k[0] == "unit" and k[1] in units_used and (k[2] != "int8" or has_w8a8):
            free.append(k)
        elif k[0] == "chip" and (k[1], k[2]) in chips:
            free.append(k)
        elif k[0] == "level" and any(u == k[1] for _, u in chips):
            free.append(k)
        elif k[0] == "tool" and k[1] in tools:
            free.append(k)
    theta0 = {k: _prior(k)[0] for k in model.keys}
    pri = np.array([_prior(k) for k in free])
    mu, sd, lo, hi = pri.T
    meas = np.log(rows["latency_ms"].to_numpy())
    sig = _weights(rows)

    def residuals(x: np.ndarray) -> np.ndarray:
        th = dict(theta0)
        th.update(zip(free, x, strict=True))
        pred = predict(model, th, idx) * tool_factor(model, th, idx)
        return np.concatenate([(np.log(pred) - meas) / sig, (x - mu) / sd])

    x0 = np.array([(start or {}).get(k, m) for k, m in zip(free, mu, strict=True)])
    res = _solve(residuals, x0, lo, hi, sd)
    theta = dict(theta0)
    theta.update(zip(free, res.x, strict=True))
    active = []
    for k, v, a, b in zip(free, res.x, lo, hi, strict=True):
        if v - a < 1e-3 or b - v < 1e-3:
            side = "lower" if v - a < 1e-3 else "upper"
            active.append(f"{'.'.join(k[1:]) if k[0] == 'unit' else '.'.join(k)} at its {side} bound "
                          f"{math.exp(a if side == 'lower' else b):.4g}")  # fmt: skip
    return Fit(theta, free, active, float(res.cost))


def row_units(model: Model, theta: dict) -> list[str]:
    """The unit that runs most of each row (the primary of its cheapest plan)."""
    plan, a = _plan_ms(model, theta)
    best = predict(model, theta)
    units = [model.parts[p].unit for p in a["prim"]]
    out = [""] * len(model.plans)
    for j in np.flatnonzero(plan <= best[a["row"]]):
        out[a["row"][j]] = out[a["row"][j]] or units[j]
    return out


__all__ += ["identified_tools", "neon_profile", "predict", "row_units", "tool_factor", "unit_tables"]
