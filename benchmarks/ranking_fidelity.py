"""Ranking fidelity: do the search's scores rank candidates as training them for real does?

For >= 10 candidates spread over the space — six hand-scaled MobileNetV3 shapes and searched trials of the run,
pruned and quantized ones among them — prints (a) the quality the search ranked them by (exactly a trial's
score: the run's quality model, ``search.quality``, predicting trained quality from FLOPs and the inherited
score, where the run has one; else the inherited score: supernet weights, BN recalibrated, the run's
validation subset) and (b) their test quality
after training the same architecture (pruned widths included) *from scratch* with the final-training recipe of
``compress search`` for ``--steps`` steps, the scheme simulated afterwards. Then Kendall's tau and Spearman's
rho between (a) and (b) (target: tau >= 0.7), the spread of each, and for each the Spearman correlation of
quality with predicted A11 latency and the quality-vs-latency slope (points per ms, least squares). With other
seeds trained (``--seed 1`` ...): standalone training's own tau across seeds, and the search's tau against the
mean over seeds. Last, the size-only reference: standalone quality fitted to log(params) and log(resolution)
on the hand-scaled shapes ranks the held-out searched trials; the search's score must beat it to be worth its
supernet; so must it beat predicted A11 latency alone, printed beside it. For the quantized candidates, the
scheme's loss as the search subtracts it (on inherited weights) is printed beside its loss after standalone
training (``standalone_fp16`` minus ``standalone``). With a quality model, whose calibration trained the six
shapes and architectures drawn from the space (on validation), the figure that counts is the one on the
searched trials it never saw, printed beside the inherited score's on the same.

    python benchmarks/ranking_fidelity.py --run runs/search-10ms [--steps 300] [--searched 6] [--seed 0]
        [--quality-calibration FILE]   # refit a quality model on this run's supernet (runs made without one)

Each standalone training takes ~1-5 min on 2 CPU cores; rows are appended to RUN/ranking_fidelity.csv as they
finish. A rerun re-scores every candidate with the run's supernet (seconds) and trains only architectures not
yet trained with the same steps and seed; ``--reuse FILE`` also takes standalone results from another run's
CSV (the standalone training does not depend on the supernet: fresh weights, same architecture, same recipe).
``--supernet FILE --out CSV`` scores the same candidates with another supernet (one trained before a change),
so a change is judged on identical candidates and standalone results; ``--eval-images N`` likewise scores them
on N validation images (0: all 400) instead of the run's 128, to judge what a trial's image count costs its
ranking (the quality model refitted on the same images).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import load_run, trained_quality
from scipy.stats import kendalltau, linregress, spearmanr

from search.baselines import baseline_candidates
from search.quality import SHAPES, QualityCalibration, fit_for_run
from search.rundir import candidate_from_row
from search.space import load_space


def _searched(trials: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` finished trials spread evenly over log predicted latency, at least two pruned and two quantized
    below fp16.

    Spread over latency's values, not over the trials' order: a search steered toward the budget leaves most of
    its trials in a narrow band there, and picking every k-th of them gives near-equal candidates (the
    candidates within the budget alone: ``--within-budget``)."""
    t = trials.sort_values("worst_latency_ms").reset_index(drop=True)
    if n <= 0 or t.empty:
        return t.iloc[:0]
    log_ms = np.log(t["worst_latency_ms"].to_numpy(dtype=float))
    targets = np.linspace(log_ms.min(), log_ms.max(), n)
    half_gap = 0.5 * (targets[1] - targets[0]) if n > 1 else np.inf
    pruned = t["prune"].astype(str).map(lambda p: any(float(x) > 0 for x in p.split(","))).to_numpy()
    quantized = (t["quant"] != "fp16").to_numpy()
    picks: list[int] = []

    def nearest(target: float, mask: np.ndarray) -> None:
        free = [i for i in np.flatnonzero(mask) if i not in picks]
        if free:
            picks.append(int(min(free, key=lambda i: abs(log_ms[i] - target))))

    for mask in (pruned & quantized, pruned, quantized):
        for target in (targets[0], targets[-1]):
            if sum(mask[i] for i in picks) < 2:
                nearest(target, mask)
    for target in targets:
        if len(picks) >= n:
            break
        if not any(abs(log_ms[i] - target) < half_gap for i in picks):
            nearest(target, np.ones(len(t), dtype=bool))
    for target in targets:  # targets with no trial near them: fill from wherever the trials are
        if len(picks) >= n:
            break
        nearest(target, np.ones(len(t), dtype=bool))
    return t.loc[sorted(picks[:n])]


def _standalone_results(files: list[Path], *, steps: int, seed: int) -> dict[str, dict]:
    """Standalone results by architecture (``standalone``, ``train_s`` and the per-task ``standalone.*``
    columns where the CSV has them), from earlier CSVs of this benchmark."""
    found: dict[str, dict] = {}
    for f in files:
        if not Path(f).is_file():
            continue
        df = pd.read_csv(f)
        df = df[(df["steps"] == steps) & (df["seed"] == seed)]
        cols = [
            "standalone",
            "standalone_fp16",
            "train_s",
            *[c for c in df.columns if c.startswith("standalone.")],
        ]
        cols = [c for c in cols if c in df.columns]
        for _, r in df.iterrows():
            found.setdefault(str(r["arch"]), {c: r[c] for c in cols if pd.notna(r[c])})
    return found


def _all_seeds(files: list[Path], *, steps: int) -> pd.DataFrame:
    """Every standalone result with ``steps`` steps in ``files``: one row per (architecture, seed)."""
    frames = [pd.read_csv(f) for f in files if Path(f).is_file()]
    if not frames:
        return pd.DataFrame(columns=["arch", "seed", "standalone"])
    df = pd.concat(frames, ignore_index=True)
    df = df[df["steps"] == steps].drop_duplicates(["arch", "seed"])
    return df[["arch", "seed", "standalone"]]


def _bootstrap_tau(a: np.ndarray, b: np.ndarray, *, seed: int, n: int = 2000) -> tuple[float, float]:
    """5th and 95th percentiles of Kendall's tau over candidate sets resampled with replacement: how much the
    figure owes to which candidates happened to be picked."""
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n):
        idx = rng.integers(len(a), size=len(a))
        t = kendalltau(a[idx], b[idx]).statistic
        if np.isfinite(t):
            taus.append(t)
    lo, hi = np.percentile(taus, [5, 95])
    return float(lo), float(hi)


def _repeatability(df: pd.DataFrame, files: list[Path], *, steps: int, seed: int) -> None:
    """Kendall's tau between this seed's standalone results and another seed's on the same architectures: how
    well standalone training ranks the candidates against itself, roughly the ceiling of any predictor's tau
    against one seed's results."""
    seeds = {int(x) for x in _all_seeds(files, steps=steps)["seed"]}
    for other in sorted(seeds - {seed}):
        found = _standalone_results(files, steps=steps, seed=other)
        both = df[df["arch"].isin(list(found))]
        if len(both) < 5:
            continue
        again = [found[a]["standalone"] for a in both["arch"]]
        print(
            f"standalone repeatability, seed {seed} vs seed {other} over the {len(both)} candidates trained with "
            f"both: Kendall tau {kendalltau(both['standalone'], again).statistic:.3f} (roughly the ceiling for the "
            f"search's tau; the search's on these: {kendalltau(both['search_score'], both['standalone']).statistic:.3f})"
        )


def _seed_mean(df: pd.DataFrame, files: list[Path], *, steps: int, seed: int, label: str = "") -> None:
    """Kendall's tau against the mean over every seed trained so far, on the candidates trained with two or
    more: one seed's training moves a candidate by a point or two (its own tau against another seed is the
    repeatability line), which is as much as close candidates differ, so the mean is the better reference."""
    runs = _all_seeds(files, steps=steps)
    runs = runs[runs["arch"].isin(list(df["arch"]))]
    per = runs.groupby("arch")["standalone"].agg(["mean", "count"])
    per = per[per["count"] >= 2]
    if len(per) < 5:
        return
    both = df.drop_duplicates("arch").set_index("arch").loc[per.index]
    a, b = both["search_score"].to_numpy(), per["mean"].to_numpy()
    tau = kendalltau(a, b).statistic
    lo, hi = _bootstrap_tau(a, b, seed=seed)
    seeds = sorted({int(s) for s in runs["seed"]})
    print(
        f"{label}against the mean of seeds {', '.join(map(str, seeds))} ({per['count'].min()}-{per['count'].max()} per "
        f"candidate, {len(per)} candidates): Kendall tau {tau:.3f} (90% bootstrap interval {lo:.2f} to {hi:.2f})"
        f"   Spearman {spearmanr(a, b).statistic:.3f}   (target tau >= 0.7: {'met' if tau >= 0.7 else 'MISSED'})"
    )


def _held_out(df: pd.DataFrame, files: list[Path], *, steps: int, seed: int) -> None:
    """The quality model's tau on the candidates it was not calibrated on (the searched trials), beside the
    inherited score's on the same: the shapes' own standalone results fitted it, so they do not count."""
    held = df[~df["name"].isin(SHAPES)]
    if len(held) < 5:
        return
    a, b = held["search_score"].to_numpy(), held["standalone"].to_numpy()
    lo, hi = _bootstrap_tau(a, b, seed=seed)
    tau = kendalltau(a, b).statistic
    print(
        f"held out from the calibration ({len(held)} searched trials, pruned and quantized): Kendall tau {tau:.3f} "
        f"(90% bootstrap interval {lo:.2f} to {hi:.2f})   Spearman {spearmanr(a, b).statistic:.3f}   "
        f"(target tau >= 0.7: {'met' if tau >= 0.7 else 'MISSED'});  the inherited score on the same: tau "
        f"{kendalltau(held['inherited'], b).statistic:.3f}"
    )
    _seed_mean(held, files, steps=steps, seed=seed, label="  held out, ")
    inh = held.assign(search_score=held["inherited"])
    _seed_mean(inh, files, steps=steps, seed=seed, label="  the inherited score held out, ")
    lat = held.assign(search_score=held["a11_ms"])
    _seed_mean(lat, files, steps=steps, seed=seed, label="  predicted A11 latency alone held out, ")


def merge_rows(earlier: pd.DataFrame, rows: list[dict], *, steps: int, seed: int) -> pd.DataFrame:
    """The CSV to write: this run's ``rows``, and every earlier row they do not replace (another seed or step
    count, or a candidate this run has not reached yet), so a run stopped halfway loses nothing trained before."""
    if earlier.empty:
        return pd.DataFrame(rows)
    done = {r["arch"] for r in rows}
    replaced = (earlier["steps"] == steps) & (earlier["seed"] == seed) & earlier["arch"].isin(done)
    return pd.concat([earlier[~replaced], pd.DataFrame(rows)], ignore_index=True)


def _capacity_reference(df: pd.DataFrame) -> None:
    """The bar the supernet's score must clear: a ranking that knows nothing but each candidate's size.

    Standalone quality is fitted, on the hand-scaled shapes only, to log(parameters) and log(resolution)
    (non-negative coefficients: more capacity and more pixels never predict less), once alone and once beside
    the search's score (also non-negative); the searched trials are held out and ranked by the fit. A search
    score that is worth its supernet ranks the held-out trials better than the size-only fit does."""
    from scipy.optimize import lsq_linear

    shapes, held = df[df["name"].isin(SHAPES)], df[~df["name"].isin(SHAPES)]
    if len(shapes) < 4 or len(held) < 5 or "params" not in df:
        return
    y_held = held["standalone"].to_numpy()
    print(
        f"held out ({len(held)} searched trials; fitted on the {len(shapes)} hand-scaled shapes): search score "
        f"tau {kendalltau(held['search_score'], y_held).statistic:.3f}"
    )
    for label, cols in (
        ("size alone (log params, log resolution)", []),
        ("search score + size", ["search_score"]),
    ):

        def design(d: pd.DataFrame, cols: list[str] = cols) -> np.ndarray:
            size = [np.log(d["params"].to_numpy(float)), np.log(d["resolution"].to_numpy(float))]
            return np.column_stack([*(d[c].to_numpy(float) for c in cols), *size, np.ones(len(d))])

        x = design(shapes)
        lower = np.r_[np.zeros(x.shape[1] - 1), -np.inf]
        fit = lsq_linear(x, shapes["standalone"].to_numpy(float), bounds=(lower, np.inf))
        pred = design(held) @ fit.x
        coef = ", ".join(f"{v:.2f}" for v in fit.x[:-1])
        print(f"  {label:<40} tau {kendalltau(pred, y_held).statistic:.3f}   coefficients {coef}")


def _float_test(scorer: Any, cand: Any, model: Any) -> float:
    """Test quality of the trained float model, before ``cand``'s scheme: beside ``standalone`` (after it), the
    scheme's loss on trained weights, which the search estimates on inherited ones (``inherited_fp16`` minus
    ``inherited``)."""
    from compress.data import load_splits
    from compress.evaluate import evaluate

    if cand.quant == "fp16":
        return float("nan")  # the scheme is float: no loss to measure
    splits = load_splits(
        scorer.data, resolution=cand.spec.resolution, cache_dir=scorer.cache_dir, progress=False
    )
    return float(evaluate(model.eval(), splits.test).aggregate)


def _scheme_loss(df: pd.DataFrame) -> None:
    """The scheme's loss as the search subtracts it (inherited weights, validation subset) beside the loss after
    standalone training (trained weights, test split), over the quantized candidates: whether the search's
    estimate holds on the weights that ship."""
    if "standalone_fp16" not in df or "inherited_fp16" not in df:
        return
    q = df[df["standalone_fp16"].notna() & df["inherited_fp16"].notna()]
    if q.empty:
        return
    searched = (q["inherited_fp16"] - q["inherited"]).to_numpy(float)
    trained = (q["standalone_fp16"] - q["standalone"]).to_numpy(float)
    print(
        f"scheme loss over the {len(q)} quantized candidates (points): as the search subtracts it (inherited) mean "
        f"{searched.mean():+.2f}, range {searched.min():+.2f} to {searched.max():+.2f};  after standalone training "
        f"mean {trained.mean():+.2f}, range {trained.min():+.2f} to {trained.max():+.2f}"
    )


def _task_columns(prefix: str, quality: Any) -> dict[str, float]:
    return {f"{prefix}.{t}.{k}": float(v) for t, m in quality.tasks.items() for k, v in m.items()}


def _widen_validation(scorer: Any, n: int, resolutions: Any) -> None:
    """Make ``scorer`` evaluate on ``n`` validation images (0: all), seeded as the scorer draws its subset, at
    every resolution, keeping the run's BN recalibration images (drawn after the validation subset)."""
    import torch

    from compress.data import load_data

    for res in resolutions:
        scorer.calibration(res)  # the run's validation subset and calibration images, as the search drew them
        _, val = load_data(scorer.data, resolution=res, cache_dir=scorer.cache_dir, progress=False)
        if 0 < n < len(val):
            g = torch.Generator().manual_seed(scorer.seed)
            val = val.subset(torch.randperm(len(val), generator=g)[:n].sort().values)
        scorer._val[res] = val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished `compress search` run directory")
    ap.add_argument("--steps", type=int, default=300, help="standalone training steps per candidate")
    ap.add_argument("--searched", type=int, default=6, help="searched trials besides the six shapes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--within-budget",
        action="store_true",
        help="only candidates whose A11 point latency meets the budget",
    )
    ap.add_argument(
        "--searched-only",
        action="store_true",
        help="leave the six shapes out (another seed for the held-out figures needs only the searched trials)",
    )
    ap.add_argument("--supernet", type=Path, help="score with this supernet file instead of the run's")
    ap.add_argument(
        "--quality-calibration",
        type=Path,
        help="score with a quality model fitted on this `compress calibrate-quality` file (default: the run's "
        "own quality_model.json, if it has one)",
    )
    ap.add_argument(
        "--eval-images",
        type=int,
        help="score with this many validation images per candidate (0: all) instead of the run's; the BN "
        "recalibration images stay the run's (a run with a quality model needs --quality-calibration to refit it)",
    )
    ap.add_argument("--out", type=Path, help="the CSV to write (default: RUN/ranking_fidelity.csv)")
    ap.add_argument(
        "--reuse",
        type=Path,
        nargs="*",
        default=[],
        help="other runs' ranking_fidelity.csv: standalone results",
    )
    args = ap.parse_args()
    if not (Path(args.run) / "run.json").is_file():
        ap.error(f"--run {args.run} is not a finished `compress search` run directory (no run.json)")
    for f in [args.supernet, args.quality_calibration, *args.reuse]:
        if f is not None and not f.is_file():
            ap.error(f"no file {f}; give an existing supernet or ranking_fidelity.csv")
    run = load_run(args.run)
    scorer, cfg = run["scorer"], run["config"]
    if args.supernet is not None:  # the same candidates, scored by another supernet (before/after a change)
        from compress.training import load_supernet

        scorer.supernet = load_supernet(args.supernet).eval()
    if args.eval_images is not None:
        if args.eval_images < 0:
            ap.error(f"--eval-images must be >= 0 (0: all), but got {args.eval_images}")
        _widen_validation(scorer, args.eval_images, run["supernet"].space.resolutions)
        cfg = {**cfg, "eval_images": args.eval_images or "all"}
    space = load_space(None, num_classes=run["supernet"].space.num_classes)
    rescored = args.supernet is not None or args.eval_images is not None
    if args.quality_calibration is not None or (rescored and scorer.quality_model is not None):
        if args.quality_calibration is None:
            ap.error(
                "--supernet or --eval-images on a run with a quality model needs --quality-calibration to refit it"
            )
        scorer.quality_model = None
        scorer.quality_model = fit_for_run(QualityCalibration.load(args.quality_calibration), scorer, space)
    qm = scorer.quality_model
    if qm is not None:
        lines = {"aggregate": (qm.slope, qm.weight, qm.intercept)} if qm.form == "aggregate" else qm.tasks
        terms = "; ".join(
            f"{k}: {b:.2f} + {sl:.2f} ln(FLOPs) + {w:.2f} inherited_fp16" for k, (sl, w, b) in lines.items()
        )
        print(
            f"search score: predicted trained quality, {qm.form} form ({terms}{'; their mean' if len(lines) > 1 else ''}"
            f") - scheme loss; fitted on {qm.shapes} shapes; leave-one-shape-out |error| {qm.loo_mae:.2f} mean, "
            f"{qm.loo_max:.2f} worst"
            + (
                " (by form: " + ", ".join(f"{k} {v:.2f}" for k, v in qm.alternatives.items()) + ")"
                if qm.alternatives
                else ""
            )
        )
    shapes = baseline_candidates(space)
    cands = {} if args.searched_only else {name: shapes[name] for name in SHAPES if name in shapes}
    for _, row in _searched(run["trials"], args.searched).iterrows():
        cands[f"trial-{int(row['trial'])}"] = candidate_from_row(row)
    out = args.out or Path(args.run) / "ranking_fidelity.csv"
    trained_before = _standalone_results([out, *args.reuse], steps=args.steps, seed=args.seed)
    earlier = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=["steps", "seed"])
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name, cand in cands.items():
        score = scorer.score(cand)
        arch = cand.describe()
        a11 = score.costs["a11"].latency_ms if "a11" in score.costs else score.worst_latency_ms
        if args.within_budget and a11 > cfg["budget_ms"]:
            continue
        if arch in trained_before:
            standalone = trained_before[arch]
        else:
            trained = trained_quality(scorer, cand, steps=args.steps, seed=args.seed, init="scratch")
            standalone = {
                "standalone": trained.test.aggregate,
                "standalone_fp16": _float_test(scorer, cand, trained.model),
                "train_s": round(trained.seconds, 1),
                **_task_columns("standalone", trained.test),
            }
        rows.append(
            {
                "name": name,
                "arch": arch,
                "a11_ms": a11,
                "params": score.params,
                "resolution": cand.spec.resolution,
                "search_score": score.value,
                "inherited": score.quality.aggregate,
                "inherited_fp16": score.inherited_fp16,
                **standalone,
                "steps": args.steps,
                "seed": args.seed,
                "reused": arch in trained_before,
                **_task_columns("search", score.quality),
            }
        )
        merge_rows(earlier, rows, steps=args.steps, seed=args.seed).to_csv(out, index=False)
        r = rows[-1]
        print(
            f"{name:<22} a11 {r['a11_ms']:6.2f} ms  search {r['search_score']:6.2f}  standalone {r['standalone']:6.2f}"
            f"  ({r['train_s']:.0f} s{', earlier run' if r['reused'] else ''}; {time.perf_counter() - t0:.0f} s "
            f"so far)  {arch}",
            flush=True,
        )
    df = pd.DataFrame(rows)
    print(f"\n{len(df)} candidates ({cfg['eval_images']} val images per search score; standalone: {args.steps} "
          f"steps from scratch, test split, seed {args.seed})")  # fmt: skip
    tau, rho = (
        kendalltau(df["search_score"], df["standalone"]).statistic,
        spearmanr(df["search_score"], df["standalone"]).statistic,
    )
    lo, hi = _bootstrap_tau(df["search_score"].to_numpy(), df["standalone"].to_numpy(), seed=args.seed)
    print(
        f"Kendall tau {tau:.3f} (90% bootstrap interval over candidates {lo:.2f} to {hi:.2f})   Spearman {rho:.3f}"
        f"   (target tau >= 0.7: {'met' if tau >= 0.7 else 'MISSED'})"
    )
    print(
        f"  predicted A11 latency alone ranks them at Kendall tau "
        f"{kendalltau(df['a11_ms'], df['standalone']).statistic:.3f} (the search's score must beat it: candidates "
        "spread far over latency are ranked by their size alone)"
    )
    _repeatability(df, [out, *args.reuse], steps=args.steps, seed=args.seed)
    _seed_mean(df, [out, *args.reuse], steps=args.steps, seed=args.seed)
    if qm is not None:
        _held_out(df, [out, *args.reuse], steps=args.steps, seed=args.seed)
    _capacity_reference(df)
    _scheme_loss(df)
    for col, label in (("search_score", "search-scored"), ("standalone", "standalone-trained")):
        v = df[col]
        lat_rho = spearmanr(df["a11_ms"], v).statistic
        slope = linregress(df["a11_ms"], v).slope
        print(
            f"{label:<19} spread {v.max() - v.min():6.2f} (sd {v.std():5.2f})   Spearman(quality, A11 latency) "
            f"{lat_rho:5.2f}   slope {slope:+.2f} points/ms"
        )


if __name__ == "__main__":
    main()
