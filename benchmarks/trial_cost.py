"""How long one search trial takes at the defaults, and how long costing one candidate on all devices takes.

Prints, over N random candidates of the default search space: graph extraction + costing on the 11 default
devices (target <= 20 ms), and the whole trial (extract, BN recalibration, pruning, quantization simulation,
evaluation on the default validation subset, costing; target <= 3 s on 2 cores), as median / p90 / max.

    python benchmarks/trial_cost.py [--run runs/search-10ms] [--n 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna
import torch

from search import DEFAULT_DEVICES, SearchSpace
from search.scorer import Scorer


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"median {statistics.median(xs):8.1f}   p90 {p90:8.1f}   max {xs[-1]:8.1f}"


def main() -> None:
    from _common import supernet_for

    from profiles import estimate_graph, extract_graph

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None, help="run directory whose supernet.safetensors to use")
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    supernet, data = supernet_for(args.run)
    space = SearchSpace.default(supernet.space.num_classes)
    scorer = Scorer(supernet, data=data, devices=list(DEFAULT_DEVICES))
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0), directions=["maximize", "minimize"]
    )
    for r in space.arch.resolutions:  # load the per-resolution caches outside the timings
        scorer.val(r)
    cost_ms, trial_s, parts = [], [], {"build": [], "cost": [], "quantize": [], "evaluate": []}
    for _ in range(args.n):
        trial = study.ask()
        cand = space.sample(trial)
        model = scorer.build(cand, quantize=False)
        t0 = time.perf_counter()
        graph = extract_graph(model, (1, 3, cand.spec.resolution, cand.spec.resolution))
        for d in DEFAULT_DEVICES:
            estimate_graph(graph, d, quant=cand.quant)
        cost_ms.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        score = scorer.score(cand)
        trial_s.append(time.perf_counter() - t0)
        for k in parts:
            parts[k].append(score.seconds.get(k, 0.0))
        study.tell(trial, [score.quality.aggregate, score.worst_latency_ms])
    print(f"{args.n} random candidates, {torch.get_num_threads()} threads")
    print(f"cost on {len(DEFAULT_DEVICES)} devices (ms):  {_stats(cost_ms)}   (target <= 20 ms)")
    print(f"whole trial (s):               {_stats(trial_s)}   (target <= 3 s)")
    for k, v in parts.items():
        print(f"  {k:<10} (s):             {_stats(v)}")


if __name__ == "__main__":
    main()
