"""Measuring this machine: ``measure_host()`` writes a ``host`` profile fitted to torch latencies.

Steps (about a minute on a laptop core, at most ~3 minutes):

1. peak rates: best GFLOP/s of a few fp32 matrix products and GB/s of a large copy, at the thread count used;
2. benchmarks: every op class as a single layer at MobileNetV3-like shapes (``_nets.micro_benchmarks``) and
   random MobileNetV3-style multi-task nets (``_nets.random_mbv3``), all timed together with interleaved
   rounds (:func:`profiles.measure_latencies`);
3. fit: each benchmark's graph gives per-op-class FLOPs, bytes and op counts; non-negative least squares on
   relative error fits per class a time per FLOP (no faster than the measured peak), a time per byte and a
   fixed time per op, plus one per-inference overhead; leave-one-out error per benchmark is stored with them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._graph import Graph, extract_graph
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

__all__ = ["fit_host", "host_features", "measure_host", "measure_peaks"]

_NC = len(OP_CLASSES)
#: Fit weight of a single-layer benchmark relative to a whole net.
MICRO_WEIGHT = 0.2


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


def host_features(graph: Graph) -> np.ndarray:
    """Per-class [FLOPs, bytes (fp32), op count] of a graph, flattened (length 3 x len(OP_CLASSES))."""
    a = graph.arrays
    cls = a["cls"]
    out = np.zeros((3, _NC))
    np.add.at(out[0], cls, a["flops"])
    np.add.at(out[1], cls, a["act_elems"] * 4.0 + a["params"] * 4.0)
    np.add.at(out[2], cls, 1.0)
    return out.ravel()


def _nnls_fit(X: np.ndarray, y: np.ndarray, floor: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """min ||weight (X c - y) / y|| with c >= floor (per column), by NNLS on the shifted problem."""
    from scipy.optimize import nnls

    w = weight / y
    A = X * w[:, None]
    b = (y - X @ floor) * w
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    c, _ = nnls(A / scale, b, maxiter=50 * A.shape[1])
    return c / scale + floor


def fit_host(
    features: np.ndarray,
    measured_ms: np.ndarray,
    *,
    peak_gflops: float,
    bandwidth_gbs: float,
    weights: np.ndarray | None = None,
) -> tuple[UnitCosts, np.ndarray, np.ndarray]:
    """Fit host costs to benchmark features (rows weighted by ``weights`` on top of relative error).

    Returns (costs, in-sample prediction, leave-one-out prediction) in ms.
    """
    X = np.hstack([features, np.ones((len(features), 1))])
    y = np.asarray(measured_ms, dtype=float)
    wt = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    floor = np.zeros(X.shape[1])
    floor[:_NC] = 1.0 / (peak_gflops * 1e6)  # no class runs faster than the measured peak
    used = np.abs(X).sum(axis=0) > 0
    Xu, fl = X[:, used], floor[used]
    coef = np.zeros(X.shape[1])
    coef[used] = _nnls_fit(Xu, y, fl, wt)
    coef[~used] = floor[~used]
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = _nnls_fit(Xu[keep], y[keep], fl, wt[keep])
        loo[i] = float(Xu[i] @ c)
    alpha, beta, gamma = coef[:_NC], coef[_NC : 2 * _NC], coef[2 * _NC : 3 * _NC]
    eff = np.clip(1.0 / (alpha * peak_gflops * 1e6), 1e-4, 1.0)
    mem = np.clip(1.0 / np.maximum(beta * bandwidth_gbs * 1e6, 1e-12), 1e-3, 1e4)
    costs = UnitCosts(
        efficiency={c: round(float(v), 6) for c, v in zip(OP_CLASSES, eff, strict=True)},
        mem_efficiency={c: round(float(v), 6) for c, v in zip(OP_CLASSES, mem, strict=True)},
        overhead_us={c: round(float(v) * 1e3, 4) for c, v in zip(OP_CLASSES, gamma, strict=True)},
        inference_overhead_us=round(float(coef[-1]) * 1e3, 4),
        basis="measured",
        note="fitted by measure_host: NNLS on relative error over single-layer and whole-net benchmarks",
    )
    return costs, X @ coef, loo


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _benchmarks(n_nets: int, seed: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    items = micro_benchmarks()
    rng = np.random.default_rng(seed)
    for i in range(n_nets):
        model, shape = random_mbv3(rng)
        items.append((f"random-mbv3 #{i} @{shape[-1]}", model, shape))
    return items


def measure_host(
    *,
    threads: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    n_nets: int = 64,
    rounds: int = 7,
    seed: int = 0,
) -> Path:
    """Measure this machine's CPU with torch at batch 1 and write a ``host`` profile; returns its path.

    ``threads`` defaults to 1 (the most repeatable setting; estimates hold for the thread count measured).
    ``out`` defaults to :func:`host_profile_path` (the user's data directory), which ``device="host"`` reads.
    """
    import torch

    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise ProfileError(f"threads must be >= 1, but got {threads!r}")
    path = Path(out) if out is not None else host_profile_path()
    start = time.perf_counter()
    _say(progress, f"measuring peak rates ({threads} thread{'s' if threads > 1 else ''}) ...")
    peak, bw = measure_peaks(threads=threads)
    items = _benchmarks(n_nets, seed)
    graphs = [extract_graph(m, s) for _, m, s in items]
    _say(progress, f"timing {len(items)} benchmarks, {rounds} interleaved rounds ...")
    measured = measure_latencies(
        [(m, s) for _, m, s in items],
        threads=threads,
        rounds=rounds,
        round_ms=15.0,
        progress=(lambda r, n: _say(progress, f"  round {r}/{n}")),
    )
    feats = np.stack([host_features(g) for g in graphs])
    # whole nets are what the estimates are for; single layers (warm caches) only pin down rare op classes
    weights = np.array([1.0 if label.startswith("random-mbv3") else MICRO_WEIGHT for label, _, _ in items])
    costs, fit, loo = fit_host(feats, np.array(measured), peak_gflops=peak, bandwidth_gbs=bw, weights=weights)
    profile = _host_profile(
        items, measured, loo, costs, peak=peak, bw=bw, threads=threads, torch_version=torch.__version__
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_profile(profile), encoding="utf-8")
    err = profile.calibration.loo_median_abs_pct
    _say(
        progress,
        f"wrote {path} in {time.perf_counter() - start:.0f} s (leave-one-out median error {err:.1f}%)",
    )
    return path


def _host_profile(
    items: list,
    measured: list[float],
    loo: np.ndarray,
    costs: UnitCosts,
    *,
    peak: float,
    bw: float,
    threads: int,
    torch_version: str,
) -> DeviceProfile:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    how = f"measure_host {stamp}, torch {torch_version}, {threads} thread(s)"
    pct = 100.0 * (loo - np.array(measured)) / np.array(measured)
    worst = int(np.argmax(np.abs(pct)))
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
            data=f"{len(items)} benchmarks (single layers + random MobileNetV3-style nets), {how}",
            note="eager torch at batch 1; estimates hold for this thread count",
            loo_median_abs_pct=round(float(np.median(np.abs(pct))), 3),
            loo_worst_pct=round(float(np.abs(pct).max()), 3),
            worst_row=f"{items[worst][0]}: {pct[worst]:+.1f}%",
            rows=rows,
        ),
    )
