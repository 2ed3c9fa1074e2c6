"""The Optuna study's trials: samplers, a size-stratified first population, and the loop that samples, scores
and records candidates until the study (on its storage, :mod:`search.storage`) holds ``trials`` finished
trials, whoever ran them. Objectives: maximise the aggregate quality, minimise the worst-device latency
(``objectives`` may add ``memory`` — worst-device peak memory — and ``disk``). Constraints
(``trial.set_constraint``; ≤ 0 feasible): latency ≤ budget on **every** target device, and optionally peak
memory ≤ ``memory_mb`` and disk ≤ ``disk_mb``. A trial that raises (export failure, out of memory) is recorded
as FAIL with its reason and the study goes on."""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.errors import ConfigError
from search.rundir import OBJECTIVE_COLUMNS
from search.storage import fail_dead_trials

if TYPE_CHECKING:
    import optuna

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "Limits",
    "make_sampler",
    "objective_values",
    "run_trials",
    "seed_population",
]

SAMPLERS = ("nsga2", "tpe", "gp", "random")
OBJECTIVES = ("quality", "latency", "memory", "disk")


@dataclass(frozen=True)
class Limits:
    """What makes a candidate feasible."""

    budget_ms: float
    devices: tuple[str, ...]
    memory_mb: float | None = None
    disk_mb: float | None = None
    confidence: float | None = None  # hold the budget on this quantile of each device's latency interval

    def latency(self, row: dict[str, Any], device: str) -> float:
        """The latency the budget applies to: the bound at ``confidence`` where scored, else the prediction."""
        bound = row.get(f"latency_ms_bound.{device}") if self.confidence is not None else None
        return row[f"latency_ms.{device}"] if bound is None or bound != bound else bound

    def constraints(self, row: dict[str, Any]) -> dict[str, float]:
        out = {f"latency.{d}": self.latency(row, d) - self.budget_ms for d in self.devices}
        if self.memory_mb is not None:
            out["memory"] = row["worst_memory_mb"] - self.memory_mb
        if self.disk_mb is not None:
            out["disk"] = row["disk_mb"] - self.disk_mb
        return out

    def feasible(self, row: dict[str, Any]) -> bool:
        return all(v <= 0 for v in self.constraints(row).values())


def make_sampler(name: str, *, seed: int, population_size: int = 16) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name (``tpe``, the default of ``compress search``; ``nsga2``, ``gp``, ``random``), constraint-aware.

    Optuna >= 5 samplers read the constraints each trial sets with ``Trial.set_constraint``; the deprecated
    ``constraints_func`` is not passed (it would store every constraint a second time).
    """
    import optuna

    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


_ORDINAL = re.compile(r"^(resolution|s\d+\.(width|depth|kernel|expand))$")


class _AtLevel:
    """A stand-in trial that picks every size choice near one level in [0, 1] and the rest at random."""

    def __init__(self, level: float, rng: np.random.Generator) -> None:
        self.level, self.rng = level, rng
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if _ORDINAL.match(name):  # choices are sorted ascending: the index follows the level, with jitter
            i = round(self.level * (len(choices) - 1) + self.rng.normal(0.0, 0.5))
            value = choices[min(len(choices) - 1, max(0, i))]
        else:  # head branches, prune ratios, schemes: no size order to follow
            value = choices[int(self.rng.integers(len(choices)))]
        self.params[name] = value
        return value


def seed_population(
    study: Any,
    space: Any,
    n: int,
    *,
    seed: int,
    cost: Callable[[Any], dict[str, Any]] | None = None,
    limits: Limits | None = None,
    near: int | None = None,
) -> int:
    """Enqueue ``n`` size-stratified candidates as the first trials of a study that has none; returns how many.

    Uniform sampling of per-stage choices concentrates candidates around the middle of the latency range (a
    sum of many independent choices): in the default space, 16 uniform candidates all fell below 5.5 ms on
    A11 while the space reaches ~15 ms. So the model-based samplers start instead from ``n`` candidates at
    stratified size levels (level ``(i + u) / n``): every width, depth, kernel, expansion and the resolution
    near that level of its range, head branches, prune ratios and schemes uniform. Random search is not
    seeded (it is the uniform baseline).

    With ``cost`` (a candidate's cost columns, ``Scorer.cost_row``: structure only, no evaluation) and
    ``limits``, ``near`` of the ``n`` (default ``n // 4``) are made to lie just under the budget
    (``_near_budget``): a run stopped at its first population (a slow machine) delivers the best of these
    trials. In ``benchmarks/search_efficiency.py --trials 16 --levels`` (10 seeds, the 8dc4350 run's
    supernet) this never lowered the best feasible quality of the 16 and raised it on the two seeds whose
    levels left nothing near the budget (52.3 → 58.9, 54.9 → 57.6; mean 57.3 → 58.3); at 48 trials (5
    seeds) 58.9 → 59.1, the hypervolume unchanged (median 485.8 → 484.9). Unlike placing the whole population
    by latency (tried at 83f053e), the large candidates over the budget stay: they show TPE where quality lies.
    """
    if n <= 0 or study.trials:
        return 0
    rng = np.random.default_rng(seed)
    levels = (np.arange(n) + rng.random(n)) / n
    drawn: list[tuple[float, Any, dict[str, Any]]] = []
    for level in rng.permutation(levels):
        fake = _AtLevel(float(level), rng)
        drawn.append((float(level), space.sample(fake), fake.params))
    if cost is not None and limits is not None:
        drawn = _near_budget(drawn, space, cost, limits, n // 4 if near is None else near, rng)
    for _, _, params in drawn:
        study.enqueue_trial(params, skip_if_exists=True)
    return n


def _load(row: dict[str, Any], limits: Limits) -> float:
    """The share of the budget a cost row uses on its worst device (inf when another limit fails)."""
    other = {k: v for k, v in limits.constraints(row).items() if not k.startswith("latency.")}
    if any(v > 0 for v in other.values()):
        return float("inf")
    return max(limits.latency(row, d) for d in limits.devices) / limits.budget_ms


def _near_budget(
    drawn: list[tuple[float, Any, dict[str, Any]]],
    space: Any,
    cost: Callable[[Any], dict[str, Any]],
    limits: Limits,
    near: int,
    rng: np.random.Generator,
    *,
    band: tuple[float, float] = (0.8, 1.0),
    tries: int = 12,
) -> list[tuple[float, Any, dict[str, Any]]]:
    """``drawn`` with feasible members in its most crowded stretch replaced by draws whose load (``_load``) lies
    in ``band`` until ``near`` members do; the cheapest member and those over the budget (the sampler learns
    where the budget lies from them) stay.

    The replacements are drawn at levels around where ln(load), fitted linearly in the level over ``drawn``,
    crosses the band's middle (sd 0.08), at most ``tries`` draws per missing member; they are costed, never
    evaluated.
    """
    loads = [_load(cost(c), limits) for _, c, _ in drawn]
    missing = near - sum(band[0] < x <= band[1] for x in loads)
    finite = [(lv, np.log(x)) for (lv, _, _), x in zip(drawn, loads, strict=True) if np.isfinite(x)]
    if missing <= 0 or len(finite) < 2:
        return drawn
    slope, intercept = np.polyfit([lv for lv, _ in finite], [y for _, y in finite], 1)
    if slope <= 0:
        return drawn
    target = (np.log(sum(band) / 2) - intercept) / slope
    seen = {c for _, c, _ in drawn}
    found: list[tuple[tuple[float, Any, dict[str, Any]], float]] = []
    for _ in range(tries * missing):
        if len(found) == missing:
            break
        level = float(np.clip(target + rng.normal(0.0, 0.08), 0.0, 1.0))
        fake = _AtLevel(level, rng)
        candidate = space.sample(fake)
        load = _load(cost(candidate), limits) if candidate not in seen else float("inf")
        if band[0] < load <= band[1]:
            seen.add(candidate)
            found.append(((level, candidate, fake.params), load))
    members = list(zip(drawn, loads, strict=True))
    for item in found:
        crowded = _most_crowded(members, band[0])
        if crowded is None:
            break
        members.remove(crowded)
        members.append(item)
    return [m for m, _ in members]


def _most_crowded(members: list[tuple[Any, float]], below: float) -> tuple[Any, float] | None:
    """The member under ``below`` of the budget, not the cheapest, nearest in ln(load) to its neighbours."""
    order = sorted(members, key=lambda m: m[1])
    gaps = [
        (min(np.log(order[i][1] / order[i - 1][1]), np.log(order[i + 1][1] / order[i][1])), i)
        for i in range(1, len(order) - 1)
        if order[i][1] <= below
    ]
    return order[min(gaps)[1]] if gaps else None


def _wait_for_slot(
    study: Any, trials: int, *, before: int | None, deadline: float | None, poll_s: float = 0.5
) -> bool:
    """Wait until a trial may run without the study finishing more than ``trials`` trials.

    A trial may run while finished + running trials (only those numbered below ``before``, when given) stay
    under ``trials``; a worker whose trial would overshoot waits, as one of the running trials may still fail.
    Returns False once ``trials`` have finished or ``deadline`` (``time.time()``) has passed.
    """
    from optuna.trial import TrialState

    while True:
        fail_dead_trials(study)
        current = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        done = sum(t.state == TrialState.COMPLETE for t in current)
        ahead = sum(t.state == TrialState.RUNNING and (before is None or t.number < before) for t in current)
        if done >= trials:
            return False
        if done + ahead < trials:
            return True
        if deadline is not None and time.time() >= deadline:
            return False
        time.sleep(poll_s)


def objective_values(row: dict[str, Any], objectives: tuple[str, ...]) -> list[float]:
    return [float(row[OBJECTIVE_COLUMNS[o]]) for o in objectives]


def _run_trial(
    trial: optuna.Trial,
    *,
    study: Any,
    scorer: Any,
    space: Any,
    limits: Limits,
    objectives: tuple[str, ...],
    trials: int,
    deadline: float | None,
    stop: Callable[[Any], str | None] | None = None,
) -> list[float]:
    """``run_trials``' objective: wait for a slot, then sample, score and record one candidate.

    Records the worker's identity, every column of the score's row and its constraints on ``trial``; a trial
    that finds no slot (``trials`` finished, or ``deadline`` passed) or that ``stop`` refuses is pruned with a
    ``skipped`` reason, and one whose scoring fails records its ``fail_reason`` and re-raises.
    """
    import optuna

    from search._workers import identity

    # who runs it: host, pid, then boot, pid namespace, start time, token
    for key, value in identity().items():
        trial.set_user_attr(key, value)
    if not _wait_for_slot(study, trials, before=trial.number, deadline=deadline):
        late = deadline is not None and time.time() >= deadline
        why = "the timeout passed" if late else f"the study already has {trials} finished trials"
        trial.set_user_attr("skipped", f"not run: {why}")
        raise optuna.TrialPruned()
    refused = stop(study) if stop is not None else None
    if refused is not None:
        trial.set_user_attr("skipped", f"not run: {refused}")
        study.stop()
        raise optuna.TrialPruned()
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
    stop: Callable[[Any], str | None] | None = None,
) -> str | None:
    """Run trials until the study holds ``trials`` finished ones (or ``timeout_s`` passes, or ``stop``, called
    with the study before each trial, gives a reason to start no more: ``search.finalize.TrialCutoff``).
    Returns ``stop``'s reason when it refused before the first trial (a rerun whose time goal is spent: no
    trial of this call carries it), else None.

    Any number of workers (local processes or other machines on the same storage) may run this at once; the
    study ends with exactly ``trials`` finished trials: a trial that would overshoot waits for the running
    ones, and is pruned (``skipped`` attribute) if they all finish.
    """
    from optuna.trial import TrialState

    deadline = None if timeout_s is None else time.time() + timeout_s
    objective = functools.partial(
        _run_trial,
        study=study,
        scorer=scorer,
        space=space,
        limits=limits,
        objectives=objectives,
        trials=trials,
        deadline=deadline,
        stop=stop,
    )

    def wait_or_stop(study: Any, trial: Any) -> None:  # before the next trial: wait while others run
        if not _wait_for_slot(study, trials, before=None, deadline=deadline):
            study.stop()

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = trials - done
    if remaining <= 0 or not _wait_for_slot(study, trials, before=None, deadline=deadline):
        return None
    refused = stop(study) if stop is not None else None
    if refused is not None:  # e.g. a rerun started with its time goal spent
        return refused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(
            objective,
            n_trials=2 * remaining + 5,  # a bound when trials keep failing
            timeout=timeout_s,
            catch=(Exception,),
            callbacks=[*callbacks, wait_or_stop],
            gc_after_trial=False,
        )
    return None
