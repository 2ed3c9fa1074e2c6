"""Supernet quality: one process vs ``torchrun --nproc-per-node 2`` (DDP on the CPU, gloo), same recipe.

Trains the same narrowed supernet three times on generated scenes: one process (seed 0), one process (seed 1:
the seed-to-seed noise) and two DDP processes (seed 0; each rank takes half of every batch, gradients are
averaged). Prints the aggregate quality of the largest and smallest subnets (extracted, BN-recalibrated,
validation split) for each run and whether DDP's difference from the single run lies within the seed noise.
DDP is not bit-identical to one process: batch-norm statistics are per rank (half a batch).

    python benchmarks/ddp_quality.py [--steps 80] [--train-images 480] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RES = 64


def _scenes(args):
    from compress.data import SceneConfig

    return SceneConfig(num_train=args.train_images, num_val=args.val_images, image_size=RES)


def _space(num_classes: int):
    """The default space at 64 px with the two smallest choices per stage (minutes on a CPU, not hours)."""
    from compress.model import default_space

    space = default_space(num_classes=num_classes)
    return dataclasses.replace(
        space,
        resolutions=(RES,),
        stages=tuple(
            dataclasses.replace(s, widths=s.widths[:2], depths=s.depths[:2], kernels=(3,))
            for s in space.stages
        ),
    )


def _train(args, out: Path, seed: int):
    from compress.data import load_data
    from compress.training import TrainConfig, train_supernet

    train, _ = load_data(
        "builtin", resolution=RES, cache_dir=args.cache, progress=False, scenes=_scenes(args)
    )
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        resolution=RES,
        warmup_steps=max(1, args.steps // 10),
        seed=seed,
    )
    return train_supernet(_space(train.num_classes), train, out, config=config, progress=False)


def _quality(args, net) -> dict[str, float]:
    from compress.data import load_data
    from compress.evaluate import evaluate
    from compress.model import extract, recalibrate_bn

    train, val = load_data(
        "builtin", resolution=RES, cache_dir=args.cache, progress=False, scenes=_scenes(args)
    )
    space = _space(train.num_classes)
    out = {}
    for name, spec in (("largest", space.largest()), ("smallest", space.smallest())):
        model = extract(net, spec)
        recalibrate_bn(model, train.batch(torch.arange(min(256, len(train))))["images"])
        out[name] = evaluate(model.eval(), val).aggregate
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=480)
    ap.add_argument("--val-images", type=int, default=160)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # torchrun's ranks
    args = ap.parse_args()
    if args.worker is not None:
        torch.set_num_threads(1)
        _train(args, args.worker, seed=0)
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = args.cache or Path(tmp) / "cache"
        threads = max(1, os.cpu_count() or 1)
        torch.set_num_threads(min(2, threads))
        rows = {}
        for name, seed in (("1 process, seed 0", 0), ("1 process, seed 1", 1)):
            result = _train(args, Path(tmp) / f"single{seed}.safetensors", seed)
            rows[name] = (result.seconds, _quality(args, result.supernet))
        out = Path(tmp) / "ddp.safetensors"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__]
        cmd += ["--worker", str(out), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        cmd += ["--train-images", str(args.train_images), "--val-images", str(args.val_images)]
        cmd += ["--cache", str(args.cache)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        from compress.training import load_supernet

        rows["torchrun, 2 processes, seed 0"] = (
            time.perf_counter() - start,
            _quality(args, load_supernet(out)),
        )

    print(
        f"supernet: {args.steps} steps, batch {args.batch_size}, {RES} px, {args.train_images} train / "
        f"{args.val_images} val generated scenes; single runs use {min(2, threads)} threads, DDP ranks 1 each"
    )
    print(f"{'run':<32}{'train s':>9}{'largest':>10}{'smallest':>10}")
    for name, (seconds, q) in rows.items():
        print(f"{name:<32}{seconds:>9.1f}{q['largest']:>10.2f}{q['smallest']:>10.2f}")
    base, other, ddp = (q for _, q in rows.values())
    for k in ("largest", "smallest"):
        noise, diff = abs(other[k] - base[k]), abs(ddp[k] - base[k])
        verdict = "within" if diff <= noise else "OUTSIDE"
        print(
            f"{k}: |DDP - single| = {diff:.2f} points, seed noise |seed 1 - seed 0| = {noise:.2f}: {verdict} noise"
        )


if __name__ == "__main__":
    main()
