"""Supernet spread and training time on the default data (issue: Foundation).

Prints: supernet training time with the default recipe (minutes, images/s) on this machine; the aggregate and
per-task quality of the largest and smallest subnets (extracted, BN-recalibrated, full validation split at
their own resolution) and their gap (target >= 10 points); random subnets between them, with the Spearman
correlation of their quality and predicted A11 latency; the MobileNetV3-Large and -Small presets (width
1.0) trained with the same static recipe for the same steps, per task (target: Large beats Small on every
task).

    python benchmarks/supernet_spread.py [--steps N] [--preset-steps N] [--threads N] [--mids N] [--run RUN]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from compress.data import load_data
from compress.evaluate import evaluate
from compress.finetune import FinetuneRecipe, finetune
from compress.model import MultiTaskNet, default_space, extract, get_preset, recalibrate_bn
from compress.training import TrainConfig, train_supernet


def _row(name: str, q) -> str:
    tasks = "  ".join(f"{t}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for t, m in q.tasks.items())
    return f"{name:<28} aggregate {q.aggregate:6.2f}   {tasks}"


def _mids(net, space, n: int) -> None:
    """Random subnets between the extremes: does quality grow with predicted latency (what the search needs)?"""
    import random

    from scipy.stats import spearmanr

    from profiles import estimate

    if n < 3:
        return
    rng, rows = random.Random(7), []
    for _ in range(n):
        spec = space.sample(rng)
        tr, val = load_data("builtin", resolution=spec.resolution)
        model = extract(net, spec)
        recalibrate_bn(model, tr.batch(torch.arange(256))["images"])
        q = evaluate(model.eval(), val)
        ms = estimate(model, (1, 3, spec.resolution, spec.resolution), "a11").latency_ms
        rows.append((ms, q.aggregate))
        print(_row(f"random @{spec.resolution} a11 {ms:5.2f} ms", q))
    rho = spearmanr([r[0] for r in rows], [r[1] for r in rows]).statistic
    print(f"{n} random subnets: Spearman(A11 latency, aggregate quality) = {rho:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=TrainConfig().steps)
    ap.add_argument("--preset-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--mids", type=int, default=8, help="random subnets to score between the extremes")
    ap.add_argument(
        "--run", default=None, help="reuse RUN/supernet.safetensors (skips the training-time figure)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps)
    train, _ = load_data("builtin", resolution=cfg.resolution)
    space = default_space(num_classes=train.num_classes)
    if args.run:
        from compress.training import load_supernet

        net = load_supernet(Path(args.run) / "supernet.safetensors")
        print(f"supernet reused from {args.run} (training time: see its run.json)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = train_supernet(
                space, train, Path(tmp) / "supernet.safetensors", config=cfg, data_key="bench"
            )
        print(
            f"supernet training ({cfg.steps} steps, batch {cfg.batch_size}, {cfg.resolution} px, "
            f"{args.threads} threads): {result.seconds / 60:.2f} min, {result.images_per_second:.1f} img/s "
            f"(target <= 8 min)"
        )
        net = result.supernet
    net = net.eval()
    qualities = {}
    for name, spec in (("largest", space.largest()), ("smallest", space.smallest())):
        tr, val = load_data("builtin", resolution=spec.resolution)
        model = extract(net, spec)
        recalibrate_bn(model, tr.batch(torch.arange(256))["images"])
        qualities[name] = evaluate(model.eval(), val)
        print(_row(f"{name} subnet @{spec.resolution}", qualities[name]))
    gap = qualities["largest"].aggregate - qualities["smallest"].aggregate
    print(f"largest - smallest: {gap:+.2f} points (target >= 10)")
    _mids(net, space, args.mids)

    presets = {}
    for name in ("mobilenetv3_large_100", "mobilenetv3_small_100"):
        spec = get_preset(name, num_classes=train.num_classes, resolution=128)
        torch.manual_seed(0)
        model = MultiTaskNet(spec)
        model.to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        finetune(
            model,
            load_data("builtin", resolution=128)[0],
            steps=args.preset_steps,
            recipe=FinetuneRecipe(lr=2e-3),
        )
        _, val = load_data("builtin", resolution=spec.resolution)
        presets[name] = evaluate(model.eval(), val)
        print(_row(f"{name} ({time.perf_counter() - t0:.0f} s)", presets[name]))
    large, small = presets["mobilenetv3_large_100"], presets["mobilenetv3_small_100"]
    wins = {
        t: large.tasks[t][k] > small.tasks[t][k]
        for t, k in (("tagging", "map"), ("detection", "map"), ("saliency", "max_fbeta"))
    }
    print("Large beats Small on: " + ", ".join(f"{t} {'yes' if w else 'NO'}" for t, w in wins.items()))


if __name__ == "__main__":
    main()
