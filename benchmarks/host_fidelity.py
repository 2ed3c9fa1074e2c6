"""Host fidelity: predicted vs measured torch latency of random search-space candidates on this machine.

    python benchmarks/host_fidelity.py [--n 50] [--rounds 20] [--profile PATH] [--measure] [--refresh]
                                       [--random-nets [N]] [--seed S]

Candidates come from the project's search space (``compress.model.default_space().sample(rng)`` then
``MultiTaskNet(spec)``, all heads), or with ``--random-nets`` (30 by default) from
``profiles._nets.random_cnn``: MobileNet-like multi-head CNNs in plain torch that no search space or
profile fit draws from (kernels 3/5/7, any expansion, SE on any block, ReLU/ReLU6/h-swish/SiLU, odd widths,
inputs 64-256 px, a pooled classifier, an upsampling dense head and a box head). Their seed (``--seed``,
default 14 with ``--random-nets``) differs from every seed ``measure_host`` fits on. Each is measured twice, in two separate interleaved passes
(``profiles.measure_latencies``: min of per-round medians, 1 thread, thread CPU clock); the reference latency
is the minimum of the two. Predictions come from ``estimate_graph(extract_graph(model), "host")`` (or
``--profile``); ``--measure`` (or a missing host profile) first measures the host as ``compress profile
measure`` does.

This machine's speed drifts by several percent within minutes and moves every latency together, so the
agreement is printed three ways: as profiled; with ``--refresh``, after re-anchoring a copy of the profile
(``compress profile measure --refresh``) just before the candidates are timed; and re-anchored in-run, with
the predictions scaled by how much 8 of the profile's own nets, timed in the same rounds as the candidates,
moved since profiling (the candidates' timings are never used). Beside them, the ceilings: how often the
candidates' two passes agree within +-10%, and how often the profile's own nets still run within +-10% of
their stored times. Also printed: the FLOPs-only Spearman (the proxy floor) and what costing one candidate
on all 11 Apple profiles takes (extraction + 11 re-costs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import profiles
from compress.model import sample_nets
from profiles import (
    estimate_graph,
    extract_graph,
    list_profiles,
    load_profile,
    measure_latencies,
    refresh_host,
)
from profiles._refresh import anchor_nets


def candidates(n: int, seed: int) -> tuple[list, str]:
    """``n`` (model, input_shape) pairs from the search space (falls back to profiles' own random nets)."""
    rng = np.random.default_rng(seed)
    try:
        from compress.model import MultiTaskNet, default_space

        space = default_space()
        out = []
        for _ in range(n):
            spec = space.sample(rng)
            out.append((MultiTaskNet(spec).eval(), (1, 3, spec.resolution, spec.resolution)))
        return out, "compress.model.default_space()"
    except ImportError:  # pragma: no cover - before compress.model existed
        from profiles._nets import random_mbv3

        return [random_mbv3(rng) for _ in range(n)], "profiles._nets.random_mbv3"


#: ``--random-nets`` seed; ``measure_host`` fits on other seeds (tested), so these nets never shaped a fit.
RANDOM_NETS_SEED = 14


def random_nets(n: int, seed: int) -> tuple[list, list[int], str]:
    """``n`` (model, input_shape) pairs from ``profiles._nets.random_cnn``, their resolutions, the source."""
    from profiles._nets import random_cnn

    rng = np.random.default_rng(seed)
    nets = [random_cnn(rng) for _ in range(n)]
    return (
        [(m, s) for m, s, _ in nets],
        [s[-1] for _, s, _ in nets],
        f"profiles._nets.random_cnn (seed {seed})",
    )


def costing_time(graph_model: tuple, repeats: int = 5) -> tuple[float, float]:
    """(median ms to extract one candidate and cost it on all 11 devices, median ms per device re-cost)."""
    model, shape = graph_model
    devices = [load_profile(d) for d in list_profiles()]
    totals, recosts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g = extract_graph(model, shape)
        t1 = time.perf_counter()
        for d in devices:
            estimate_graph(g, d)
        t2 = time.perf_counter()
        totals.append((t2 - t0) * 1e3)
        recosts.append((t2 - t1) * 1e3 / len(devices))
    return statistics.median(totals), statistics.median(recosts)


def agreement(predicted: np.ndarray, measured: np.ndarray) -> str:
    """Within +-10% / +-5%, median |error|, worst and bias of ``predicted`` against ``measured``."""
    err = predicted / measured - 1.0
    return (
        f"within +-10% {100 * np.mean(np.abs(err) <= 0.10):5.1f}%, within +-5% "
        f"{100 * np.mean(np.abs(err) <= 0.05):5.1f}%, median |error| {100 * np.median(np.abs(err)):.1f}%, "
        f"worst {100 * err[np.argmax(np.abs(err))]:+.1f}%, bias {100 * np.median(err):+.1f}%"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None, help="candidates' seed (0; 14 with --random-nets)")
    ap.add_argument("--profile", default="host", help="'host' or a profile file (--measure writes it)")
    ap.add_argument("--measure", action="store_true", help="re-measure the host profile first")
    ap.add_argument(
        "--random-nets",
        type=int,
        nargs="?",
        const=30,
        default=None,
        metavar="N",
        help="time N random MobileNet-like nets outside the search space (default 30) instead of candidates",
    )
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="also print the figures after re-anchoring a copy of the profile (`compress profile measure "
        "--refresh`) just before the candidates are timed",
    )
    ap.add_argument("--csv", help="also write each candidate's figures to this CSV file")
    args = ap.parse_args()
    torch.set_num_threads(1)

    out = None if args.profile == "host" else Path(args.profile)
    if args.measure or (out is None and not profiles.host_profile_path().exists()):
        # as `compress profile measure` builds it: with 24 search-space samples (another seed) as benchmarks
        profiles.measure_host(progress=True, out=out, extra=sample_nets(24))
    profile = load_profile(args.profile)
    sizes = None
    if args.random_nets is not None:
        seed = RANDOM_NETS_SEED if args.seed is None else args.seed
        items, sizes, source = random_nets(args.random_nets, seed)
    else:
        items, source = candidates(args.n, 0 if args.seed is None else args.seed)
    graphs = [extract_graph(m, s) for m, s in items]
    predicted = np.array([estimate_graph(g, profile).latency_ms for g in graphs])
    flops = np.array([g.flops for g in graphs])

    extra = sample_nets(24)
    refreshed = None
    # `compress profile measure --refresh`, into a copy, just before the candidates are timed
    if args.refresh:
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = refresh_host(profile.path, out=Path(tmp) / "host.toml", extra=extra)
            refreshed = np.array([estimate_graph(g, load_profile(path)).latency_ms for g in graphs])
    anchors = anchor_nets(profile, extra)
    timed = items + [(m, sh) for _, m, sh, _ in anchors]
    t0 = time.perf_counter()
    first = np.array(measure_latencies(timed, rounds=args.rounds))
    second = np.array(measure_latencies(timed, rounds=args.rounds))
    seconds = time.perf_counter() - t0
    anchors_now = np.minimum(first, second)[len(items) :]
    first, second = first[: len(items)], second[: len(items)]
    measured = np.minimum(first, second)

    from scipy.stats import spearmanr

    repeat = np.abs(first / second - 1.0) <= 0.10
    total_ms, recost_ms = costing_time(items[0])
    gap = 100 * np.median(np.abs(first / second - 1))
    rho, rho_flops = spearmanr(predicted, measured).statistic, spearmanr(flops, measured).statistic
    target = 0.95 if sizes is None else 0.80  # issue 14's must-show for nets outside the search space
    lines = [
        f"host fidelity: {len(items)} candidates from {source}, profile {profile.path}",
        f"  torch {torch.__version__}, 1 thread, thread CPU clock, {args.rounds} rounds x 2 passes "
        f"({seconds:.0f} s)",
        f"  measured latency: {measured.min():.2f} .. {measured.max():.2f} ms "
        f"(median {np.median(measured):.2f})",
        f"  (target >= {100 * target:.0f}% within +-10%; nn-Meter CPU 99.0%)",
        f"  as profiled:            {agreement(predicted, measured)}",
    ]
    if refreshed is not None:
        lines.append(f"  refreshed just before:  {agreement(refreshed, measured)}")
    if anchors:
        ratios = anchors_now / np.array([ms for *_, ms in anchors])
        drift = float(np.median(ratios))
        lines += [
            f"  re-anchored in-run:     {agreement(predicted * drift, measured)}",
            f"    (predictions x {drift:.3f}: the median change of {len(anchors)} of the profile's own nets "
            "re-timed in the same rounds; never the candidates)",
        ]
        if sizes is not None:  # where the misses are: small inputs (fixed costs dominate) or large ones
            res = np.array(sizes)
            for name, rows in (("<= 112 px", res <= 112), ("> 112 px", res > 112)):
                if rows.any():
                    lines.append(
                        f"      {name:9s} ({rows.sum():2d} nets): {agreement((predicted * drift)[rows], measured[rows])}"
                    )
    lines += [
        f"  Spearman rho:           {rho:6.3f}   (target >= 0.95)",
        f"  FLOPs-only Spearman:    {rho_flops:6.3f}",
        f"  repeatability ceiling:  {100 * np.mean(repeat):5.1f}% of candidates' two passes agree within +-10% "
        f"(median pass-to-pass difference {gap:.1f}%)",
    ]
    if anchors:
        lines.append(
            f"  drift since profiling:  the profile's own nets run {100 * (drift - 1):+.1f}% (median; "
            f"{100 * (ratios.min() - 1):+.1f}% .. {100 * (ratios.max() - 1):+.1f}%); "
            f"{100 * np.mean(np.abs(ratios - 1) <= 0.10):.0f}% of them within +-10% of their stored times "
            "(the ceiling for a prediction as profiled)"
        )
    lines.append(
        f"  costing one candidate on 11 devices: {total_ms:.1f} ms incl. extraction; "
        f"re-cost {recost_ms:.3f} ms per device"
    )
    if anchors:  # the verdict at the machine's speed now; as profiled it cannot beat the drift ceiling
        fixed = np.abs(predicted * drift / measured - 1.0) <= 0.10
        ok = np.mean(fixed) >= target and rho >= 0.95
        lines.append(
            f"  verdict: {'meets' if ok else 'misses'} >= {100 * target:.0f}% within +-10% and rho >= 0.95 at the machine's "
            f"speed now ({100 * np.mean(fixed):.0f}%, rho {rho:.3f}); as profiled "
            f"{100 * np.mean(np.abs(predicted / measured - 1) <= 0.10):.0f}% against a drift ceiling of "
            f"{100 * np.mean(np.abs(ratios - 1) <= 0.10):.0f}%"
        )
    print("\n".join(lines))
    if args.csv:
        import pandas as pd

        pd.DataFrame(
            {
                "resolution": [sh[-1] for _, sh in items],
                "flops": flops,
                "ops": [len(g) for g in graphs],
                "predicted_ms": predicted,
                "measured_ms": measured,
                "first_ms": first,
                "second_ms": second,
                "drift": drift if anchors else np.nan,
            }
        ).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
