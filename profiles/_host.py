"""Measuring this machine: ``measure_host()`` writes a ``host`` profile fitted to torch latencies.

Steps (112-153 s measured here on one core with ``compress profile measure``'s 24 extra search-space nets):

1. peak rates: best GFLOP/s of a few fp32 matrix products and GB/s of a large copy, at the thread count used;
2. benchmarks: every op class as a single layer at MobileNetV3-like shapes (``_nets.micro_benchmarks``) and
   random MobileNetV3-style multi-task nets (``_nets.random_mbv3``);
3. op times in context: every op of every benchmark is timed as it runs inside its net
   (:func:`profiles._graph.time_layers`), minimum over round-robin passes, so caches are as warm or cold as
   in a real inference and a burst of load from other processes hits one pass, not every sample;
4. whole-net times: all benchmarks timed together with interleaved rounds (:func:`measure_latencies`, 20
   rounds of 25 ms, as ``benchmarks/host_fidelity.py`` times candidates; with 5 rounds of 15 ms the same
   nets read 7-15% slower than that benchmark timed them minutes later, a bias of every estimate);
5. fit: per op class, non-negative least squares on the op times fits a time per FLOP (no faster than the
   measured peak), per byte and per op; then, on the whole-net times, one scale per term (FLOP, byte, per-op;
   op times measured one by one inside a net ran slower than the same ops back to back, by more for larger
   activations) and the framework overhead between ops (per op, per module call, per inference), by bounded
   least squares on relative error. The leave-one-out error of every benchmark's whole-net time (fit
   without that benchmark) is stored in the profile.
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
from profiles._graph import Graph, time_layers
from profiles._measure import measure_latencies, torch_threads
from profiles._nets import micro_benchmarks, random_mbv3
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

__all__ = ["fit_host", "measure_host", "measure_peaks"]

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


def _node_rows(graph: Graph) -> np.ndarray:
    """Per node [FLOPs, bytes moved at fp32, 1]: the cost model's features on the host."""
    a = graph.arrays
    return np.column_stack([a["flops"], a["act_elems"] * 4.0 + a["params"] * 4.0, np.ones(len(graph))])


def _class_fit(graphs: list[Graph], node_ms: list[np.ndarray], floor: float) -> np.ndarray:
    """Per op class (alpha ms/FLOP >= floor, beta ms/byte, gamma ms/op) by NNLS on in-context node times."""
    from scipy.optimize import nnls

    X = np.vstack([_node_rows(g) for g in graphs])
    y = np.concatenate(node_ms)
    cls = np.concatenate([g.arrays["cls"] for g in graphs])
    coef = np.zeros((_NC, 3))
    coef[:, 0] = floor
    for c in range(_NC):
        rows = cls == c
        if not rows.any():
            continue
        A, b = X[rows], y[rows] - X[rows, 0] * floor
        scale = np.maximum(A.max(axis=0), 1e-30)
        sol, _ = nnls(A / scale, b, maxiter=200)
        coef[c] = sol / scale + np.array([floor, 0.0, 0.0])
    return coef


#: Whole nets needed before their totals also rescale the per-class terms (else only overheads are fitted).
_MIN_NETS_TO_RESCALE = 12
#: Range of those scales: op times measured one by one inside a net (hooks, timers) run slower or faster than
#: the same ops back to back; whole nets correct that by a common factor per term, not reshape the classes.
_SCALE_BOUNDS = (0.5, 2.0)


def _glue_fit(
    graphs: list[Graph], totals: np.ndarray, coef: np.ndarray, floor: float
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Fit the per-class costs to whole-net times: ``(coef rescaled, (ms per op, per call, per inference))``.

    The whole-net time is modelled as ``s_flop * sum(FLOP terms) + s_byte * sum(byte terms) + s_op *
    sum(per-op terms)`` plus framework overhead between ops (per op, per ``nn.Module`` call, per inference),
    fitted by bounded least squares on the relative error. The three scales (within ``_SCALE_BOUNDS``; the
    FLOP scale never takes a class below the measured peak) stay 1 with fewer than ``_MIN_NETS_TO_RESCALE``
    nets.
    """
    from scipy.optimize import lsq_linear

    n = len(graphs)
    terms = np.array([(_node_rows(g) * coef[g.arrays["cls"]]).sum(axis=0) for g in graphs]).reshape(n, 3)
    ops = np.array([len(g) for g in graphs], dtype=float)
    calls = np.array([g.arrays["calls"].sum() for g in graphs], dtype=float)
    A = np.column_stack([terms, ops, calls, np.ones(n)]) / totals[:, None]
    lo, hi = _SCALE_BOUNDS
    flop_lo = max(lo, floor / float(coef[:, 0].min()))  # _class_fit keeps every class at or above the floor
    if n >= _MIN_NETS_TO_RESCALE:
        lower, upper = [flop_lo, lo, lo, 0.0, 0.0, 0.0], [hi, hi, hi, np.inf, np.inf, np.inf]
    else:  # too few nets to tell a scale from an overhead: keep the node-level fit, fit the overheads
        lower, upper = [1.0 - 1e-9] * 3 + [0.0] * 3, [1.0 + 1e-9] * 3 + [np.inf] * 3
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    bounds = (np.array(lower) * scale, np.array(upper) * scale)
    sol = lsq_linear(A / scale, np.ones(n), bounds=bounds).x / scale
    d_op, d_call, eps = (float(v) for v in sol[3:])
    return coef * sol[None, :3], (d_op, d_call, eps)


def _predict(g: Graph, coef: np.ndarray, glue: tuple[float, float, float]) -> float:
    per = coef[g.arrays["cls"]]
    d_op, d_call, eps = glue
    return float((_node_rows(g) * per).sum() + d_op * len(g) + d_call * g.arrays["calls"].sum() + eps)


def fit_host(
    graphs: list[Graph],
    node_ms: list[np.ndarray],
    total_ms: np.ndarray,
    *,
    peak_gflops: float,
    bandwidth_gbs: float,
    glue_mask: Any = None,
) -> tuple[UnitCosts, np.ndarray, np.ndarray]:
    """Fit host costs: per-class costs on in-context node times, framework overhead on whole-net times.

    ``node_ms[i]`` holds the measured ms of each node of ``graphs[i]`` (:func:`profiles._graph.time_layers`),
    ``total_ms[i]`` its whole-forward latency; ``glue_mask`` selects the benchmarks whose whole-net times fit
    the framework overhead (default: all). Returns (costs, in-sample and leave-one-out predictions of the
    totals); each leave-one-out prediction comes from a fit without that benchmark's nodes and total.
    """
    totals = np.asarray(total_ms, dtype=float)
    floor = 1.0 / (peak_gflops * 1e6)  # no op class runs faster than the measured peak
    glue_rows = np.ones(len(graphs), dtype=bool) if glue_mask is None else np.asarray(glue_mask, dtype=bool)

    def fit(keep: list[int]) -> tuple[np.ndarray, tuple[float, float, float]]:
        c = _class_fit([graphs[j] for j in keep], [node_ms[j] for j in keep], floor)
        g = [j for j in keep if glue_rows[j]]
        return _glue_fit([graphs[j] for j in g], totals[g], c, floor)

    coef, glue = fit(list(range(len(graphs))))
    fitted = np.array([_predict(g, coef, glue) for g in graphs])
    loo = np.empty(len(graphs))
    for i in range(len(graphs)):
        c, gl = fit([j for j in range(len(graphs)) if j != i])
        loo[i] = _predict(graphs[i], c, gl)
    delta, per_call, eps = glue
    alpha, beta, gamma = coef[:, 0], coef[:, 1], coef[:, 2] + delta
    eff = np.clip(1.0 / (alpha * peak_gflops * 1e6), 1e-4, 1.0)
    mem = np.clip(1.0 / np.maximum(beta * bandwidth_gbs * 1e6, 1e-12), 1e-3, 1e4)
    costs = UnitCosts(
        efficiency={c: round(float(v), 6) for c, v in zip(OP_CLASSES, eff, strict=True)},
        mem_efficiency={c: round(float(v), 6) for c, v in zip(OP_CLASSES, mem, strict=True)},
        overhead_us={c: round(float(v) * 1e3, 4) for c, v in zip(OP_CLASSES, gamma, strict=True)},
        inference_overhead_us=round(eps * 1e3, 4),
        module_overhead_us=round(per_call * 1e3, 4),
        basis="measured",
        note="fitted by measure_host: per-class NNLS on in-context op times, framework overhead on whole nets",
    )
    return costs, fitted, loo


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


#: A fixed net timed with every host profile: comparing its time now with the stored one shows how much
#: faster or slower the machine runs than when it was profiled (load from other processes, power state).
REFERENCE_NET = "reference mobilenet_v3_small_1.0 @224"


def _random_nets(n_nets: int, seed: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_nets):
        model, shape = random_mbv3(rng)
        items.append((f"random-mbv3 #{i} @{shape[-1]}", model, shape))
    return items


def _reference_net() -> tuple[str, Any, tuple[int, ...]]:
    from profiles.reference_models import reference_model

    return REFERENCE_NET, reference_model("mobilenet_v3_small_1.0"), (1, 3, 224, 224)


def _benchmarks(n_nets: int, seed: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    return micro_benchmarks() + _random_nets(n_nets, seed) + [_reference_net()]


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
    n_nets: int = 32,
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
    the kind to be estimated make the fitted framework overhead representative.
    """
    import torch

    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise ProfileError(f"threads must be >= 1, but got {threads!r}")
    path = Path(out) if out is not None else host_profile_path()
    start = time.perf_counter()
    load = _load()
    try:
        busy = os.getloadavg()[0] > 0.75 * (os.cpu_count() or 1)
    except OSError:  # pragma: no cover
        busy = False
    if busy:
        _say(
            progress,
            f"warning: the machine is busy ({load}); measurements will be slower than on a quiet one",
        )
    _say(progress, f"measuring peak rates ({threads} thread{'s' if threads > 1 else ''}) ...")
    peak, bw = measure_peaks(threads=threads)
    items = _benchmarks(n_nets, seed) + list(extra)
    _say(progress, f"timing every op of {len(items)} benchmarks in context, {passes} interleaved passes ...")
    graphs, node_ms = _time_nodes(items, threads=threads, passes=passes)
    _say(progress, f"timing {len(items)} whole benchmarks, {rounds} interleaved rounds ...")
    measured = measure_latencies(
        [(m, s) for _, m, s in items],
        threads=threads,
        rounds=rounds,
        round_ms=25.0,
        progress=(lambda r, n: _say(progress, f"  round {r}/{n}")),
    )
    whole_nets = np.arange(len(items)) >= len(micro_benchmarks())  # single layers do not fit the overhead
    costs, fit, loo = fit_host(
        graphs, node_ms, np.array(measured), peak_gflops=peak, bandwidth_gbs=bw, glue_mask=whole_nets
    )
    profile = _host_profile(
        items,
        measured,
        loo,
        costs,
        whole_nets,
        peak=peak,
        bw=bw,
        threads=threads,
        torch_version=torch.__version__,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dump_profile(profile), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: a kill mid-write leaves the old profile
    err = profile.calibration.loo_median_abs_pct
    _say(progress, f"done in {time.perf_counter() - start:.0f} s (leave-one-out median error {err:.1f}%)")
    return path


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
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    how = f"measure_host {stamp}, torch {torch_version}, {threads} thread(s)"
    pct = 100.0 * (loo - np.array(measured)) / np.array(measured)
    nets = np.flatnonzero(whole_nets)  # the headline error is over whole nets, what estimates are for
    worst = int(nets[np.argmax(np.abs(pct[nets]))])
    rows = tuple(
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
    cpu = ComputeUnit(
        name="cpu",
        cores=Sourced(float(threads), f"threads used ({os.cpu_count()} logical CPUs; {how})"),
        bandwidth_gbs=Sourced(round(bw, 3), f"measured: 64 MB tensor copy ({how})"),
        peak_gflops={"fp32": Sourced(round(peak, 3), f"measured: best fp32 matmul ({how})")},
        costs=costs,
        fuses=False,
        holds_compressed_weights=False,
        pad_last_axis_bytes=0,
    )
    return DeviceProfile(
        name="host",
        title=f"This machine's CPU via torch ({platform.machine()}, {threads} thread(s))",
        chip=platform.processor() or platform.machine() or "host",
        year=_dt.date.today().year,
        default_quant="fp32",
        ram_gb=Sourced(round(_ram_gb(), 2), "measured: os.sysconf physical pages"),
        switch_cost_us=Sourced(0.0, "single compute unit"),
        units={"cpu": cpu},
        calibration=Calibration(
            basis="measured",
            data=f"{len(items)} benchmarks (single layers, random MobileNetV3-style nets, extra models), {how}",
            note=(
                f"eager torch at batch 1; estimates hold for this thread count. Error figures are over the "
                f"{len(nets)} whole nets ({100 * np.mean(np.abs(pct[nets]) <= 10):.0f}% within +-10%); the "
                "single-layer rows carry the per-inference overhead fitted on nets, so their errors are large"
            ),
            loo_median_abs_pct=round(float(np.median(np.abs(pct[nets]))), 3),
            loo_worst_pct=round(float(np.abs(pct[nets]).max()), 3),
            worst_row=f"{items[worst][0]}: {pct[worst]:+.1f}%",
            rows=rows,
        ),
    )
