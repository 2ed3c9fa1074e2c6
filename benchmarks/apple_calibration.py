"""Apple calibration: held-out error of the shipped Apple cost model on every published Core ML row.

    python benchmarks/apple_calibration.py [--reference DIR] [--rows] [--write]

Re-runs the shipped calibration (``profiles._shipped.calibrate_shipped``: one bounded fit for every chip on
``shared/reference/apple-published-latencies.csv`` + ``apple-latencies-more.csv``) and prints, per chip and
unit and overall, the median and worst |error| of predictions made by fits that never saw the row:
leave-one-network-out (every width, depth and scheme of a design left out together), leave-one-source-out
(one publication / harness), leave-one-chip-out (what a spec-derived chip's prediction is worth) and, for
reference only with ``--rows`` (slow: one refit per row), leave-one-row-out (a row's near-duplicates stay
in). Target: leave-one-source-out median <= 20%. A second table takes the sources one at a time: what
leaving that source out costs its own rows (median signed error = how far its chips' level moves, median and
worst |error|, and the median |error| left once that common factor is divided out = what the fit gets wrong in
the rows' shape across networks), beside the same rows' leave-one-network-out error. ``--write`` rewrites ``profiles/devices/*.toml`` with the
result. Also checks that the A11 profile never schedules a layer on the Neural Engine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from profiles import SCHEMES, estimate_graph, extract_graph, load_profile
from profiles._evidence import RUNTIMES
from profiles._shipped import FOLDS, calibrate_shipped
from profiles.reference_models import REFERENCE_INPUT, list_reference_models, reference_model


def a11_check(n_candidates: int = 20) -> tuple[int, int, int]:
    """(graphs, estimates, layers on the Neural Engine) for the A11 profile over every scheme."""
    graphs = [
        extract_graph(reference_model(n), (1, 3, REFERENCE_INPUT.get(n, 224), REFERENCE_INPUT.get(n, 224)))
        for n in list_reference_models()
        if not n.startswith(("vgg", "densenet", "resnet1", "alexnet"))
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


def _table(df: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    """Median / worst |error| per (device, unit), per unit over all chips and overall, for each fold kind."""
    out = []
    groups = [(f"{d} {u}", g) for (d, u), g in df.groupby(["device", "unit"])]
    groups += [(f"all {u}", g) for u, g in df.groupby("unit")] + [("overall", df)]
    for name, g in groups:
        row: dict = {"chip unit": name, "rows": len(g)}
        for k in kinds:
            e = g[f"{k}_pct"].abs()
            row[f"{k} med"] = e.median()
            row[f"{k} worst"] = e.max()
        out.append(row)
    return pd.DataFrame(out)


def _by_source(df: pd.DataFrame) -> pd.DataFrame:
    """Per left-out source and unit: its rows' leave-one-source-out errors, split into level and shape."""
    out = []
    for (src, unit), g in df.groupby(["source", "unit"]):
        ratio = g["source_ms"] / g["latency_ms"]
        level = float(np.exp(np.median(np.log(ratio))))
        out.append(
            {
                "left-out source": src,
                "unit": unit,
                "chips": " ".join(sorted(set(g["device"]))),
                "rows": len(g),
                "signed med": 100 * (level - 1),
                "|err| med": g["source_pct"].abs().median(),
                "|err| worst": g["source_pct"].abs().max(),
                "shape |err| med": 100 * float(np.median(np.abs(ratio / level - 1))),
                "network-out med": g["network_pct"].abs().median(),
            }
        )
    return pd.DataFrame(out).sort_values("rows", ascending=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reference", default=None, help="folder holding the two CSVs (default shared/reference)"
    )
    ap.add_argument("--rows", action="store_true", help="also leave-one-row-out (one refit per row; slow)")
    ap.add_argument("--write", action="store_true", help="rewrite profiles/devices/*.toml")
    ap.add_argument(
        "--rows-csv", default=None, help="also write every row's held-out predictions to this CSV"
    )
    args = ap.parse_args()
    if args.rows_csv and not Path(args.rows_csv).resolve().parent.is_dir():
        ap.error(f"--rows-csv {args.rows_csv}: its folder does not exist; create it or pick another path")
    torch.set_num_threads(1)
    pd.set_option("display.width", 200)

    t0 = time.perf_counter()
    folds = tuple(k for k in FOLDS if args.rows or k != "row")
    res = calibrate_shipped(
        args.reference, write=args.write, folds=folds, log=lambda s: print(s, file=sys.stderr, flush=True)
    )
    seconds = time.perf_counter() - t0
    everything = res.rows
    if args.rows_csv:
        try:
            everything.to_csv(args.rows_csv, index=False)
        except OSError as e:  # the tables below still print: the calibration's minutes are not lost
            print(f"error: could not write --rows-csv {args.rows_csv}: {e.strerror}", file=sys.stderr)
    other = everything["tool"].isin(RUNTIMES)
    df = everything[~other]
    kinds = list(folds)
    print("Core ML rows (what the profiles predict):")
    print(_table(df, kinds).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print()
    if other.any():
        print("other runtimes' rows (evidence through a runtime term; not in the figures above):")
        cols = ["device", "unit", "tool", "model", "latency_ms"] + [f"{k}_pct" for k in kinds]
        print(everything.loc[other, cols].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print()
    if {"source", "network"} <= set(kinds):
        print("per left-out source (errors of its own rows, %; shape = after dividing out its median ratio):")
        print(_by_source(everything).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print()
    reasons = res.excluded["reason"].value_counts()
    print(f"apple calibration: {len(df)} Core ML rows on {df['device'].nunique()} chips and {int(other.sum())} "
          f"other runtimes' rows in the fit, {len(res.excluded)} rows left out ({seconds:.0f} s):")  # fmt: skip
    for reason, n in reasons.items():
        print(f"  {n:4d}  {reason}")
    for k in kinds:
        e = df[f"{k}_pct"].abs()
        w = df.loc[e.idxmax()]
        print(
            f"  leave-one-{k}-out: median |error| {e.median():.1f}%, worst {e.max():.1f}% "
            f"({w.device} {w.label}: {w[f'{k}_pct']:+.1f}%); within 25%: {100 * np.mean(e <= 25):.0f}%"
        )
    print("  target: leave-one-source-out median <= 20%")
    print(f"  active bounds: {res.active or 'none'}")
    for d, p in res.profiles.items():
        iv = "; ".join(f"{u} x{q['q10']:.2f}-{q['q90']:.2f}" for u, q in p.calibration.interval.items())
        print(f"    {d:7s} {p.basis:12s} p10-p90: {iv}")
    graphs, estimates, on_ane = a11_check()
    has_ane = load_profile("a11").has_ane
    print(f"  A11: Neural Engine unit in profile: {has_ane}; layers scheduled on it in {estimates} estimates")
    print(f"       ({graphs} models x {estimates // graphs} schemes): {on_ane}")
    if args.write:
        print("  wrote profiles/devices/*.toml")


if __name__ == "__main__":
    main()
