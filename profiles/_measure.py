"""Measuring latency robustly on a noisy machine, and Core ML models on macOS.

The timing method (see the developers' guide): batch 1, one thread by default, warm-up, then ``rounds``
rounds; each round times ``repeats`` single calls and keeps their median; the result is the minimum of the
round medians. When several models are measured together (:func:`measure_latencies`) the rounds are
interleaved (round 1 of every model, then round 2, ...), so a burst of load from other processes hits one
round of every model rather than every round of one.

Clock: with one thread the default (``clock="auto"``) times each call with the calling thread's CPU time
(``time.thread_time``): torch then computes on that thread alone, so its CPU time is the latency the call
would have on an idle core, and time spent waiting while other processes hold the CPU is left out. On a
shared machine this is far more repeatable than wall time, which also counts the time other processes
hold the CPU. With more threads, or
``clock="wall"``, wall time is used.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from profiles._errors import ProfileError

__all__ = ["measure_coreml", "measure_latencies", "measure_latency", "torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(threads)`` and restore the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    n = before if threads is None else int(threads)
    if n < 1:
        raise ProfileError(f"threads must be >= 1, but got {threads!r}")
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def _runner(model: Any, input_shape: Sequence[int]) -> Callable[[], Any]:
    import torch

    ref = next(iter(model.parameters()), None)
    x = torch.rand(tuple(input_shape), device=ref.device if ref is not None else "cpu")
    model.eval()

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


_CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def _clock(clock: str, threads: int) -> Callable[[], float]:
    if clock == "auto":
        clock = "cpu" if threads == 1 else "wall"
    if clock not in _CLOCKS:
        raise ProfileError(f"clock must be 'auto', 'wall' or 'cpu', but got {clock!r}")
    return _CLOCKS[clock]


def _time_calls(run: Callable[[], Any], repeats: int, now: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = now()
        run()
        times.append(now() - t0)
    return statistics.median(times) * 1e3


def measure_latencies(
    items: Sequence[tuple[Any, Sequence[int]]],
    *,
    threads: int | None = 1,
    rounds: int = 7,
    round_ms: float = 25.0,
    min_repeats: int = 3,
    max_repeats: int = 200,
    warmup: int = 2,
    clock: str = "auto",
    spread_s: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Latency in ms of each ``(model, input_shape)`` at batch 1: min over interleaved rounds of the median.

    ``round_ms`` sets how long one round of one model should take (the repeat count adapts to the model's
    speed, between ``min_repeats`` and ``max_repeats``). ``clock``: ``auto`` (thread CPU time with one
    thread, else wall time), ``wall`` or ``cpu``. ``spread_s``: spread the rounds over at least this many
    seconds, idle between them (the minimum over rounds depends on how long a stretch of the machine's
    speed they sample, not only on their number). ``progress(done, total)`` is called after each round.
    """
    if rounds < 1:
        raise ProfileError(f"rounds must be >= 1, but got {rounds!r}")
    with torch_threads(threads) as n:
        now = _clock(clock, n)
        runners = [_runner(m, s) for m, s in items]
        repeats = []
        for run in runners:
            for _ in range(warmup):
                run()
            probe = _time_calls(run, 1, now)
            repeats.append(int(min(max_repeats, max(min_repeats, round_ms / max(probe, 1e-3)))))
        best = [float("inf")] * len(runners)
        slot = max(0.0, float(spread_s)) / rounds
        for r in range(rounds):
            t0 = time.perf_counter()
            for i, run in enumerate(runners):
                best[i] = min(best[i], _time_calls(run, repeats[i], now))
            time.sleep(max(0.0, slot - (time.perf_counter() - t0)))
            if progress is not None:
                progress(r + 1, rounds)
    return best


def measure_latency(
    model: Any,
    input_shape: Sequence[int],
    *,
    threads: int | None = 1,
    rounds: int = 7,
    round_ms: float = 25.0,
    warmup: int = 2,
    clock: str = "auto",
) -> float:
    """Latency in ms of ``model`` at ``input_shape`` (batch 1): the minimum of per-round medians.

    See :func:`measure_latencies` for the options and the module docstring for the method and the clock.
    """
    return measure_latencies(
        [(model, input_shape)], threads=threads, rounds=rounds, round_ms=round_ms, warmup=warmup, clock=clock
    )[0]


_COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")


def measure_coreml(
    mlpackage_path: str | Path,
    *,
    compute_units: str | Sequence[str] = _COMPUTE_UNITS,
    rounds: int = 7,
    repeats: int = 20,
) -> dict[str, float]:
    """Median-of-rounds latency in ms of a Core ML package per compute unit, with ``MLModel.predict``.

    Runs only on macOS (Core ML cannot execute models elsewhere); raises :class:`ProfileError` on other
    systems. ``compute_units``: any of ``all``, ``cpu_only``, ``cpu_and_gpu``, ``cpu_and_ne``.
    """
    path = Path(mlpackage_path)
    if platform.system() != "Darwin":
        raise ProfileError(
            f"Core ML models run only on macOS; cannot measure {str(path)!r} on {platform.system()} "
            "(estimate it with `compress profile show` / profiles.estimate, or measure it on a Mac)"
        )
    if not path.exists():
        raise ProfileError(f"no Core ML package at {str(path)!r}")
    units = [compute_units] if isinstance(compute_units, str) else list(compute_units)
    bad = [u for u in units if u not in _COMPUTE_UNITS]
    if bad:
        raise ProfileError(f"unknown compute unit(s) {bad}; known: {', '.join(_COMPUTE_UNITS)}")
    return {u: _measure_coreml_unit(path, u, rounds=rounds, repeats=repeats) for u in units}


def _measure_coreml_unit(path: Path, unit: str, *, rounds: int, repeats: int) -> float:  # pragma: no cover
    import coremltools as ct
    import numpy as np

    model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, unit.upper()))
    spec = model.get_spec()
    feeds: dict[str, Any] = {}
    for inp in spec.description.input:
        if inp.type.WhichOneof("Type") == "imageType":
            from PIL import Image

            t = inp.type.imageType
            feeds[inp.name] = Image.new("RGB", (t.width, t.height))
        else:
            shape = tuple(inp.type.multiArrayType.shape)
            feeds[inp.name] = np.random.rand(*shape).astype(np.float32)
    for _ in range(3):
        model.predict(feeds)
    return min(_time_calls(lambda: model.predict(feeds), repeats) for _ in range(rounds))
