"""Re-anchoring a host profile to the machine's speed now: ``refresh_host()``.

A shared machine, or a laptop that changes power state, runs the same net faster or slower from one minute
to the next, and every latency moves together. A host profile fitted two minutes or two days ago then
predicts every net a few percent off, although its per-op costs still order and size nets right.
``refresh_host`` re-times some of the profile's own whole-net benchmarks, by the method ``measure_host``
timed them with (interleaved rounds spread over about the same time, minimum of per-round medians), takes
the median ratio of their times now to the stored ones, and scales every time in the profile by it: peak
rates and bandwidth divided, fixed overheads multiplied, so every estimate scales by exactly that ratio and
nothing else changes. It takes about half a minute instead of ``measure_host``'s two to three.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._host import REFERENCE_NET, random_nets, reference_net, say
from profiles._measure import measure_latencies
from profiles._registry import host_profile_path, load_profile
from profiles._schema import DeviceProfile, Sourced, dump_profile

__all__ = ["anchor_nets", "refresh_host", "rescale_host"]


def anchor_nets(
    profile: DeviceProfile, extra: Sequence[tuple[str, Any, tuple[int, ...]]] = (), *, k: int = 8
) -> list[tuple[str, Any, tuple[int, ...], float]]:
    """Up to ``k`` of ``profile``'s whole-net benchmarks rebuilt, each as ``(label, model, shape, stored ms)``.

    Rebuilt from ``extra`` (the benchmarks ``measure_host`` was given, e.g. the search-space samples of
    ``compress profile measure``) where the profile has them, else from ``measure_host``'s own random
    MobileNetV3-style nets (default seed); the fixed reference net always counts as one. Chosen evenly over
    the stored latencies, so fast and slow nets both weigh in. A label (and its input size) is trusted to
    rebuild the same net because both lists are deterministic for this version of the code.
    """
    stored = {r.model: r.measured_ms for r in profile.calibration.rows}
    size = {r.model: r.input for r in profile.calibration.rows}

    def known(items: Sequence[tuple[str, Any, tuple[int, ...]]]) -> list:  # same label and input size
        return [(label, m, s) for label, m, s in items if label in stored and size[label] == s[-1]]

    ours = known(extra) or known(random_nets(32, 0))
    ours.sort(key=lambda item: stored[item[0]])
    picks = np.unique(np.linspace(0, len(ours) - 1, num=max(0, min(k - 1, len(ours)))).round().astype(int))
    chosen = [ours[i] for i in picks] if ours else []
    if REFERENCE_NET in stored:
        chosen.append(reference_net())
    return [(label, model.eval(), shape, float(stored[label])) for label, model, shape in chosen]


def rescale_host(profile: DeviceProfile, ratio: float, *, why: str) -> DeviceProfile:
    """``profile`` with every time multiplied by ``ratio`` (> 1: the machine now runs slower).

    Peak rates and bandwidth are divided by it, per-op, per-call and per-inference overheads multiplied, and
    the stored whole-net times scaled too (so a later refresh compares with this level); ``why`` is added to
    the sources and the calibration note. Estimates of every model scale by exactly ``ratio``.
    """
    if not (np.isfinite(ratio) and ratio > 0):
        raise ProfileError(f"ratio must be a positive number, but got {ratio!r}")

    def rate(s: Sourced) -> Sourced:
        return Sourced(float(f"{s.value / ratio:.6g}"), f"{s.source}; x{1 / ratio:.4f} by {why}")

    units = {}
    for name, unit in profile.units.items():
        c = unit.costs
        costs = dataclasses.replace(
            c,
            overhead_us={k: round(v * ratio, 4) for k, v in c.overhead_us.items()},
            inference_overhead_us=round(c.inference_overhead_us * ratio, 4),
            module_overhead_us=round(c.module_overhead_us * ratio, 4),
        )
        units[name] = dataclasses.replace(
            unit,
            bandwidth_gbs=rate(unit.bandwidth_gbs),
            peak_gflops={p: rate(s) for p, s in unit.peak_gflops.items()},
            costs=costs,
        )
    cal = profile.calibration
    rows = tuple(
        dataclasses.replace(
            r,
            measured_ms=float(f"{r.measured_ms * ratio:.6g}"),
            predicted_ms=float(f"{r.predicted_ms * ratio:.6g}"),
        )
        for r in cal.rows
    )
    note = (
        f"{cal.note}; every time x{ratio:.4f} by {why}" if cal.note else f"every time x{ratio:.4f} by {why}"
    )
    return dataclasses.replace(
        profile, units=units, calibration=dataclasses.replace(cal, rows=rows, note=note), path=""
    )


def _measured_profile(src: Path) -> DeviceProfile:
    """The host profile at ``src``; ``ProfileError`` (saying what to do) if it is missing or not measured."""
    if not src.exists():
        raise ProfileError(
            f"no host profile at {str(src)!r} to refresh; measure this machine first with "
            "`compress profile measure`"
        )
    profile = load_profile(src)
    if profile.basis != "measured" or set(profile.units) != {"cpu"}:
        raise ProfileError(
            f"{str(src)!r} is not a measured host profile (basis {profile.basis!r}); refresh only re-anchors "
            "what `compress profile measure` wrote — measure this machine first"
        )
    return profile


def refresh_host(
    path: str | Path | None = None,
    *,
    out: str | Path | None = None,
    extra: Sequence[tuple[str, Any, tuple[int, ...]]] = (),
    k: int = 8,
    rounds: int = 20,
    seconds: float = 30.0,
    progress: bool = True,
) -> tuple[Path, float]:
    """Re-anchor a measured host profile to this machine's speed now; returns (path written, ratio applied).

    ``path``: the profile (default: the ``host`` profile in the user's data directory); ``out``: where to
    write the result (default: over ``path``). ``extra``: the extra benchmarks the profile was measured with
    (see :func:`anchor_nets`). ``k`` nets are timed in ``rounds`` interleaved rounds spread over about
    ``seconds`` (idle between rounds), as ``measure_host`` times its 20 rounds over about a minute: the
    minimum over rounds falls with their number and their spread, so re-timing with more or quicker rounds
    would read the machine faster than the profile's own method did.
    """
    src = Path(path) if path is not None else host_profile_path()
    profile = _measured_profile(src)
    anchors = anchor_nets(profile, extra, k=k)
    if len(anchors) < 3:
        raise ProfileError(
            f"{str(src)!r} stores {len(anchors)} whole-net benchmarks this code can rebuild (3 needed); "
            "re-measure it with `compress profile measure`"
        )
    threads = int(profile.units["cpu"].cores.value)
    say(
        progress, f"re-timing {len(anchors)} of the profile's nets, {rounds} rounds over ~{seconds:.0f} s ..."
    )
    start = time.perf_counter()
    now = np.array(
        measure_latencies(
            [(m, s) for _, m, s, _ in anchors],
            threads=threads,
            rounds=rounds,
            spread_s=seconds,
            progress=(lambda r, n: say(progress, f"  round {r}/{n}")),
        )
    )
    ratios = now / np.array([ms for *_, ms in anchors])
    ratio = float(np.median(ratios))
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    why = f"refresh_host {stamp} ({len(anchors)} nets, median ratio; range {ratios.min():.3f}..{ratios.max():.3f})"
    dest = Path(out) if out is not None else src
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(dump_profile(rescale_host(profile, ratio, why=why)), encoding="utf-8")
    tmp.replace(dest)  # the old profile stays whole until the new one is written
    say(
        progress,
        f"done in {time.perf_counter() - start:.0f} s: the machine runs {100 * (ratio - 1):+.1f}% vs the "
        f"profile (nets {100 * (ratios.min() - 1):+.1f}% .. {100 * (ratios.max() - 1):+.1f}%)",
    )
    return dest, ratio
