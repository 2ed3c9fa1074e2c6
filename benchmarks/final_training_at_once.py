"""How much faster the final training is when the chosen model and its baseline train at once.

``compress search`` trains the chosen model and the best hand-scaled baseline for the same steps. Where the
platform forks and there are two threads or more, it trains them at once, each on half the threads
(``compress.finetune.at_once``), instead of one after the other on all of them; once the baseline (in the
forked child) is done, the chosen model takes every thread (``widen``). This benchmark times the three ways
side by side on a finished run's two models (inherited from its supernet, as the final training starts),
``--repeats`` times in alternation, and prints the seconds and the ratios of each repeat: the ratio over one
after the other is what the time goal's steps grow by.

    python benchmarks/final_training_at_once.py --run runs/search-10ms [--steps 100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import chosen_and_baseline, load_run

from compress.data import load_splits
from compress.finetune import FinetuneRecipe, at_once, finetune, pair_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished `compress search` run directory")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    threads = pair_threads()
    if threads is None:
        raise SystemExit("this process cannot train two models at once here (needs Linux and 2+ threads)")
    run = load_run(args.run)
    card, scorer = run["card"], run["scorer"]
    chosen, baseline = chosen_and_baseline(run, args.run)
    models = []
    for cand in (chosen, baseline):
        train = load_splits(scorer.data, resolution=cand.spec.resolution, progress=False).train
        models.append((scorer.build(cand, quantize=False), train))
    recipe = FinetuneRecipe()

    def train(i: int) -> float:
        model, data = models[i]
        t0 = time.perf_counter()
        finetune(model, data, steps=args.steps, recipe=recipe, seed=0)
        return time.perf_counter() - t0

    total = torch.get_num_threads()
    print(f"chosen {chosen.describe()}\nbaseline {card['baseline']['name']}\n{args.steps} steps each")
    ratios, widened = [], []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        a, b = train(0), train(1)
        one_after = time.perf_counter() - t0
        t0 = time.perf_counter()
        here, there = at_once(lambda: train(0), lambda: train(1), threads=threads)
        both = time.perf_counter() - t0
        t0 = time.perf_counter()
        w_here, w_there = at_once(lambda: train(0), lambda: train(1), threads=threads, widen=True)
        wide = time.perf_counter() - t0
        ratios.append(one_after / both)
        widened.append(one_after / wide)
        print(
            f"repeat {rep}: one after the other on {total} threads {one_after:.1f} s ({a:.1f} + {b:.1f}); "
            f"at once on {threads} thread(s) each {both:.1f} s ({here:.1f}, {there:.1f}): x{ratios[-1]:.2f}; "
            f"at once, the chosen model widened to {total} threads once the baseline is done {wide:.1f} s "
            f"({w_here:.1f}, {w_there:.1f}): x{widened[-1]:.2f} (x{both / wide:.2f} over at once)",
            flush=True,
        )
    for name, r in (("at once", ratios), ("at once, widened", widened)):
        print(f"{name} over one after the other, median of {len(r)}: x{statistics.median(r):.2f} "
              f"(range {min(r):.2f}-{max(r):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
