"""Search efficiency: hypervolume vs trials for every model-based sampler against random search, same scorer.

Every sampler optimises (quality max, worst-device latency min) under the default run's limits (10 ms on the
default devices, on the latency bound at its confidence), scoring candidates with one trained supernet. Scores
are memoised by candidate (the same candidate always gets the same score), so samplers are compared on
identical numbers. Hypervolume of the feasible set
(reference point: quality 0, latency = budget; Optuna's WFG) is printed at 16, 32, 48, 64, 128 and 256
trials. The default sampler of ``compress search`` is whichever reaches the highest median hypervolume at the
default trial count (48); target: its median at 64 trials >= random search's at 256 (4x the trials). With
``--run`` of a run that had a quality model (``search.quality``), quality is what that run's trials were ranked
by: the model's predicted trained quality.
NSGA-II and TPE start as ``compress search`` starts them, from a size-stratified first population
(``search.study.seed_population``); random search is uniform. Beside hypervolume, which also rewards the
front's cheap end, it prints the best feasible quality at each count: what the run delivers.

    python benchmarks/search_efficiency.py [--run runs/search-10ms] [--seeds 3] [--eval-images N] [--populations 8,24]
        [--only tpe,random] [--levels] [--trials 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna

from search import SearchConfig, SearchSpace
from search.frames import hypervolume_history, trials_frame
from search.quality import QualityModel
from search.scorer import Scorer
from search.study import (
    make_sampler,
    objective_values,
    seed_population,
)

CHECKPOINTS = (16, 32, 48, 64, 128, 256)


def run(
    sampler_name: str, seed: int, n: int, space, scorer, limits, cache
) -> tuple[list[float], list[float]]:
    """Hypervolume and best feasible quality after each trial."""
    name, _, variant = sampler_name.partition("/")
    options = {"population_size": int(variant[1:])} if variant.startswith("p") else {}
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=make_sampler(name, seed=seed, **options)
    )
    if name != "random":  # as `compress search` starts a study: a size-stratified first population, a
        # quarter of it just under the budget (``/levels``: size levels alone, as before 2026-12-03)
        budget = {} if variant == "levels" else {"cost": scorer.cost_row, "limits": limits}
        seed_population(study, space, options.get("population_size", 16), seed=seed, **budget)

    def objective(trial):
        cand = space.sample(trial)
        if cand not in cache:
            cache[cand] = scorer.score(cand).row()
        row = cache[cand]
        for k, v in row.items():
            trial.set_user_attr(k, v)
        for k, v in limits.constraints(row).items():
            trial.set_constraint(k, v)
        return objective_values(row, ("quality", "latency"))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    frame = trials_frame(study, limits)
    hv = hypervolume_history(frame, ("quality", "latency"), [0.0, limits.budget_ms])
    ordered = frame.sort_values("trial")  # as hypervolume_history orders them
    best = ordered["quality"].where(ordered["feasible"]).ffill().cummax().fillna(0.0)
    return hv["hypervolume"].tolist(), best.tolist()


def main() -> None:
    from _common import supernet_for

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eval-images", type=int, default=Scorer.__init__.__kwdefaults__["eval_images"])
    ap.add_argument(
        "--populations",
        default="",
        help="extra NSGA-II population sizes to compare, e.g. 8,24 (rows nsga2/pN)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="run only these rows, e.g. tpe,random (the verdicts need random and the default sampler)",
    )
    ap.add_argument(
        "--levels",
        action="store_true",
        help="also the model-based samplers started from size levels alone (rows nsga2/levels, tpe/levels)",
    )
    ap.add_argument(
        "--trials",
        type=int,
        default=64,
        help="trials of the model-based rows (random runs 4x as many); the verdicts need 64",
    )
    args = ap.parse_args()
    if args.trials < 1 or args.seeds < 1:
        ap.error(f"--trials {args.trials} --seeds {args.seeds}: both must be at least 1")
    extra = [(f"nsga2/p{p}", args.trials) for p in args.populations.split(",") if p.strip()]
    if args.levels:
        extra += [("nsga2/levels", args.trials), ("tpe/levels", args.trials)]
    rows = [("random", 4 * args.trials), ("nsga2", args.trials), ("tpe", args.trials), *extra]
    only = {r.strip() for r in args.only.split(",") if r.strip()}
    if only - {name for name, _ in rows}:  # said before the supernet's minutes
        ap.error(
            f"--only: unknown rows {sorted(only - {name for name, _ in rows})}; known: "
            f"{', '.join(name for name, _ in rows)}"
        )
    supernet, data = supernet_for(args.run)
    space = SearchSpace.default(supernet.space.num_classes)
    limits = SearchConfig().limits()  # the default run's: 10 ms on every default device at its confidence
    scorer = Scorer(
        supernet,
        data=data,
        devices=list(limits.devices),
        eval_images=args.eval_images,
        confidence=limits.confidence,
    )
    if args.run:  # score as the run's search scored: predicted trained quality, where it had a quality model
        scorer.quality_model = QualityModel.of_run(args.run)
    print(
        "quality objective: "
        + (
            "the run's quality model (predicted trained quality)"
            if scorer.quality_model
            else "inherited score"
        ),
        flush=True,
    )
    cache: dict = {}
    table: dict[str, dict[int, list[float]]] = {}
    best: dict[str, dict[int, list[float]]] = {}
    t0 = time.perf_counter()
    for name, n in [r for r in rows if not only or r[0] in only]:
        table[name] = {c: [] for c in CHECKPOINTS if c <= n}
        best[name] = {c: [] for c in CHECKPOINTS if c <= n}
        for seed in range(args.seeds):
            hv, top = run(name, seed, n, space, scorer, limits, cache)
            for c in table[name]:
                table[name][c].append(hv[c - 1])
                best[name][c].append(top[c - 1])
            print(
                f"  {name} seed {seed}: hv@{n} {hv[n - 1]:.2f}, best feasible quality {top[n - 1]:.2f} "
                f"({len(cache)} distinct candidates scored, {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    for label, values in (
        ("hypervolume (quality points x ms under the 10 ms budget)", table),
        ("best feasible quality (what the run would deliver)", best),
    ):
        print(f"\nmedian {label} over seeds")
        print("sampler  " + "".join(f"{f'@{c}':>10}" for c in CHECKPOINTS))
        for name, cols in values.items():
            print(
                f"{name:<9}"
                + "".join(
                    f"{statistics.median(cols[c]):>10.2f}" if c in cols else f"{'':>10}" for c in CHECKPOINTS
                )
            )
    default = SearchConfig().sampler
    if "random" not in table or default not in table:
        return  # the targets need both rows
    if 48 not in table[default]:
        return  # fewer trials than the default count
    at48 = {
        name: statistics.median(cols[48]) for name, cols in table.items() if name != "random" and 48 in cols
    }
    best = max(at48, key=at48.get)
    print(
        f"highest median hypervolume at 48 trials (the default count): {best} {at48[best]:.2f}; "
        f"the default sampler is {default}: {'agrees' if best == default else 'DISAGREES'}"
    )
    if 64 not in table[default] or 256 not in table["random"]:
        return  # the target is at 64 trials
    d64, rand256 = statistics.median(table[default][64]), statistics.median(table["random"][256])
    print(
        f"{default} @64 {d64:.2f} vs random @256 {rand256:.2f}: {'meets' if d64 >= rand256 else 'MISSES'} the target"
    )


if __name__ == "__main__":
    main()
