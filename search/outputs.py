"""What a search leaves in its run directory: CSV tables, the chosen candidate and its deployable artifacts.

Files (the run-directory contract read by ``reports``): ``trials.csv`` (every finished trial), ``front.csv``
(the feasible Pareto front, also Parquet when pyarrow is present), ``hypervolume.csv``, ``baselines.csv``
(hand-scaled MobileNetV3 shapes, same scorer), and ``chosen/`` with ``model.safetensors`` (ArchSpec JSON +
weights), ``model.mlpackage``, ``model.onnx``, ``layers.csv`` (per-layer cost on the slowest device) and
``card.json``. The chosen candidate: the ``LEADERS`` highest-quality feasible trials are re-scored on the whole
validation split, and the best of them is chosen (ties to lower worst-device latency).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from compress.atomic import write_bytes
from compress.errors import RunError
from compress.progress import track
from search.baselines import baseline_candidates
from search.config import SearchConfig, SearchResult
from search.finalize import finalize
from search.frames import front_frame, hypervolume_history, reference_point, trials_frame
from search.rundir import (
    BASELINES,
    FRONT,
    FRONT_PARQUET,
    HYPERVOLUME,
    RUN_JSON,
    TRIALS,
    best_first,
    candidate_from_row,
    write_csv,
    write_json,
)
from search.scorer import Scorer
from search.space import SearchSpace
from search.study import Limits

if TYPE_CHECKING:
    import optuna

__all__ = [
    "LEADERS",
    "budget_use",
    "closest_to_budget",
    "choose",
    "choose_rescored",
    "space_span",
    "write_outputs",
]

LEADERS = 6  # feasible trials re-scored on the whole validation split before the choice


def choose(front: pd.DataFrame) -> pd.Series | None:
    """Highest quality among the feasible rows; ties go to the lower worst-device latency."""
    feasible = front[front["feasible"]] if "feasible" in front else front
    if feasible.empty:
        return None
    return best_first(feasible).iloc[0]


def choose_rescored(rows: pd.DataFrame, scorer: Scorer, *, k: int) -> tuple[pd.Series | None, list[dict]]:
    """The best of the ``k`` best feasible rows once each is re-scored on the *whole* validation split.

    A search picks the best of many noisy scores on a validation subset; re-scoring the few leaders on every
    validation image before choosing shrinks that winner's curse (the test split is never read here).
    Returns the chosen row (with ``quality_val_full``: the quality the search ranks by — the quality model's
    prediction where the run has one — on the whole split) and the re-scored leaders.
    """
    feasible = rows[rows["feasible"]] if "feasible" in rows else rows
    if feasible.empty:
        return None, []
    leaders = best_first(feasible).head(k).copy()
    leaders["quality_val_full"] = [
        scorer.score(candidate_from_row(r), full_val=True).value for _, r in leaders.iterrows()
    ]
    best = best_first(leaders, "quality_val_full").iloc[0]
    keep = [c for c in ("trial", "name", "quality", "quality_val_full", "worst_latency_ms") if c in leaders]
    return best, leaders[keep].to_dict("records")


def space_span(space: SearchSpace, scorer: Scorer) -> dict[str, Any]:
    """Predicted worst-device latency of the space's smallest and largest candidates (fp16, unpruned): the
    default space must straddle the budget on the slowest device for the budget to shape the front."""
    from compress.model import extract

    out: dict[str, Any] = {}
    for name, spec in (("smallest", space.arch.smallest()), ("largest", space.arch.largest())):
        costs = scorer.cost(extract(scorer.supernet, spec), "fp16")
        worst = max(costs, key=lambda d: costs[d].latency_ms)
        out[f"{name}_ms"], out[f"{name}_device"] = costs[worst].latency_ms, worst
    return out


def budget_use(
    trials: pd.DataFrame, front: pd.DataFrame, budget_ms: float, span: dict[str, Any]
) -> dict[str, Any]:
    """How far the feasible front reaches into the budget on the slowest device (by the latency the budget
    constrains: the bound at the run's confidence), and — when it stops short of 70% — whether quality stops
    growing with latency there (the evidence the report shows)."""
    from scipy.stats import linregress, spearmanr

    def budgeted(df: pd.DataFrame) -> pd.Series:  # what the budget constrains: the bound when there is one
        bounds = [c for c in df.columns if c.startswith("latency_ms_bound.")]
        return df[bounds].max(axis=1) if bounds else df["worst_latency_ms"]

    reach = float(budgeted(front).max()) if not front.empty else 0.0
    out: dict[str, Any] = {"front_max_ms": reach, "fraction": reach / budget_ms, **span}
    feasible = trials[trials["feasible"]] if "feasible" in trials else trials
    lat = budgeted(feasible) if not feasible.empty else feasible["worst_latency_ms"]
    upper = feasible[lat >= 0.4 * budget_ms]
    if len(upper) >= 4 and lat[upper.index].nunique() > 1:
        out["upper_slope_per_ms"] = float(linregress(lat[upper.index], upper["quality"]).slope)
        out["upper_spearman"] = float(spearmanr(lat[upper.index], upper["quality"]).statistic)
        out["upper_trials"] = len(upper)
    if out["fraction"] >= 0.7:
        out["verdict"] = f"the front reaches {out['fraction']:.0%} of the {budget_ms:g} ms budget"
    elif out.get("upper_slope_per_ms", 1.0) <= 0:
        out["verdict"] = (
            f"the front stops at {out['fraction']:.0%} of the budget because quality stops growing with latency: "
            f"over the {out['upper_trials']} feasible trials above 40% of the budget the slope is "
            f"{out['upper_slope_per_ms']:+.2f} points/ms (Spearman {out['upper_spearman']:+.2f})"
        )
    else:
        out["verdict"] = (
            f"the front stops at {out['fraction']:.0%} of the budget although quality still grows with latency "
            "there: the search found no better larger candidate in its trials (try more --trials)"
        )
    return out


def closest_to_budget(rows: pd.DataFrame) -> pd.Series:
    """The row whose budgeted latency (the bound at the run's confidence, else the point) is lowest: when no
    hand-scaled baseline meets the budget, the chosen model is still compared with the one nearest to it."""
    bounds = [c for c in rows.columns if c.startswith("latency_ms_bound.")]
    lat = rows[bounds].max(axis=1) if bounds else rows["worst_latency_ms"]
    return rows.loc[lat.idxmin()].copy()


def _baselines(
    space: SearchSpace, scorer: Scorer, limits: Limits, path: Path, progress: bool
) -> pd.DataFrame:
    if path.exists():
        old = pd.read_csv(path)
        if "feasible" in old and "name" in old:
            old["feasible"] = [limits.feasible(r) for r in old.to_dict("records")]
            return old
    rows = []
    cands = baseline_candidates(space)
    for name, cand in track(
        cands.items(), total=len(cands), description="hand-scaled baselines", enabled=progress
    ):
        row = {"name": name, **scorer.score(cand).row()}
        row["feasible"] = limits.feasible(row)
        rows.append(row)
    df = pd.DataFrame(rows)
    write_csv(df, path)
    return df


def _nothing_feasible(trials: pd.DataFrame, cfg: SearchConfig) -> RunError:
    if trials.empty:
        return RunError(
            f"no trial finished in {cfg.run_dir} (see the trials' fail reasons in the study); "
            "rerun the same command to continue"
        )
    bounds = [c for c in trials if c.startswith("latency_ms_bound.")]
    conf = getattr(cfg, "confidence", None)
    if bounds and conf is not None:  # the budget applied to each device's latency bound at that confidence
        worst = trials[bounds].max(axis=1)
        trials = trials.assign(
            worst_latency_ms=worst,
            worst_device=trials[bounds].idxmax(axis=1).str.removeprefix("latency_ms_bound."),
        )
    at = f" at {100 * conf:.0f}% confidence" if bounds and conf is not None else ""
    closest = trials.sort_values("worst_latency_ms").head(3)
    names = "; ".join(
        f"trial {int(r.trial)} needs {r.worst_latency_ms:.2f} ms{at} on {r.worst_device} "
        f"(quality {r.quality:.1f})"
        for r in closest.itertuples()
    )
    return RunError(
        f"no candidate meets the {cfg.budget_ms:g} ms budget on every device; closest: {names}. "
        f"Raise --budget, lower --confidence or narrow --devices; the study is kept in {cfg.run_dir}"
    )


def write_outputs(
    cfg: SearchConfig,
    space: SearchSpace,
    study: optuna.Study,
    scorer: Scorer,
    *,
    progress: bool = True,
    started: float | None = None,
) -> SearchResult:
    """Write the tables, pick the chosen candidate, finalize it; raise RunError when nothing is feasible.
    Returns the run's tables (trials and front), the chosen row and the card."""
    run_dir, limits = cfg.run_dir, cfg.limits()
    trials = trials_frame(study, limits)
    write_csv(trials, run_dir / TRIALS)
    front = front_frame(study, trials)
    write_csv(front, run_dir / FRONT)
    try:
        write_bytes(run_dir / FRONT_PARQUET, front.to_parquet(index=False))  # pip install '.[parquet]'
    except ImportError:
        pass
    hv = hypervolume_history(trials, cfg.objectives, reference_point(cfg.objectives, limits, trials))
    write_csv(hv, run_dir / HYPERVOLUME)
    baselines = _baselines(space, scorer, limits, run_dir / BASELINES, progress)
    if choose(front) is None:
        raise _nothing_feasible(trials, cfg)
    row, leaders = choose_rescored(trials, scorer, k=LEADERS)
    assert row is not None  # the front has a feasible row, so trials do
    card = None
    if cfg.finalize:
        base_row, base_leaders = choose_rescored(baselines, scorer, k=3)
        if base_row is None and not baselines.empty:  # none fits: compare with the one closest to fitting
            base_row = closest_to_budget(baselines)
        card = finalize(
            cfg,
            candidate_from_row(row),
            int(row["trial"]),
            scorer,
            base_row,
            extra={
                "selection": {"leaders": leaders, "baseline_leaders": base_leaders},
                "budget": budget_use(trials, front, cfg.budget_ms, space_span(space, scorer)),
            },
            started=started,
            progress=progress,
        )
    meta_path = run_dir / RUN_JSON
    meta = json.loads(meta_path.read_text())
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(meta_path, meta)
    return SearchResult(run_dir, trials, front, row.to_dict(), card)
