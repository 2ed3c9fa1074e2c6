"""Apple calibration: leave-one-out error of the shipped profiles on the published Apple latencies.

    python benchmarks/apple_calibration.py [--csv PATH] [--write]

Re-runs the shipped calibration (``profiles._shipped.calibrate_shipped``: spec priors -> pooled prior from the
other chips -> per-chip fit) on ``shared/reference/apple-published-latencies.csv`` and prints, per published
row, the latency predicted by a fit made without that row. Target: median |error| <= 15%. ``--write``
rewrites ``profiles/devices/*.toml`` with the result. Also checks that the A11 profile never schedules a
layer on the Neural Engine (reference models and search-space candidates, every scheme).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from profiles import SCHEMES, estimate_graph, extract_graph, load_profile
from profiles._shipped import calibrate_shipped
from profiles.reference_models import REFERENCE_INPUT, list_reference_models, reference_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "reference" / "apple-published-latencies.csv"


def a11_check(n_candidates: int = 20) -> tuple[int, int, int]:
    """(graphs, estimates, layers on the Neural Engine) for the A11 profile over every scheme."""
    graphs = [
        extract_graph(reference_model(n), (1, 3, REFERENCE_INPUT.get(n, 224), REFERENCE_INPUT.get(n, 224)))
        for n in list_reference_models()
    ]
    try:
        from compress.model import MultiTaskNet, default_space

        rng = np.random.default_rng(0)
        for _ in range(n_candidates):
            spec = default_space().sample(rng)
            graphs.append(extract_graph(MultiTaskNet(spec), spec.resolution))
    except ImportError:  # pragma: no cover
        pass
    schemes = [s for s in SCHEMES if s != "palN-gK"] + ["pal4-g16"]
    on_ane = estimates = 0
    for g in graphs:
        for q in schemes:
            cost = estimate_graph(g, "a11", quant=q)
            estimates += 1
            on_ane += int((cost.layers["unit"] == "ane").sum()) + int("ane" in cost.units)
    return len(graphs), estimates, on_ane


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--write", action="store_true", help="rewrite profiles/devices/*.toml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pd.set_option("display.width", 200)

    t0 = time.perf_counter()
    out = calibrate_shipped(args.csv, write=args.write)
    seconds = time.perf_counter() - t0
    tables = [r.table.assign(device=d) for d, r in out["results"].items()]
    table = pd.concat(tables, ignore_index=True)
    show = table[["device", "row", "input", "measured_ms", "loo_ms", "loo_pct", "sigma"]]
    print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    err = table["loo_pct"].abs()
    worst = table.loc[err.idxmax()]
    print()
    print(f"apple calibration: {len(table)} published rows on {len(tables)} chips ({seconds:.0f} s)")
    print(f"  leave-one-out median |error|: {err.median():.1f}%   (target <= 15%)")
    print(
        f"  rows within +-10%: {100 * np.mean(err <= 10):.0f}%, within +-25%: {100 * np.mean(err <= 25):.0f}%"
    )
    print(f"  worst row: {worst.device} {worst.row} @{worst.input}: {worst.loo_pct:+.1f}%")
    for d, r in out["results"].items():
        print(f"    {d:7s} {len(r.table):3d} rows  median |error| {r.loo_median_abs_pct:5.1f}%")
    skipped = sorted({s for r in out["results"].values() for s in r.skipped})
    print(f"  skipped rows (sparsity): {len(skipped)}")
    graphs, estimates, on_ane = a11_check()
    has_ane = load_profile("a11").has_ane
    print(f"  A11: Neural Engine unit in profile: {has_ane}; layers scheduled on it in {estimates} estimates")
    print(f"       ({graphs} models x {estimates // graphs} schemes): {on_ane}")
    if args.write:
        print("  wrote profiles/devices/*.toml")


if __name__ == "__main__":
    main()
