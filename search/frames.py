"""The study as tables: every finished trial, the feasible Pareto front, the hypervolume after each trial."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from search.rundir import OBJECTIVE_COLUMNS, best_first
from search.study import Limits

if TYPE_CHECKING:
    import optuna

__all__ = ["front_frame", "hypervolume_history", "reference_point", "trials_frame"]


def trials_frame(study: optuna.Study, limits: Limits) -> pd.DataFrame:
    """Every finished trial as one row (user attributes), with ``feasible`` under ``limits``."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = {"trial": t.number, **{k: v for k, v in t.user_attrs.items() if k not in ("seconds", "worker")}}
        row["feasible"] = limits.feasible(row)
        row["state"] = t.state.name
        row["datetime_complete"] = t.datetime_complete.isoformat() if t.datetime_complete else None
        rows.append(row)
    return pd.DataFrame(rows)


def front_frame(study: optuna.Study, trials: pd.DataFrame) -> pd.DataFrame:
    """The feasible Pareto front (Optuna's ``best_trials``) as rows of ``trials``, best quality first."""
    numbers = {t.number for t in study.best_trials}
    if trials.empty:
        return trials
    front = trials[trials["trial"].isin(numbers) & trials["feasible"]]
    return best_first(front).reset_index(drop=True)


def hypervolume_history(
    trials: pd.DataFrame, objectives: tuple[str, ...], reference: list[float]
) -> pd.DataFrame:
    """Hypervolume of the feasible trials among the first n finished ones, for every n (Optuna's WFG).

    Minimisation form: quality is negated; ``reference`` is in the same form (e.g. ``[0, budget_ms]``).
    """
    from optuna._hypervolume import compute_hypervolume

    if trials.empty:
        return pd.DataFrame({"trial_number": [], "hypervolume": []})
    ordered = trials.sort_values("trial")
    ref = np.asarray(reference, dtype=float)
    values, hv = [], []
    for _, row in ordered.iterrows():
        if row["feasible"]:
            point = np.array(
                [
                    -row[OBJECTIVE_COLUMNS[o]] if o == "quality" else row[OBJECTIVE_COLUMNS[o]]
                    for o in objectives
                ]
            )
            if np.all(point < ref):
                values.append(point)
        hv.append(float(compute_hypervolume(np.array(values), ref)) if values else 0.0)
    return pd.DataFrame({"trial_number": ordered["trial"].to_numpy(), "hypervolume": hv})


def reference_point(objectives: tuple[str, ...], limits: Limits, trials: pd.DataFrame) -> list[float]:
    """Worst acceptable value per objective: quality 0, latency = budget, memory/disk = limit or 1.1 x max."""
    ref = []
    for o in objectives:
        if o == "quality":
            ref.append(0.0)
        elif o == "latency":
            ref.append(limits.budget_ms)
        else:
            limit = limits.memory_mb if o == "memory" else limits.disk_mb
            col = OBJECTIVE_COLUMNS[o]
            fallback = 1.1 * float(trials[col].max()) if not trials.empty else 1.0
            ref.append(limit if limit is not None else (fallback if math.isfinite(fallback) else 1.0))
    return ref
