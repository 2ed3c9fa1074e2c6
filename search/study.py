"""The Optuna study: objectives, constraints, samplers, storage, resume and local workers.

Objectives: maximise the aggregate quality, minimise the worst-device latency (``objectives`` may add
``memory`` — worst-device peak memory — and ``disk``). Constraints (``trial.set_constraint``; ≤ 0 feasible):
latency ≤ budget on **every** target device, and optionally peak memory ≤ ``memory_mb`` and disk ≤ ``disk_mb``.

Storage: SQLite in the run directory by default, or any Optuna storage URL (PostgreSQL for many machines: run
the same command on each, same ``--storage`` and ``--study-name``). ``--workers N`` starts N local processes
on the same storage. Re-running the same command continues the study: ``trials`` counts finished trials in
the study, whoever ran them. A trial left RUNNING by a process that died (SIGKILL, power loss) is marked
FAIL with its reason when the study is next opened (same host: the process is gone; RDB storages also get a
heartbeat, so trials of dead remote workers fail after the grace period). A trial that raises (export
failure, out of memory) is recorded as FAIL with its reason and the study goes on.
"""

from __future__ import annotations

import math
import os
import re
import socket
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.errors import ConfigError, RunError

__all__ = [
    "SAMPLERS",
    "create_study",
    "hypervolume_history",
    "make_sampler",
    "redact",
    "run_trials",
    "trials_frame",
]

SAMPLERS = ("nsga2", "tpe", "gp", "random")
OBJECTIVES = ("quality", "latency", "memory", "disk")
_OBJ_COLUMN = {
    "quality": "quality",
    "latency": "worst_latency_ms",
    "memory": "worst_memory_mb",
    "disk": "disk_mb",
}


def redact(url: str) -> str:
    """A storage URL without its password (for run.json, logs and reports)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class Limits:
    """What makes a candidate feasible."""

    budget_ms: float
    devices: tuple[str, ...]
    memory_mb: float | None = None
    disk_mb: float | None = None

    def constraints(self, row: dict[str, Any]) -> dict[str, float]:
        out = {f"latency.{d}": row[f"latency_ms.{d}"] - self.budget_ms for d in self.devices}
        if self.memory_mb is not None:
            out["memory"] = row["worst_memory_mb"] - self.memory_mb
        if self.disk_mb is not None:
            out["disk"] = row["disk_mb"] - self.disk_mb
        return out

    def feasible(self, row: dict[str, Any]) -> bool:
        return all(v <= 0 for v in self.constraints(row).values())


def _constraints_of(trial: Any) -> list[float]:
    values = [v for k, v in sorted(trial.system_attrs.items()) if k.startswith("constraints:")]
    return values or [1.0]


def make_sampler(name: str, *, seed: int, population_size: int = 16) -> Any:
    """An Optuna sampler by name (``nsga2`` default, ``tpe``, ``gp``, ``random``), constraint-aware."""
    import optuna

    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(
                population_size=population_size, seed=seed, constraints_func=_constraints_of
            )
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, n_startup_trials=10, constraints_func=_constraints_of
            )
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, constraints_func=_constraints_of)
        return optuna.samplers.RandomSampler(seed=seed)


def _storage(url: str) -> Any:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=30,
                grace_period=120,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
        except Exception as exc:
            raise RunError(
                f"cannot open the storage {redact(url)}: {' '.join(str(exc).split())[:200]}"
            ) from None
    return url


def create_study(
    *, storage: str, study_name: str, objectives: tuple[str, ...], sampler: Any, config: dict[str, Any]
) -> Any:
    """Create or load the study; a study made with another configuration is refused (naming the keys)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if o == "quality" else "minimize" for o in objectives]
    try:
        study = optuna.create_study(
            storage=_storage(storage),
            study_name=study_name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except RunError:
        raise
    except Exception as exc:
        raise RunError(
            f"cannot open the study {study_name!r} in {redact(storage)}: {' '.join(str(exc).split())[:200]}"
        ) from None
    saved = study.user_attrs.get("config")
    if saved is None:
        study.set_user_attr("config", config)
    else:
        differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        if differ:
            raise ConfigError(
                f"study {study_name!r} was created with other settings ({', '.join(differ)}); rerun with the "
                "same settings to continue it, or choose another --out / --study-name"
            )
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {study_name!r} has other objectives; choose another --study-name")
    fail_dead_trials(study)
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: Any) -> list[int]:
    """Mark RUNNING trials of dead processes on this host as FAIL, with the reason; return their numbers."""
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if (
            t.user_attrs.get("host") == host
            and isinstance(pid, int)
            and pid != os.getpid()
            and not _alive(pid)
        ):
            storage.set_trial_user_attr(
                t._trial_id,
                "fail_reason",
                f"worker process {pid} died during the trial (killed or crashed); the trial was not finished",
            )
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            failed.append(t.number)
    return failed


def objective_values(row: dict[str, Any], objectives: tuple[str, ...]) -> list[float]:
    return [float(row[_OBJ_COLUMN[o]]) for o in objectives]


def run_trials(
    study: Any,
    scorer: Any,
    space: Any,
    limits: Limits,
    *,
    objectives: tuple[str, ...],
    trials: int,
    timeout_s: float | None,
    callbacks: list[Any] = (),  # type: ignore[assignment]
) -> None:
    """Run trials until the study holds ``trials`` finished ones (or ``timeout_s`` passes)."""
    import optuna
    from optuna.trial import TrialState

    def objective(trial: optuna.Trial) -> list[float]:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        candidate = space.sample(trial)
        try:
            score = scorer.score(candidate)
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            raise
        row = score.row()
        for key, value in row.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("seconds", score.seconds)
        for key, value in limits.constraints(row).items():
            trial.set_constraint(key, value)
        return objective_values(row, objectives)

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = trials - done
    if remaining <= 0:
        return
    stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(
            objective,
            n_trials=2 * remaining + 5,
            timeout=timeout_s,
            catch=(Exception,),
            callbacks=[stop, *callbacks],
            gc_after_trial=False,
        )


def trials_frame(study: Any, limits: Limits) -> Any:
    """Every finished trial as one row (user attributes), with ``feasible`` under ``limits``."""
    import pandas as pd
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = {"trial": t.number, **{k: v for k, v in t.user_attrs.items() if k not in ("seconds",)}}
        row["feasible"] = limits.feasible(row)
        row["state"] = t.state.name
        row["datetime_complete"] = t.datetime_complete.isoformat() if t.datetime_complete else None
        rows.append(row)
    return pd.DataFrame(rows)


def front_frame(study: Any, trials: Any) -> Any:
    """The feasible Pareto front (Optuna's ``best_trials``) as rows of ``trials``, best quality first."""
    numbers = {t.number for t in study.best_trials}
    if trials.empty:
        return trials
    front = trials[trials["trial"].isin(numbers) & trials["feasible"]]
    return front.sort_values(["quality", "worst_latency_ms"], ascending=[False, True]).reset_index(drop=True)


def hypervolume_history(trials: Any, objectives: tuple[str, ...], reference: list[float]) -> Any:
    """Hypervolume of the feasible trials among the first n finished ones, for every n (Optuna's WFG).

    Minimisation form: quality is negated; ``reference`` is in the same form (e.g. ``[0, budget_ms]``).
    """
    import pandas as pd
    from optuna._hypervolume import compute_hypervolume

    if trials.empty:
        return pd.DataFrame({"trial_number": [], "hypervolume": []})
    ordered = trials.sort_values("trial")
    ref = np.asarray(reference, dtype=float)
    values, hv = [], []
    for _, row in ordered.iterrows():
        if row["feasible"]:
            point = np.array(
                [-row[_OBJ_COLUMN[o]] if o == "quality" else row[_OBJ_COLUMN[o]] for o in objectives]
            )
            if np.all(point < ref):
                values.append(point)
        hv.append(float(compute_hypervolume(np.array(values), ref)) if values else 0.0)
    return pd.DataFrame({"trial_number": ordered["trial"].to_numpy(), "hypervolume": hv})


def reference_point(objectives: tuple[str, ...], limits: Limits, trials: Any) -> list[float]:
    """Worst acceptable value per objective: quality 0, latency = budget, memory/disk = limit or 1.1 x max."""
    ref = []
    for o in objectives:
        if o == "quality":
            ref.append(0.0)
        elif o == "latency":
            ref.append(limits.budget_ms)
        else:
            limit = limits.memory_mb if o == "memory" else limits.disk_mb
            col = _OBJ_COLUMN[o]
            fallback = 1.1 * float(trials[col].max()) if not trials.empty else 1.0
            ref.append(limit if limit is not None else (fallback if math.isfinite(fallback) else 1.0))
    return ref
