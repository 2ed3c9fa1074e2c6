"""Measuring this machine: ``measure_host()`` writes a ``host`` profile fitted to torch latencies.

Steps (``compress profile measure`` adds 24 search-space nets; the README gives its run time):

1. peak rates: best GFLOP/s of a few fp32 matrix products and GB/s of a large copy, at the thread count used;
2. benchmarks: every op class as a single layer at MobileNetV3-like shapes and at shapes outside that grid
   (odd widths, 7x7 depthwise, wide layers at a few pixels, SiLU, mean, upsampling;
   ``_nets.micro_benchmarks``), random MobileNetV3-style multi-task nets (``_nets.random_mbv3``) and random
   MobileNet-like CNNs of other shapes (``_nets.random_cnn``, from a seed no validation uses);
3. op times in context: every op of every benchmark is timed as it runs inside its net
   (:func:`profiles._layer_timing.time_layers`), minimum over round-robin passes, so caches are as warm or
   cold as in a real inference and a burst of load from other processes hits one pass, not every sample;
4. whole-net times: the nets (not the single layers) timed together with interleaved rounds
   (:func:`measure_latencies`, 20 rounds of 25 ms, as ``benchmarks/host_fidelity.py`` times candidates; with
   5 rounds of 15 ms the same nets read 7-15% slower than that benchmark timed them minutes later);
5. fit: per op class, non-negative least squares on the relative error of the op times fits a time per FLOP
   (no faster than the measured peak), per activation byte, per weight byte and per op. Weight bytes are
   apart because a net's weights stream from beyond the core's 2 MB L2 on every inference while most
   activations stay in it (random CNNs with 10-20M parameters at 64-96 px ran 15-49% slower than a shared
   per-byte term predicted). Conv classes also get the slowdown of ops whose channels are not a multiple of
   the SIMD block (16 fp32 with AVX-512): fitted on aligned nodes, then the median excess of the others
   (depthwise convs: about +20-27% here; the cause of most of the odd-width nets' underprediction). Then,
   on the whole-net times, one scale per term (FLOP cost above the peak, activation bytes, weight bytes,
   per-op; op times measured one by one inside a net ran slower than the same ops back to back) and the
   framework overhead between ops (per op, per module call, per inference), by bounded least squares on
   relative error. The leave-one-out error of every whole net (fit without that benchmark) is stored.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._graph import Graph, unaligned
from profiles._layer_timing import time_layers
from profiles._measure import measure_latencies, torch_threads
from profiles._nets import micro_benchmarks, random_cnn, random_mbv3
from profiles._registry import host_profile_path
from profiles._schema import (
    OP_CLASSES,
    Calibration,
    CalibrationRow,
    ComputeUnit,
    DeviceProfile,
    Sourced,
    UnitCosts,
    dump_profile,
)

__all__ = [
    "REFERENCE_NET",
    "fit_host",
    "measure_host",
    "measure_peaks",
    "random_nets",
    "reference_net",
    "say",
]

_NC = len(OP_CLASSES)


def measure_peaks(*, threads: int = 1) -> tuple[float, float]:
    """(GFLOP/s of the best fp32 matrix product, GB/s of a 64 MB copy) at ``threads`` threads."""
    import torch

    with torch_threads(threads), torch.inference_mode():
        best = 0.0
        for n in (256, 512, 1024):
            a, b = torch.rand(n, n), torch.rand(n, n)
            a @ b
            reps = max(1, int(2e8 / n**3))
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(reps):
                    a @ b
                best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
        src = torch.rand(16 * 2**20)
        dst = torch.empty_like(src)
        dst.copy_(src)
        bw = 0.0
        for _ in range(5):
            t0 = time.perf_counter()
            dst.copy_(src)
            bw = max(bw, 2 * src.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return best, bw


#: Feature columns of a node on the host: FLOPs, activation bytes, weight bytes, 1 (per-op).
_TERMS = ("flop", "act_byte", "weight_byte", "op")
#: SIMD width in fp32 channels of the kernels torch runs (oneDNN blocks channels by 16 with AVX-512, 8 else).
#: Measured here (one thread): a 3x3 depthwise conv at 28 px takes 106 us with 64 channels and 128-135 us
#: with 63 or 65; 96 vs 97 channels 151 vs 182 us; pointwise convs, batch norm and ReLU show no such step.
_CHANNEL_BLOCK = 16
#: Op classes whose unaligned slowdown is fitted: depthwise and dense k x k convs (a stem conv at 160 px with
#: 15 or 17 output channels took 192 and 259 us against 145 us with 16); pointwise convs showed none (95, 96
#: and 97 channels: 69, 71, 73 us), and fitting them one lets context differences pose as a slowdown.
_ALIGNED_CLASSES = ("conv", "dw")
#: Most an op can slow down off the block: a channel count just past a block boundary pads to twice the work.
_MAX_SLOWDOWN = 1.0
#: Fewest aligned and unaligned nodes of a class to fit its slowdown from.
_MIN_NODES_FOR_SLOWDOWN = 8


def _node_rows(graph: Graph) -> np.ndarray:
    """Per node [FLOPs, activation bytes, weight bytes at fp32, 1]: the cost model's features on the host."""
    a = graph.arrays
    return np.column_stack([a["flops"], a["act_elems"] * 4.0, a["params"] * 4.0, np.ones(len(graph))])


def _channel_block() -> int:
    import torch

    return _CHANNEL_BLOCK if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def _nnls_rel(A: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares of ``A x = b`` weighted by ``1 / y`` (relative error of the op times ``y``;
    every op counts, small or large)."""
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(y, 1e-4)
    A, b = A * w[:, None], b * w
    scale = np.maximum(A.max(axis=0), 1e-30)
    sol, _ = nnls(A / scale, b, maxiter=50 * A.shape[1])
    return sol / scale


def _class_fit(
    graphs: list[Graph], node_ms: list[np.ndarray], floor: float, block: int = _CHANNEL_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Per op class: ``coef`` (ms per FLOP >= floor, per activation byte, per weight byte, per op) by NNLS on
    relative error of in-context node times, and ``slow``, the slowdown of ops whose channels are not a
    multiple of ``block`` (alternating: the costs on all nodes with the unaligned ones divided by ``1 +
    slow``, then ``slow`` as the median excess of the unaligned ones, within ``[0, _MAX_SLOWDOWN]``)."""
    X = np.vstack([_node_rows(g) for g in graphs])
    y = np.concatenate(node_ms)
    cls = np.concatenate([g.arrays["cls"] for g in graphs])
    off = np.concatenate([unaligned(g, block) for g in graphs])
    coef = np.zeros((_NC, len(_TERMS)))
    coef[:, 0] = floor
    slow = np.zeros(_NC)
    for c, name in enumerate(OP_CLASSES):
        rows = cls == c
        if not rows.any():
            continue
        A, u = X[rows], off[rows].astype(float)
        split = name in _ALIGNED_CLASSES and min(u.sum(), (1 - u).sum()) >= _MIN_NODES_FOR_SLOWDOWN
        for _ in range(12 if split else 1):
            yy = y[rows] / (1.0 + slow[c] * u)
            coef[c] = _nnls_rel(A, np.maximum(yy - A[:, 0] * floor, 0.0), yy) + np.array([floor, 0, 0, 0])
            if split:
                ratio = y[rows][u > 0] / (A[u > 0] @ coef[c])
                slow[c] = float(np.clip(np.median(ratio) - 1.0, 0.0, _MAX_SLOWDOWN))
    return coef, slow


def _terms(g: Graph, coef: np.ndarray, slow: np.ndarray, block: int) -> np.ndarray:
    """Per node and term: the predicted ms, the unaligned slowdown included."""
    cls = g.arrays["cls"]
    return _node_rows(g) * coef[cls] * (1.0 + slow[cls] * unaligned(g, block))[:, None]


#: Whole nets needed before their totals also rescale the per-class terms (else only overheads are fitted).
_MIN_NETS_TO_RESCALE = 12
#: Range of those scales: op times measured one by one inside a net (hooks, timers) run slower or faster than
#: the same ops back to back; whole nets correct that by a common factor per term, not reshape the classes.
_SCALE_BOUNDS = (0.5, 2.0)

#: Most a forward call may cost beyond its ops, in ms: an empty ``nn.Module`` forward under
#: ``inference_mode`` returning a dict took 2.7 us here; unbounded, the fit let a constant of up to 1.85 ms
#: soak up whole-net times inflated by load, which then dominated the estimates of small nets.
_MAX_INFERENCE_MS = 0.1

_Fit = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]


def _glue_fit(
    graphs: list[Graph], totals: np.ndarray, coef: np.ndarray, slow: np.ndarray, floor: float, block: int
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Fit the per-class costs to whole-net times: ``(coef rescaled, (ms per op, per call, per inference))``.

    The whole-net time is modelled as ``s_flop * sum(FLOP terms) + s_act * sum(activation-byte terms) +
    s_weight * sum(weight-byte terms) + s_op * sum(per-op terms)`` plus framework overhead between ops (per
    op, per ``nn.Module`` call, per inference up to ``_MAX_INFERENCE_MS``), fitted by bounded least squares on
    the relative error. The four scales (within ``_SCALE_BOUNDS``; the FLOP scale acts on each class's cost
    above the measured peak, so no class runs faster than it) stay 1 with fewer than ``_MIN_NETS_TO_RESCALE``
    nets.
    """
    from scipy.optimize import lsq_linear

    n, k = len(graphs), len(_TERMS)
    above = coef.copy()
    above[:, 0] -= floor  # the FLOP scale acts on the cost above the measured peak, which stays a hard limit
    at_peak = coef * 0.0
    at_peak[:, 0] = floor
    terms = np.array([_terms(g, above, slow, block).sum(axis=0) for g in graphs]).reshape(n, k)
    fixed = np.array([_terms(g, at_peak, slow, block).sum() for g in graphs])
    ops = np.array([len(g) for g in graphs], dtype=float)
    calls = np.array([g.arrays["calls"].sum() for g in graphs], dtype=float)
    A = np.column_stack([terms, ops, calls, np.ones(n)]) / totals[:, None]
    lo, hi = _SCALE_BOUNDS
    glue = [np.inf, np.inf, _MAX_INFERENCE_MS]  # per op, per call, per inference
    if n >= _MIN_NETS_TO_RESCALE:
        lower, upper = [lo] * k + [0.0] * 3, [hi] * k + glue
    else:  # too few nets to tell a scale from an overhead: keep the node-level fit, fit the overheads
        lower, upper = [1.0 - 1e-9] * k + [0.0] * 3, [1.0 + 1e-9] * k + glue
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    bounds = (np.array(lower) * scale, np.array(upper) * scale)
    sol = lsq_linear(A / scale, 1.0 - fixed / totals, bounds=bounds).x / scale
    d_op, d_call, eps = (float(v) for v in sol[k:])
    return above * sol[None, :k] + at_peak, (d_op, d_call, eps)


def _predict(g: Graph, fit: _Fit, block: int) -> float:
    coef, slow, (d_op, d_call, eps) = fit
    return float(_terms(g, coef, slow, block).sum() + d_op * len(g) + d_call * g.arrays["calls"].sum() + eps)


def fit_host(
    graphs: list[Graph],
    node_ms: list[np.ndarray],
    total_ms: np.ndarray,
    *,
    peak_gflops: float,
    bandwidth_gbs: float,
    glue_mask: Any = None,
    channel_block: int = _CHANNEL_BLOCK,
) -> tuple[UnitCosts, np.ndarray, np.ndarray]:
    """Fit host costs: per-class costs on in-context node times, framework overhead on whole-net times.

    ``node_ms[i]`` holds the measured ms of each node of ``graphs[i]`` (:func:`profiles._layer_timing.time_layers`),
    ``total_ms[i]`` its whole-forward latency; ``glue_mask`` selects the benchmarks whose whole-net times fit
    the framework overhead (default: all). ``channel_block``: the CPU's SIMD width in fp32 channels. Returns
    (costs, in-sample and leave-one-out predictions of the totals); each leave-one-out prediction comes from
    a fit without that benchmark's nodes and total (NaN where ``total_ms`` is NaN: not timed whole).
    """
    totals = np.asarray(total_ms, dtype=float)
    floor = 1.0 / (peak_gflops * 1e6)  # no op class runs faster than the measured peak
    glue_rows = np.ones(len(graphs), dtype=bool) if glue_mask is None else np.asarray(glue_mask, dtype=bool)
    glue_rows = glue_rows & np.isfinite(totals)

    def fit(keep: list[int]) -> _Fit:
        c, slow = _class_fit([graphs[j] for j in keep], [node_ms[j] for j in keep], floor, channel_block)
        g = [j for j in keep if glue_rows[j]]
        c, glue = _glue_fit([graphs[j] for j in g], totals[g], c, slow, floor, channel_block)
        return c, slow, glue

    full = fit(list(range(len(graphs))))
    fitted = np.array([_predict(g, full, channel_block) for g in graphs])
    loo = np.full(len(graphs), np.nan)
    for i in np.flatnonzero(glue_rows):
        loo[i] = _predict(graphs[i], fit([j for j in range(len(graphs)) if j != i]), channel_block)
    coef, slow, (delta, per_call, eps) = full
    alpha, beta, beta_w, gamma = coef[:, 0], coef[:, 1], coef[:, 2], coef[:, 3] + delta
    eff = np.clip(1.0 / (alpha * peak_gflops * 1e6), 1e-4, 1.0)

    def mem(b: np.ndarray) -> np.ndarray:
        return np.clip(1.0 / np.maximum(b * bandwidth_gbs * 1e6, 1e-12), 1e-3, 1e4)

    def per_class(values: np.ndarray, digits: int = 6) -> dict[str, float]:
        return {c: round(float(v), digits) for c, v in zip(OP_CLASSES, values, strict=True)}

    costs = UnitCosts(
        efficiency=per_class(eff),
        mem_efficiency=per_class(mem(beta)),
        overhead_us=per_class(gamma * 1e3, 4),
        inference_overhead_us=round(eps * 1e3, 4),
        module_overhead_us=round(per_call * 1e3, 4),
        basis="measured",
        note=(
            "fitted by measure_host: per-class NNLS on in-context op times (FLOPs, activation bytes, weight "
            "bytes, per op; odd channel counts apart), rescaled and framework overhead fitted on whole nets"
        ),
        weight_mem_efficiency=per_class(mem(beta_w)),
        channel_block=int(channel_block),
        unaligned_slowdown={c: round(float(v), 4) for c, v in zip(OP_CLASSES, slow, strict=True) if v > 0},
    )
    return costs, fitted, loo


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def say(progress: bool, message: str) -> None:
    """A progress line on stderr (profiles imports nothing of compress, so not compress.progress's bar)."""
    if progress:
        print(message, file=sys.stderr, flush=True)


#: A fixed net timed with every host profile: comparing its time now with the stored one shows how much
#: faster or slower the machine runs than when it was profiled (load from other processes, power state).
REFERENCE_NET = "reference mobilenet_v3_small_1.0 @224"


def random_nets(n_nets: int, seed: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_nets):
        model, shape = random_mbv3(rng)
        items.append((f"random-mbv3 #{i} @{shape[-1]}", model, shape))
    return items


def reference_net() -> tuple[str, Any, tuple[int, ...]]:
    from profiles.reference_models import reference_model

    return REFERENCE_NET, reference_model("mobilenet_v3_small_1.0"), (1, 3, 224, 224)


def _random_cnns(n_nets: int, seed: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    """``random_cnn`` nets (odd widths, kernels 3/5/7, SE anywhere, four activations, dense heads) drawn from
    the seed sequence ``[seed, 1]``, never the same stream as ``np.random.default_rng(k)`` for an int ``k``
    (``benchmarks/host_fidelity.py --random-nets`` validates on ``default_rng(14)``)."""
    rng = np.random.default_rng([seed, 1])
    return [
        (f"random-cnn #{i} @{shape[-1]}", m, shape)
        for i, (m, shape, _) in enumerate(random_cnn(rng) for _ in range(n_nets))
    ]


def _benchmarks(n_nets: int, seed: int, n_cnns: int = 0) -> list[tuple[str, Any, tuple[int, ...]]]:
    return micro_benchmarks() + random_nets(n_nets, seed) + _random_cnns(n_cnns, seed) + [reference_net()]


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover - not available on this platform
        return "load average unknown"
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def _time_nodes(items: list, *, threads: int, passes: int) -> tuple[list[Graph], list[np.ndarray]]:
    """Per-node ms of every benchmark: minimum over ``passes`` round-robin passes (2 runs each)."""
    graphs: list[Graph] = []
    best: list[np.ndarray] = []
    clock = time.thread_time if threads == 1 else time.perf_counter  # see profiles._measure on the clock
    with torch_threads(threads):
        for p in range(passes):
            for i, (_, model, shape) in enumerate(items):
                g, t = time_layers(model, shape, repeats=2, clock=clock)
                if p == 0:
                    graphs.append(g)
                    best.append(t)
                else:
                    best[i] = np.minimum(best[i], t)
    return graphs, best


def measure_host(
    *,
    threads: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    n_nets: int = 16,
    n_cnns: int = 16,
    rounds: int = 20,
    passes: int = 4,
    seed: int = 0,
    extra: Sequence[tuple[str, Any, tuple[int, ...]]] = (),
) -> Path:
    """Measure this machine's CPU with torch at batch 1 and write a ``host`` profile; returns its path.

    ``threads`` defaults to 1 (the most repeatable setting; estimates hold for the thread count measured).
    ``out`` defaults to :func:`host_profile_path` (the user's data directory), which ``device="host"`` reads.
    ``extra``: more ``(label, model, input_shape)`` benchmarks, e.g. samples of the search space the profile
    will judge: eager torch's Python overhead per module call depends on how models are written, so nets of
    the kind to be estimated make the fitted framework overhead representative. ``n_nets`` random
    MobileNetV3-style nets and ``n_cnns`` random MobileNet-like CNNs of other shapes
    (:func:`profiles._nets.random_cnn`) are benchmarked beside the single layers.
    """
    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise ProfileError(f"threads must be >= 1, but got {threads!r}")
    path = Path(out) if out is not None else host_profile_path()
    start, cpu_start = time.perf_counter(), time.process_time()
    _warn_if_busy(progress)
    say(progress, f"measuring peak rates ({threads} thread{'s' if threads > 1 else ''}) ...")
    peak, bw = measure_peaks(threads=threads)
    items = _benchmarks(n_nets, seed, n_cnns) + list(extra)
    say(progress, f"timing every op of {len(items)} benchmarks in context, {passes} interleaved passes ...")
    graphs, node_ms = _time_nodes(items, threads=threads, passes=passes)
    whole_nets, measured = _time_whole_nets(items, node_ms, threads=threads, rounds=rounds, progress=progress)
    profile = _fit_profile(items, graphs, node_ms, measured, whole_nets, peak=peak, bw=bw, threads=threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dump_profile(profile), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: a kill mid-write leaves the old profile
    err = profile.calibration.loo_median_abs_pct
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    say(
        progress,
        f"done in {wall:.0f} s, {cpu:.0f} s of it on the CPU (the rest waiting for other processes; "
        f"{_load()}); leave-one-out median error {err:.1f}%",
    )
    return path


def _warn_if_busy(progress: bool) -> None:
    """Warn when the 1-minute load average exceeds 3/4 of the CPUs (the times will read slow)."""
    load = _load()
    try:
        busy = os.getloadavg()[0] > 0.75 * (os.cpu_count() or 1)
    except OSError:  # pragma: no cover
        busy = False
    if busy:
        say(
            progress,
            f"warning: the machine is busy ({load}); measurements will be slower than on a quiet one",
        )


def _time_whole_nets(
    items: list, node_ms: list[np.ndarray], *, threads: int, rounds: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(whole_nets, measured)``: which benchmarks are whole nets, and every benchmark's ms.

    Whole nets (all but the single layers) are timed together in ``rounds`` interleaved rounds; a single
    layer's figure is the sum of its in-context op times (it fits the per-op costs only).
    """
    # single layers fit the per-op costs only (their in-context times); whole nets are timed as candidates are
    whole_nets = np.arange(len(items)) >= len(micro_benchmarks())
    nets = [items[i] for i in np.flatnonzero(whole_nets)]
    say(progress, f"timing {len(nets)} whole nets, {rounds} interleaved rounds ...")
    timed = measure_latencies(
        [(m, s) for _, m, s in nets],
        threads=threads,
        rounds=rounds,
        round_ms=25.0,
        progress=(lambda r, n: say(progress, f"  round {r}/{n}")),
    )
    measured = np.array([float(t.sum()) for t in node_ms])
    measured[whole_nets] = timed
    return whole_nets, measured


def _fit_profile(
    items: list,
    graphs: list[Graph],
    node_ms: list[np.ndarray],
    measured: np.ndarray,
    whole_nets: np.ndarray,
    *,
    peak: float,
    bw: float,
    threads: int,
) -> DeviceProfile:
    """Fit the host's unit costs to the op and whole-net times (:func:`fit_host`) and build its profile."""
    import torch

    totals = np.where(whole_nets, measured, np.nan)
    costs, fit, loo = fit_host(
        graphs,
        node_ms,
        totals,
        peak_gflops=peak,
        bandwidth_gbs=bw,
        glue_mask=whole_nets,
        channel_block=_channel_block(),
    )
    loo = np.where(whole_nets, loo, fit)  # single layers: in-sample (they are not whole-net benchmarks)
    return _host_profile(
        items,
        list(measured),
        loo,
        costs,
        whole_nets,
        peak=peak,
        bw=bw,
        threads=threads,
        torch_version=torch.__version__,
    )


def _host_profile(
    items: list,
    measured: list[float],
    loo: np.ndarray,
    costs: UnitCosts,
    whole_nets: np.ndarray,
    *,
    peak: float,
    bw: float,
    threads: int,
    torch_version: str,
) -> DeviceProfile:
    """The ``host`` profile: one CPU unit with ``costs``, and the calibration rows and errors of ``items``."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    how = f"measure_host {stamp}, torch {torch_version}, {threads} thread(s)"
    pct = 100.0 * (loo - np.array(measured)) / np.array(measured)
    nets = np.flatnonzero(whole_nets)  # the headline error is over whole nets, what estimates are for
    worst = int(nets[np.argmax(np.abs(pct[nets]))])
    return DeviceProfile(
        name="host",
        title=f"This machine's CPU via torch ({platform.machine()}, {threads} thread(s))",
        chip=platform.processor() or platform.machine() or "host",
        year=_dt.date.today().year,
        default_quant="fp32",
        ram_gb=Sourced(round(_ram_gb(), 2), "measured: os.sysconf physical pages"),
        switch_cost_us=Sourced(0.0, "single compute unit"),
        units={"cpu": _cpu_unit(costs, peak=peak, bw=bw, threads=threads, how=how)},
        calibration=Calibration(
            basis="measured",
            data=(
                f"{len(items)} benchmarks (single layers, random MobileNetV3-style nets, random MobileNet-like "
                f"CNNs, extra models), {how}"
            ),
            note=(
                f"eager torch at batch 1; estimates hold for this thread count. Error figures are over the "
                f"{len(nets)} whole nets ({100 * np.mean(np.abs(pct[nets]) <= 10):.0f}% within +-10%, "
                "leave-one-out); single-layer rows hold the sum of their in-context op times and the in-sample "
                "prediction, with the per-inference overhead fitted on nets"
            ),
            loo_median_abs_pct=round(float(np.median(np.abs(pct[nets]))), 3),
            loo_worst_pct=round(float(np.abs(pct[nets]).max()), 3),
            worst_row=f"{items[worst][0]}: {pct[worst]:+.1f}%",
            rows=_calibration_rows(items, measured, loo, pct),
        ),
    )


def _cpu_unit(costs: UnitCosts, *, peak: float, bw: float, threads: int, how: str) -> ComputeUnit:
    """The host's one compute unit: the measured peak rate and bandwidth, the fitted ``costs``."""
    return ComputeUnit(
        name="cpu",
        cores=Sourced(float(threads), f"threads used ({os.cpu_count()} logical CPUs; {how})"),
        bandwidth_gbs=Sourced(round(bw, 3), f"measured: 64 MB tensor copy ({how})"),
        peak_gflops={"fp32": Sourced(round(peak, 3), f"measured: best fp32 matmul ({how})")},
        costs=costs,
        fuses=False,
        holds_compressed_weights=False,
        pad_last_axis_bytes=0,
    )


def _calibration_rows(
    items: list, measured: list[float], loo: np.ndarray, pct: np.ndarray
) -> tuple[CalibrationRow, ...]:
    """One calibration row per benchmark: its measured and (leave-one-out) predicted ms, and the error."""
    return tuple(
        CalibrationRow(
            model=label,
            quant="fp32",
            input=int(shape[-1]),
            measured_ms=float(f"{m:.6g}"),
            predicted_ms=float(f"{p:.6g}"),
            loo_pct=round(float(e), 2),
        )
        for (label, _, shape), m, p, e in zip(items, measured, loo, pct, strict=True)
    )
