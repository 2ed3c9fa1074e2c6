"""Does the delivered model beat the obvious one? The chosen model against the best budget-meeting hand-scaled
MobileNetV3 of the same run, trained the same ways, on the test split, over several seeds.

For each seed, both architectures are trained with the final-training recipe of ``compress search``:

- ``finetuned``: from the supernet's weights, for the run's final-training step count (what the run ships);
- ``scratch``: the same architecture from fresh weights, for the same number of steps;

and, once and without a target, the baseline from scratch for as long as the whole search took (the
comparison a user makes first: "what if I had just trained MobileNetV3 for those minutes?").

Targets (means over seeds): chosen finetuned >= baseline finetuned + 2 points, and chosen finetuned >=
baseline from scratch for as long as the chosen model's final training.

    python benchmarks/search_vs_baseline.py --run runs/search-10ms [--seeds 3] [--steps N] [--no-whole-run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

from _common import chosen_and_baseline, load_run, trained_quality

from compress.finetune import FinetuneRecipe, plan_steps


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {sd:4.2f} (n={len(values)}: {', '.join(f'{v:.2f}' for v in values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished `compress search` run directory")
    ap.add_argument(
        "--seeds", type=int, default=3, help="0: only the whole-run baseline, against the card's model"
    )
    ap.add_argument("--steps", type=int, default=None, help="default: the run's final-training steps")
    ap.add_argument(
        "--no-whole-run", action="store_true", help="skip the baseline trained for the run's wall time"
    )
    args = ap.parse_args()
    if args.seeds < 0 or (args.seeds == 0 and args.no_whole_run):
        ap.error("--seeds must be >= 1, or 0 for the whole-run baseline alone (without --no-whole-run)")
    run = load_run(args.run)
    card, scorer = run["card"], run["scorer"]
    chosen, baseline = chosen_and_baseline(run, args.run)
    steps = args.steps or int(card["training"]["steps"])
    print(
        f"chosen   {chosen.describe()}  (a11 {card['devices'].get('a11', {}).get('latency_ms', float('nan')):.2f} ms)"
    )
    print(
        f"baseline {card['baseline']['name']}: {baseline.describe()}  ({card['baseline']['worst_latency_ms']:.2f} ms)"
    )
    print(
        f"{steps} steps each, recipe {FinetuneRecipe().describe(steps)}; quality on the test split\n",
        flush=True,
    )
    results: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for who, cand in (("chosen", chosen), ("baseline", baseline)):
            for init in ("supernet", "scratch"):
                q = trained_quality(scorer, cand, steps=steps, seed=seed, init=init).test.aggregate
                key = f"{who} {'finetuned' if init == 'supernet' else 'scratch'}"
                results.setdefault(key, []).append(q)
                print(f"  seed {seed} {key:<19} {q:6.2f}   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print()
    for key, values in results.items():
        print(f"{key:<19} {_mean_sd(values)}")
    m = {k: statistics.mean(v) for k, v in results.items()}
    if m:
        gain = m["chosen finetuned"] - m["baseline finetuned"]
        print(
            f"\nchosen vs baseline, both fine-tuned {steps} steps from the supernet: {gain:+.2f} "
            f"(target >= +2: {'met' if gain >= 2 else 'MISSED'})"
        )
        gap = m["chosen finetuned"] - m["baseline scratch"]
        print(
            f"chosen (fine-tuned) vs baseline from scratch for as many steps: {gap:+.2f} "
            f"(target >= 0: {'met' if gap >= 0 else 'MISSED'})"
        )
    if not args.no_whole_run:
        meta = run["meta"]
        wall = (
            dt.datetime.fromisoformat(meta["finished"]) - dt.datetime.fromisoformat(meta["created"])
        ).total_seconds()
        from compress.data import load_splits

        train = load_splits(scorer.data, resolution=baseline.spec.resolution, progress=False).train
        long_steps, info = plan_steps(
            [(scorer.build(baseline, quantize=False), train)], wall, lo=1, hi=100_000
        )
        q = trained_quality(scorer, baseline, steps=long_steps, seed=0, init="scratch").test.aggregate
        delivered = (
            f"chosen finetuned {m['chosen finetuned']:.2f}"
            if m
            else f"the card's {card['quality']['aggregate']:.2f}"
        )
        print(
            f"no target: baseline from scratch for the whole run's wall time ({wall / 60:.1f} min = {long_steps} "
            f"steps at {info['seconds_per_step'][0]:.2f} s/step, seed 0): {q:.2f} vs {delivered}"
        )


if __name__ == "__main__":
    main()
