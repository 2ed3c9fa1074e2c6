"""Backbone pretraining: multi-label classification on the tags (a) vs image-text contrastive on captions (b).

ANSA moved its MobileNetV3 backbone from multi-label classification pretraining to a contrastive image-language
objective and reports +10.5% downstream mAP. Here both use the same supernet, the same data, the same
sandwich sampling and the same total steps: ``--pretrain-steps`` pretraining the backbone with (a) or (b)
(``compress.pretrain.pretrain_backbone``), then ``--head-steps`` training the same heads on the frozen
backbone (``train_supernet`` head phase). Each is scored per task on the validation split for the largest
and the smallest subnet (extracted, BN-recalibrated on 256 training images), over ``--seeds`` seeds; the
script prints mean and standard deviation over seeds, the relative change (b) vs (a) of tagging and
detection mAP with its spread over seed pairs, and (b)'s zero-shot tagging mAP from the prompt
"a photo of a {category}" alone beside the trained tagging head. Every figure is measured in this run.

Kept small enough for 2 shared CPU cores: every subnet trains and is scored at ``--resolution`` px (default
96, the default space's lowest); ``--max-depth`` caps the stage depths; one torch thread by default (on a
shared machine two threads spent most of their CPU time spin-waiting).

    nice -n 10 python benchmarks/pretraining.py [--seeds 3] [--pretrain-steps 90] [--head-steps 30]
        [--batch-size 24] [--resolution 96] [--lr 3e-3] [--temperature 0.07] [--out runs/bench-pretrain]

``--cost-steps N`` instead times what ``compress search --pretrain`` changes in the default recipe (160 px,
batch 24): N contrastive pretraining steps against N joint-phase supernet steps, alternating, ``--rounds``
times, and prints the ratio of seconds per step (the default search's supernet is 150 joint + 50 head steps;
``--pretrain`` makes it 150 pretraining + 50 head steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from compress.data import load_data
from compress.evaluate import evaluate
from compress.metrics import tagging_map
from compress.model import default_space, extract, recalibrate_bn
from compress.pretrain import PretrainConfig, heads_only, pretrain_backbone, zero_shot_scores
from compress.text import TextConfig
from compress.training import TrainConfig, train_supernet

METHODS = {"a": "tags", "b": "contrastive"}


def _run(method: str, seed: int, args, train, val, space) -> dict[str, float]:
    out = Path(args.out) / f"{method}-seed{seed}"
    text = TextConfig(init_temperature=args.temperature)
    pre = PretrainConfig(objective=METHODS[method], steps=args.pretrain_steps, batch_size=args.batch_size,
                         lr=args.lr, resolution=args.resolution, seed=seed, text=text)  # fmt: skip
    t0 = time.perf_counter()
    done = pretrain_backbone(
        space, train, out, config=pre, data_key=f"bench@{args.resolution}", progress=True
    )
    recipe = heads_only(
        TrainConfig(batch_size=args.batch_size, resolution=args.resolution, seed=seed), args.head_steps
    )
    trained = train_supernet(space, train, out / "supernet.safetensors", config=recipe, data_key=f"bench+{done.key}",
                             supernet=done.supernet, progress=True)  # fmt: skip
    row: dict[str, float] = {"minutes": (time.perf_counter() - t0) / 60}
    calib = train.batch(torch.arange(min(256, len(train))))["images"]
    for name, spec in (("largest", space.largest()), ("smallest", space.smallest())):
        net = recalibrate_bn(extract(trained.supernet, spec), calib).eval()
        q = evaluate(net, val)
        row[f"{name}.tagging"] = q.tasks["tagging"]["map"]
        row[f"{name}.detection"] = q.tasks["detection"]["map"]
        row[f"{name}.saliency"] = q.tasks["saliency"]["max_fbeta"]
        if done.image_text is not None:
            row[f"{name}.zero_shot"] = tagging_map(
                zero_shot_scores(net, done.image_text, val), val.tags.numpy()
            )
    print(f"  ({method}) seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    return row


def _stat(rows: list[dict[str, float]], key: str) -> str:
    values = [100 * r[key] for r in rows]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {sd:4.2f}"


def _cost(args) -> None:
    import tempfile

    train, _ = load_data("builtin", resolution=160)
    space = default_space(num_classes=train.num_classes)
    recipe = TrainConfig(steps=args.cost_steps, joint_fraction=1.0, warmup_steps=1, checkpoint_every=10**6)
    pre = dataclasses.replace(PretrainConfig(), steps=args.cost_steps, warmup_steps=1)
    ratios = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            joint = train_supernet(space, train, Path(tmp) / "supernet.safetensors", config=recipe, data_key=f"cost{r}",
                                   progress=False).seconds / args.cost_steps  # fmt: skip
            contrastive = pretrain_backbone(space, train, tmp, config=pre, data_key=f"cost{r}",
                                            progress=False).seconds / args.cost_steps  # fmt: skip
        ratios.append(contrastive / joint)
        print(f"round {r}: joint-phase step {joint:.2f} s, contrastive pretraining step {contrastive:.2f} s, "
              f"ratio {ratios[-1]:.2f}", flush=True)  # fmt: skip
    print(
        f"pretraining / joint step time: {statistics.mean(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pretrain-steps", type=int, default=90)
    parser.add_argument("--head-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=0.07, help="(b)'s initial temperature")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: no spin-waiting on a shared CPU)"
    )
    parser.add_argument("--methods", default="a,b")
    parser.add_argument("--max-depth", type=int, default=0, help="cap the space's stage depths (0: as is)")
    parser.add_argument("--out", default="runs/bench-pretrain")
    parser.add_argument("--cost-steps", type=int, default=0, help="time steps instead (see the doc)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cost_steps:
        _cost(args)
        return
    train, val = load_data("builtin", resolution=args.resolution)
    # every subnet trains and is scored at --resolution
    space = dataclasses.replace(default_space(num_classes=train.num_classes), resolutions=(args.resolution,))
    if args.max_depth:
        stages = tuple(
            dataclasses.replace(st, depths=tuple(d for d in st.depths if d <= args.max_depth))
            for st in space.stages
        )
        space = dataclasses.replace(space, stages=stages)
    print(f"space: {len(space.stages)} stages, depths up to {max(max(st.depths) for st in space.stages)}; data: builtin, {len(train)} train / {len(val)} val images at {args.resolution} px; "
          f"{args.pretrain_steps} pretraining + {args.head_steps} head steps, batch {args.batch_size}", flush=True)  # fmt: skip
    methods = args.methods.split(",")
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for seed in range(args.seeds):  # seed by seed, so an interrupted run still holds matched pairs
        for m in methods:
            rows[m].append(_run(m, seed, args, train, val, space))
    print(f"\nper-task quality on the validation split (x100), mean ± sd over {args.seeds} seeds")
    for m in methods:
        label = {"a": "(a) tags pretrained", "b": "(b) contrastive"}[m]
        for sub in ("largest", "smallest"):
            cells = "  ".join(
                f"{t} {_stat(rows[m], f'{sub}.{t}')}" for t in ("tagging", "detection", "saliency")
            )
            zs = (
                f"  zero-shot tagging {_stat(rows[m], f'{sub}.zero_shot')}"
                if f"{sub}.zero_shot" in rows[m][0]
                else ""
            )
            print(f"{label:<22} {sub:<9} {cells}{zs}")
        print(f"{'':<22} minutes per run {statistics.mean(r['minutes'] for r in rows[m]):.1f}")
    if {"a", "b"} <= set(methods):
        print("\nrelative change (b) vs (a), mean over seeds [min, max over the seed pairs]:")
        for sub in ("largest", "smallest"):
            for task in ("tagging", "detection"):
                key = f"{sub}.{task}"
                mean_a = statistics.mean(r[key] for r in rows["a"])
                mean_b = statistics.mean(r[key] for r in rows["b"])
                pairs = [
                    100 * (b[key] / a[key] - 1)
                    for a, b in zip(rows["a"], rows["b"], strict=True)
                    if a[key] > 0
                ]
                spread = f" [{min(pairs):+.1f}%, {max(pairs):+.1f}%]" if pairs else ""
                if mean_a < 0.01:  # under one mAP point a ratio says nothing
                    print(
                        f"  {sub:<9} {task:<10} not measurable: (a) {100 * mean_a:.2f}, (b) {100 * mean_b:.2f} mAP"
                    )
                    continue
                rel = 100 * (mean_b / mean_a - 1)
                print(f"  {sub:<9} {task:<10} {rel:+6.1f}%{spread}   (ANSA: +10.5% mAP)")


if __name__ == "__main__":
    main()
