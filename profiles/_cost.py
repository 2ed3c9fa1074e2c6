"""The cost model: ``estimate_graph(graph, device, quant=...) -> Cost`` and ``estimate(model, ...)``.

Per layer ``i`` on compute unit ``u`` (all arrays over the graph's nodes, so a re-cost is a few numpy ops)::

    t[i, u] = overhead_u[c] + flops[i] / (peak_u(precision) * efficiency_u[c])
                            + (activation bytes[i] / onchip_ratio_u) / (bandwidth * mem_efficiency_u[c])
                            + weight bytes[i] / (bandwidth * weight_mem_efficiency_u[c])

with ``c`` the node's op class; a unit whose costs set ``overlap`` reads memory while it computes (the
larger of the two terms per layer, or a smooth max of their sums over all the layers it runs:
:func:`_part_times`), and its
``time_scale`` (a fitted chip term) multiplies its layer times; ``onchip_ratio`` is how much faster than DRAM a unit reads
activations that its on-chip memory (Neural Engine SRAM, GPU / CPU caches) holds. Units that fuse (Core ML) give folded batch norms and activations that
follow a compute op zero cost. Scheduling follows Core ML's ``all`` compute units: one primary unit runs
every layer it supports; layers it cannot run (Neural Engine fallbacks, or everything when ``fp32`` bars
the Neural Engine) go to the cheaper other unit, and every switch between units costs ``switch_cost_us``
plus copying the tensor. Each unit used adds its fixed per-inference overhead. The primary is the unit
giving the lowest *expected* total: the plan's prediction times the median measured / predicted ratio of its
unit's held-out errors (the profile's interval; 1 without one). So a unit the calibration is known to predict
too fast — spec-derived CPUs run 2.1x their predictions at the median — is not chosen for a prediction a few
percent below another unit's (a small pruned net on A11: CPU 4.99 ms predicted, 10.5 expected, against the
GPU's 5.48 and 3.75); ``latency_ms`` is the chosen plan's prediction and its interval that unit's. The
calibration fit (``profiles._applefit``) schedules by the predictions alone, so no profile's fitted terms
depend on its own intervals. A profile without an ``ane`` unit (A11) never schedules a layer on the Neural
Engine.

``weight_mem_efficiency`` defaults to ``mem_efficiency``; a layer's time is multiplied by
``1 + unaligned_slowdown_u[c]`` where its channels are not a multiple of ``channel_block`` (host CPUs' SIMD
width; the term is off on Apple units).

Quantization: weight-only schemes shrink the weight bytes a unit that holds compressed weights must read (the
Neural Engine decompresses on the fly, iOS 17+), grouped LUTs add a measured slowdown to weight layers there
(coremltools opt-resnet.md); ``w8a8`` runs at the unit's int8 rate with 1-byte activations where the unit
has an int8 path; ``fp32`` bars the Neural Engine (typed-execution.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._graph import Graph, extract_graph, unaligned
from profiles._quant import WEIGHT_THRESHOLD, QuantScheme, parse_quant
from profiles._registry import load_profile
from profiles._schema import FALLBACK_RULES, INTERVAL_LEVELS, OP_CLASSES, DeviceProfile, UnitCosts

__all__ = ["Cost", "disk_mb", "estimate", "estimate_graph", "weights_mb"]

MB = 1e6  # sizes are reported in 10^6 bytes (as Finder and Xcode report package sizes)
#: Slowdown of weight layers on the Neural Engine with grouped-channel LUTs, relative to one LUT per tensor.
#: [D] from coremltools docs-guides opt-resnet.md (ResNet-50, iPhone 15 Pro, iOS 18 seed): 4-bit per-tensor
#: 1.12 ms vs group 16: 1.38 ms, group 8: 1.34 ms (mean +21%), group 4: 1.71 ms (+53%).
GROUPED_LUT_PENALTY = {8: 0.21, 4: 0.53}
_COMPUTE = np.array([c in ("conv", "pw", "dw", "gconv", "linear") for c in OP_CLASSES])
FALLBACK_INDEX = {r: i for i, r in enumerate(FALLBACK_RULES)}
#: Exponent of the ``network`` overlap's smooth roofline (:func:`overlapped`): the share a unit runs costs
#: ``(C^p + M^p)^(1/p)`` of its summed compute ``C`` and memory ``M``, i.e. max(C, M) where one dominates and up
#: to 2^(1/p) = 9% more where they are equal (streaming hides most, not all, of the other term). Smooth, so the
#: Apple calibration's bounded fits (``profiles._applefit``) converge to their optimum instead of stalling on the
#: kink of a hard max, where which kink they stopped at followed the machine's floating-point rounding.
OVERLAP_P = 8.0

# Core ML .mlpackage layout, measured on packages written by coremltools 9 (see disk_mb's docstring).
_BLOB_HEADER = 64  # bytes of metadata per weight blob in weight.bin
_FILE_HEADER = 64  # bytes at the start of weight.bin
_MLMODEL_BASE = 3000.0  # model.mlmodel bytes: fixed part (program header, I/O descriptions) ...
_MLMODEL_PER_OP = 450.0  # ... plus this many bytes per op in the program (weights are const ops) ...
_MLMODEL_PER_COMPRESSED = 60.0  # ... plus this many per compressed tensor (LUT / scale const ops)
_MANIFEST = 617  # Manifest.json


def _grouped_penalty(group: int) -> float:
    if group <= 0:
        return 0.0
    if group >= 8:
        return GROUPED_LUT_PENALTY[8]
    if group <= 4:
        return GROUPED_LUT_PENALTY[4]
    return GROUPED_LUT_PENALTY[4] + (group - 4) / 4 * (GROUPED_LUT_PENALTY[8] - GROUPED_LUT_PENALTY[4])


# ----------------------------------------------------------------------------------------------------------
# sizes


def _blob(nbytes: Any) -> Any:
    """Bytes a blob takes in weight.bin: metadata header plus payload padded to 64 bytes."""
    return _BLOB_HEADER + np.ceil(np.asarray(nbytes) / 64.0) * 64.0


def _tensor_bytes(numel: np.ndarray, outch: np.ndarray, q: QuantScheme, *, blobs: bool) -> np.ndarray:
    """Stored bytes per weight tensor under scheme ``q`` (payload only, or weight.bin blobs)."""
    wrap = _blob if blobs else (lambda b: np.asarray(b, dtype=float))
    plain = wrap(numel * q.float_bits / 8)
    if not q.compresses_weights:
        return plain
    big = numel > WEIGHT_THRESHOLD
    if q.kind in ("linear", "w8a8"):  # int8 data + one fp16 scale per output channel
        packed = wrap(numel) + wrap(outch * 2.0)
    else:
        luts = np.ceil(outch / q.group_size) if q.group_size else np.ones_like(numel)
        if q.group_size:  # coremltools skips tensors whose output channels do not split into groups
            big &= np.mod(outch, q.group_size) == 0
        packed = wrap(np.ceil(numel * q.weight_bits / 8.0)) + wrap(luts * (2**q.weight_bits) * 2.0)
    return np.where(big, packed, plain)


def _as_graph(graph_or_model: Any, input_shape: Any = None) -> Graph:
    if isinstance(graph_or_model, Graph):
        return graph_or_model
    if input_shape is None:
        raise ProfileError("disk_mb(model, quant) needs input_shape= when given a model instead of a Graph")
    return extract_graph(graph_or_model, input_shape)


def weights_mb(graph_or_model: Any, quant: str | None = "fp16", *, input_shape: Any = None) -> float:
    """Weight storage in MB under ``quant``: compressed payloads, LUTs and scales (no file overheads)."""
    g = _as_graph(graph_or_model, input_shape)
    q = parse_quant(quant)
    return float(_tensor_bytes(g.arrays["w_numel"], g.arrays["w_outch"], q, blobs=False).sum()) / MB


def disk_mb(graph_or_model: Any, quant: str | None = "fp16", *, input_shape: Any = None) -> float:
    """Predicted size in MB of the Core ML ``.mlpackage`` of a model compressed with ``quant``.

    The formula, checked against packages coremltools 9 writes (``weight.bin`` exact to the byte on small
    nets; whole packages of MobileNetV2, ResNet-50 and a MobileNetV3-Large multi-task net within 2.2% for
    fp16, int8, pal4 and pal4-g16)::

        disk = Manifest.json (617 B) + model.mlmodel (3000 B + 450 B per op + 60 B per compressed tensor)
             + weight.bin = 64 B + sum over blobs of (64 B header + payload padded to 64 B)

    Blobs per weight tensor: fp16 (fp32 for ``fp32``) data for tensors of <= 2048 elements and for the
    uncompressed schemes; ``int8``/``w8a8``: int8 data + fp16 per-output-channel scales; ``palN``: N-bit
    packed indices + a 2^N-entry fp16 LUT (one per group of K output channels for ``palN-gK``; tensors whose
    output channels are not a multiple of K stay fp16, as coremltools skips them). A batch norm that follows a
    conv
    is folded into it (one bias). Pass a :class:`Graph`, or a model with ``input_shape=``.
    """
    g = _as_graph(graph_or_model, input_shape)
    q = parse_quant(quant)
    weight_bin = _FILE_HEADER + float(
        _tensor_bytes(g.arrays["w_numel"], g.arrays["w_outch"], q, blobs=True).sum()
    )
    n_ops = int((~g.arrays["fused"]).sum()) + len(g.arrays["w_numel"])
    n_compressed = int((g.arrays["w_numel"] > WEIGHT_THRESHOLD).sum()) if q.compresses_weights else 0
    mlmodel = _MLMODEL_BASE + _MLMODEL_PER_OP * n_ops + _MLMODEL_PER_COMPRESSED * n_compressed
    return (weight_bin + mlmodel + _MANIFEST) / MB


# ----------------------------------------------------------------------------------------------------------
# latency


@dataclass(frozen=True)
class _Plan:
    unit: np.ndarray  # unit index per node
    ms: np.ndarray  # predicted ms per node
    total_ms: float
    used: tuple[str, ...]
    switches: int


@dataclass(frozen=True)
class UnitTerms:
    """What every node would cost on one unit, split by the free parameters it scales (``_unit_times``).

    ``t = scale * (overhead[cls] + flop_ms / efficiency[cls] + (act_ms / onchip + weight_ms) / mem[cls])
    + const_ms``
    on live nodes (fused nodes cost nothing); ``flop_ms`` already includes the int8 speed-up where ``int8``.
    """

    cls: np.ndarray
    flop_ms: np.ndarray  # ms at 100% of the peak rate
    act_ms: np.ndarray  # activation bytes, ms at 100% of the DRAM bandwidth
    weight_ms: np.ndarray  # weight bytes, ms at 100% of the DRAM bandwidth
    live: np.ndarray  # False where the unit fuses the node into its producer
    scale: np.ndarray  # grouped-LUT slowdown of weight layers (1 elsewhere)
    const_ms: np.ndarray  # per-call module overhead (eager torch only)
    int8: bool


def unit_terms(g: Graph, profile: DeviceProfile, name: str, q: QuantScheme) -> UnitTerms:
    """The parameter-free parts of every node's time on unit ``name`` (see :class:`UnitTerms`)."""
    unit = profile.units[name]
    a = g.arrays
    int8 = q.act == "int8" and "int8" in unit.peak_gflops
    if name == "cpu" or q.name == "fp32":
        prec, act_b, w_b = "fp32", 4.0, 4.0
    elif int8:
        prec, act_b, w_b = "int8", 1.0, 1.0
    else:
        prec, act_b = "fp16", 2.0
        w_b = q.weight_bits / 8.0 if unit.holds_compressed_weights and q.compresses_weights else 2.0
    rate = unit.peak(prec) * (unit.costs.int8_speedup if int8 else 1.0) * 1e6  # FLOP per ms
    bw = unit.bandwidth_gbs.value * 1e6  # bytes per ms
    scale = np.ones(len(g))
    if q.kind == "palette" and q.group_size and unit.holds_compressed_weights:
        scale = np.where(a["params"] > WEIGHT_THRESHOLD, 1.0 + _grouped_penalty(q.group_size), 1.0)
    live = ~a["fused"] if unit.fuses else np.ones(len(g), dtype=bool)
    const = a["calls"] * (unit.costs.module_overhead_us * 1e-3)
    act_ms, weight_ms = a["act_elems"] * act_b / bw, a["params"] * w_b / bw
    return UnitTerms(a["cls"], a["flops"] / rate, act_ms, weight_ms, live, scale, const, int8)


def _node_costs(g: Graph, profile: DeviceProfile, name: str, q: QuantScheme) -> tuple:
    """(overhead, compute, memory, constant) ms of every node on unit ``name`` (0 where fused)."""
    tab = profile.tables[name]
    costs = profile.units[name].costs
    u = unit_terms(g, profile, name, q)
    w = np.where(u.live, u.scale, 0.0)
    compute = u.flop_ms / tab["eff"][u.cls] * w
    memory = (u.act_ms / costs.onchip_ratio / tab["mem"][u.cls] + u.weight_ms / tab["wmem"][u.cls]) * w
    overhead = tab["ovh"][u.cls] * w
    if costs.channel_block:  # host CPUs: ops off the SIMD channel block run slower
        slow = 1.0 + tab["slow"][u.cls] * unaligned(g, costs.channel_block)
        overhead, compute, memory = overhead * slow, compute * slow, memory * slow
    return overhead, compute, memory, u.const_ms


def overlapped(compute: Any, memory: Any) -> Any:
    """``(compute^p + memory^p)^(1/p)`` with p = :data:`OVERLAP_P`, elementwise, exact where either is 0."""
    c, m = np.asarray(compute, dtype=float), np.asarray(memory, dtype=float)
    top = np.maximum(c, m)
    safe = np.where(top > 0, top, 1.0)
    return top * ((c / safe) ** OVERLAP_P + (m / safe) ** OVERLAP_P) ** (1.0 / OVERLAP_P)


def _part_times(costs: Any, unit: UnitCosts, mask: np.ndarray) -> np.ndarray:
    """ms of the nodes in ``mask`` when one unit runs them (0 elsewhere), under the unit's overlap rule.

    ``none``: overhead + compute + memory per layer; ``layer``: overhead + max(compute, memory) per layer;
    ``network``: the unit streams memory while it computes across layers, so the share it runs costs
    :func:`overlapped` (sum compute, sum memory) — a smooth max — plus the overheads, spread over its layers in
    proportion to their larger term.
    Then times the unit's ``time_scale`` (its chip term).
    """
    ovh, compute, memory, const = (np.where(mask, x, 0.0) for x in costs)
    if unit.overlap == "none":
        body = compute + memory
    else:
        body = np.maximum(compute, memory)
        if unit.overlap == "network" and body.sum() > 0:
            body = body * (float(overlapped(compute.sum(), memory.sum())) / body.sum())
    return (ovh + body) * unit.time_scale + const


def _unit_times(g: Graph, profile: DeviceProfile, name: str, q: QuantScheme) -> np.ndarray:
    """Predicted ms of every node if unit ``name`` ran the whole graph."""
    costs = _node_costs(g, profile, name, q)
    return _part_times(costs, profile.units[name].costs, np.ones(len(g), dtype=bool))


#: Core ML compute-unit settings: which of a profile's units each may use.
COMPUTE_UNITS = {
    "all": ("cpu", "gpu", "ane"),
    "cpu_and_gpu": ("cpu", "gpu"),
    "cpu_only": ("cpu",),
    "gpu_only": ("gpu",),  # what Core ML does with .cpuAndGPU when the GPU runs every layer
}


def restrict_units(profile: DeviceProfile, compute_units: str) -> DeviceProfile:
    """The profile limited to a Core ML compute-unit setting (``all``, ``cpu_and_gpu``, ``cpu_only``,
    ``gpu_only``)."""
    from dataclasses import replace

    if compute_units not in COMPUTE_UNITS:
        raise ProfileError(
            f"compute_units must be one of {', '.join(COMPUTE_UNITS)}, but got {compute_units!r}"
        )
    keep = {n: u for n, u in profile.units.items() if n in COMPUTE_UNITS[compute_units]}
    if keep == profile.units:
        return profile
    if not keep:
        raise ProfileError(f"device {profile.name} has none of the units {COMPUTE_UNITS[compute_units]}")
    return replace(profile, units=keep)


def schedule(
    g: Graph, profile: DeviceProfile, q: QuantScheme, *, expected: dict[str, float] | None = None
) -> _Plan:
    """The plan with the lowest total, each weighted by ``expected[primary unit]`` (default 1) for the choice."""
    names = list(profile.units)
    weight = expected or {}
    times = {n: _node_costs(g, profile, n, q) for n in names}
    fallback = np.zeros(len(g), dtype=bool)
    for rule in profile.ane_fallbacks:
        fallback |= g.arrays["fallback"][:, FALLBACK_INDEX[rule]]
    best: _Plan | None = None
    for primary in names:
        if primary == "ane" and q.name == "fp32":
            continue  # fp32 bars the Neural Engine
        off = fallback if primary == "ane" else np.zeros(len(g), dtype=bool)
        others = [n for n in names if n != primary and n != "ane"] if primary == "ane" else []
        plan = _plan(g, profile, times, primary, off, others, q)
        if best is None or plan.total_ms * weight.get(primary, 1.0) < best.total_ms * weight.get(
            best.used[0], 1.0
        ):
            best = plan
    assert best is not None  # every profile has a cpu or gpu unit (schema)
    return best


def _plan(
    g: Graph,
    profile: DeviceProfile,
    times: dict,
    primary: str,
    off: np.ndarray,
    others: list[str],
    q: QuantScheme,
) -> _Plan:
    names = list(profile.units)
    unit = np.full(len(g), names.index(primary))
    split = bool(off.any() and others)
    ms = _part_times(times[primary], profile.units[primary].costs, ~off if split else np.ones(len(g), bool))
    used = [primary]
    switches = 0
    if split:
        shares = {n: _part_times(times[n], profile.units[n].costs, off) for n in others}
        sec = min(
            others, key=lambda n: float(shares[n].sum()) + profile.units[n].costs.inference_overhead_us * 1e-3
        )
        unit[off] = names.index(sec)
        ms[off] = shares[sec][off]
        used.append(sec)
        edges = np.flatnonzero(np.diff(off.astype(np.int8)) != 0)
        switches = len(edges)
        act_b = 1.0 if q.act == "int8" else 2.0
        bw = profile.units[primary].bandwidth_gbs.value * 1e6
        per = profile.switch_cost_us.value * 1e-3 + g.arrays["out_elems"][edges] * act_b / bw
        ms[edges + 1] += per  # the switch is charged to the layer after it
    total = float(ms.sum()) + sum(profile.units[u].costs.inference_overhead_us for u in used) * 1e-3
    return _Plan(unit, ms, total, tuple(used), switches)


# ----------------------------------------------------------------------------------------------------------
# memory


def _memory_mb(g: Graph, profile: DeviceProfile, q: QuantScheme, plan: _Plan) -> float:
    primary = profile.units[plan.used[0]]
    if primary.name == "cpu" or q.name == "fp32":
        act_bytes = g.peaks["raw"] * 4.0
    elif primary.pad_last_axis_bytes and q.act == "int8":
        act_bytes = g.peaks["int8_pad64"] * 1.0
    elif primary.pad_last_axis_bytes:
        act_bytes = g.peaks["fp16_pad64"] * 2.0
    else:
        act_bytes = g.peaks["raw"] * 2.0
    if primary.holds_compressed_weights and q.compresses_weights:
        held = weights_mb(g, q.name) * MB
    else:
        held = float(g.arrays["w_numel"].sum()) * (4.0 if primary.name == "cpu" or q.name == "fp32" else 2.0)
    return (act_bytes + held) / MB


# ----------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Cost:
    """What a model costs on one device: latency, memory, size, per layer, and where the numbers come from."""

    latency_ms: float
    peak_memory_mb: float
    weights_mb: float
    disk_mb: float
    device: str
    source: str
    quant: str
    units: tuple[str, ...]
    calibration_error_pct: float | None = None
    #: the latency's prediction interval (10th / 90th percentile), from the held-out errors of the profile's
    #: calibration on the compute unit that runs the model; None where the profile has no interval (host)
    latency_ms_p10: float | None = None
    latency_ms_p90: float | None = None
    _ratios: tuple[tuple[float, float], ...] = field(default=(), repr=False, compare=False)
    graph: Any = field(default=None, repr=False, compare=False)  # the Graph that was costed
    _unit: Any = field(default=None, repr=False, compare=False)
    _ms: Any = field(default=None, repr=False, compare=False)
    _unit_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _overheads: tuple[float, ...] = field(default=(), repr=False, compare=False)

    @cached_property
    def layers(self) -> Any:
        """One row per recorded op (op, class, name, shapes, FLOPs, bytes, params, unit, fused, output, ms),
        then one ``inference`` row per compute unit used (its fixed per-inference overhead); ``ms`` sums to
        ``latency_ms``."""
        import pandas as pd

        g, a = self.graph, self.graph.arrays
        act_b = 4.0 if self.quant == "fp32" or self.units == ("cpu",) else 2.0
        rows = pd.DataFrame(
            {
                "op": [n.op for n in g.nodes],
                "class": [n.cls for n in g.nodes],
                "name": [n.name for n in g.nodes],
                "input_shapes": [n.in_shapes for n in g.nodes],
                "output_shape": [n.out_shape for n in g.nodes],
                "flops": a["flops"],
                "bytes": a["act_elems"] * act_b + a["params"] * parse_quant(self.quant).weight_bits / 8,
                "params": a["params"].astype(np.int64),
                "unit": [self._unit_names[u] for u in self._unit],
                "fused": a["fused"],
                "output": a["group"],
                "ms": self._ms,
            }
        )
        extra = pd.DataFrame(
            {
                "op": "inference",
                "class": "overhead",
                "name": [f"per-inference overhead ({u})" for u in self.units],
                "input_shapes": [()] * len(self.units),
                "output_shape": [()] * len(self.units),
                "flops": 0.0,
                "bytes": 0.0,
                "params": 0,
                "unit": list(self.units),
                "fused": False,
                "output": "shared",
                "ms": list(self._overheads),
            }
        )
        return pd.concat([rows, extra], ignore_index=True)

    def as_dict(self) -> dict[str, Any]:
        """The scalar figures (for JSON model cards and result tables)."""
        return {
            "device": self.device,
            "quant": self.quant,
            "latency_ms": self.latency_ms,
            "peak_memory_mb": self.peak_memory_mb,
            "weights_mb": self.weights_mb,
            "disk_mb": self.disk_mb,
            "units": list(self.units),
            "source": self.source,
            "calibration_error_pct": self.calibration_error_pct,
            "latency_ms_p10": self.latency_ms_p10,
            "latency_ms_p90": self.latency_ms_p90,
        }

    def latency_ms_at(self, confidence: float) -> float:
        """The latency this model stays under with probability ``confidence`` (0.5-0.95), by the held-out
        errors of its profile: the prediction times that quantile of measured / predicted. Without an
        interval (host profile) the prediction itself."""
        return self.latency_ms * ratio_at(self._ratios, confidence)

    def confidence_within(self, budget_ms: float) -> float | None:
        """The probability, by the held-out errors, that the latency stays within ``budget_ms``: the level
        of the interval quantile that meets the budget, clipped to the stored levels (0.05-0.95). None
        without an interval."""
        if not self._ratios:
            return None
        levels, values = zip(*self._ratios, strict=True)
        x = np.log(budget_ms / self.latency_ms)
        return float(np.interp(x, np.log(values), levels))

    def by_output(self) -> Any:
        """Latency, parameters and weight MB per output group (``shared`` = the layers every head uses)."""
        import pandas as pd

        df = self.layers
        out = df.groupby("output", sort=False).agg(
            ms=("ms", "sum"), params=("params", "sum"), layers=("op", "size")
        )
        q = parse_quant(self.quant)
        a = self.graph.arrays
        per_tensor = _tensor_bytes(a["w_numel"], a["w_outch"], q, blobs=False) / MB
        groups = a["group"][a["w_owner"]] if len(a["w_owner"]) else np.array([], dtype=object)
        w = (
            pd.Series(per_tensor, index=groups).groupby(level=0).sum()
            if len(per_tensor)
            else pd.Series(dtype=float)
        )
        out["weights_mb"] = w.reindex(out.index).fillna(0.0)
        return out


def interval_ratios(profile: DeviceProfile, unit: str) -> tuple[tuple[float, float], ...]:
    """(level, measured / predicted quantile) pairs of a profile's interval on ``unit`` (empty if none)."""
    qs = profile.calibration.interval.get(unit)
    if not qs:
        return ()
    return tuple(sorted((INTERVAL_LEVELS[k], float(v)) for k, v in qs.items() if k in INTERVAL_LEVELS))


def ratio_at(ratios: tuple[tuple[float, float], ...], confidence: float) -> float:
    """The measured / predicted ratio at quantile ``confidence`` (log-linear between stored levels)."""
    lo, hi = min(INTERVAL_LEVELS.values()), max(INTERVAL_LEVELS.values())
    if not lo <= confidence <= hi:
        raise ProfileError(f"confidence must lie in [{lo}, {hi}], but got {confidence!r}")
    if not ratios:
        return 1.0
    levels, values = zip(*ratios, strict=True)
    return float(np.exp(np.interp(confidence, levels, np.log(values))))


def estimate_graph(
    graph: Graph, device: str | DeviceProfile, *, quant: str | None = None, compute_units: str = "all"
) -> Cost:
    """Cost of an extracted graph on ``device`` (a profile name, path or :class:`DeviceProfile`).

    ``quant`` defaults to the profile's ``default_quant`` (``fp16`` on Apple devices, ``fp32`` on the host).
    ``compute_units`` limits the units as Core ML's setting does (``all``, ``cpu_and_gpu``, ``cpu_only``,
    ``gpu_only``). Takes well under a millisecond; the per-layer table is built only when ``Cost.layers``
    is read.
    """
    if not isinstance(graph, Graph):
        raise ProfileError(
            f"graph must be a profiles.Graph from extract_graph(), but got {type(graph).__name__}"
        )
    profile = restrict_units(load_profile(device), compute_units)
    q = parse_quant(quant, default=profile.default_quant)
    medians = {u: ratio_at(r, 0.5) for u in profile.units if (r := interval_ratios(profile, u))}
    plan = schedule(graph, profile, q, expected=medians)
    cal = profile.calibration
    ratios = interval_ratios(profile, plan.used[0])
    return Cost(
        latency_ms=plan.total_ms,
        peak_memory_mb=_memory_mb(graph, profile, q, plan),
        weights_mb=weights_mb(graph, q.name),
        disk_mb=disk_mb(graph, q.name),
        device=profile.name,
        source=profile.basis,
        quant=q.name,
        units=plan.used,
        calibration_error_pct=cal.loo_median_abs_pct,
        latency_ms_p10=plan.total_ms * ratio_at(ratios, 0.1) if ratios else None,
        latency_ms_p90=plan.total_ms * ratio_at(ratios, 0.9) if ratios else None,
        _ratios=ratios,
        graph=graph,
        _unit=plan.unit,
        _ms=plan.ms,
        _unit_names=tuple(profile.units),
        _overheads=tuple(profile.units[u].costs.inference_overhead_us * 1e-3 for u in plan.used),
    )


def estimate(
    model: Any,
    input_shape: Any,
    device: str | DeviceProfile,
    *,
    quant: str | None = None,
    compute_units: str = "all",
) -> Cost:
    """Cost of a torch model at ``input_shape`` on ``device``: extracts the graph once, then costs it.

    To cost one model on many devices, call :func:`extract_graph` once and :func:`estimate_graph` per device.
    """
    profile = load_profile(device)  # fail on a bad device before running the model
    return estimate_graph(
        extract_graph(model, input_shape), profile, quant=quant, compute_units=compute_units
    )
