"""Compression table: prune ratio x scheme -> params, predicted latency, disk MB predicted vs actual, quality.

    python benchmarks/compression.py [--preset mobilenetv3_small_075 --resolution 128 --steps 300
                                      --prune 0,0.3 --schemes fp16,int8,pal2,pal4,pal6,pal8,pal4-g16,w8a8]

What it does, on one thread (everything measured, nothing assumed):

1. Loads the built-in scene data at ``--resolution`` (``compress.data.load_data``; generated and cached once)
   and trains a ``MultiTaskNet`` of ``--preset`` (all three heads) for ``--steps`` AdamW steps on it.
2. For each prune ratio: ``prune`` (magnitude importance, every stage, channels rounded to 8) followed by BN
   recalibration on 256 training images (no fine-tune: the table shows the loss BN recalibration recovers).
3. For each scheme: quality of ``simulate(model, scheme)`` on the validation split (``compress.evaluate``);
   the package ``export_coreml`` writes and its real size (``package_size_mb``); the profile's predicted
   disk size (``profiles.disk_mb``) and predicted latency on A11 and M1 (``profiles.estimate``).

Prints the table and the worst disk-size prediction error; packages go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from compress.compression import PruneSpec, prune, simulate
from compress.data import load_data
from compress.evaluate import evaluate
from compress.export import export_coreml, package_size_mb
from compress.model import MultiTaskNet, count_parameters, get_preset, multitask_loss

DEVICES = ("a11", "m1")


def train(model: MultiTaskNet, data: object, *, steps: int, batch_size: int = 32, lr: float = 2e-3) -> None:
    """A short supervised run (AdamW, cosine schedule), enough for the metrics to mean something."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        batch = data.batch(torch.randint(len(data), (batch_size,), generator=g))
        loss = multitask_loss(model(batch["images"]), batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(
                f"  step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - start:.0f} s)", flush=True
            )
    model.eval()


def _cost(model: MultiTaskNet, scheme: str, resolution: int) -> dict[str, float]:
    from profiles import disk_mb, estimate

    shape = (1, 3, resolution, resolution)
    row = {"disk_pred": disk_mb(model, scheme, input_shape=shape)}
    for device in DEVICES:
        row[f"ms_{device}"] = estimate(model, shape, device, quant=scheme).latency_ms
    return row


def _quality(model: torch.nn.Module, val: object) -> dict[str, float]:
    q = evaluate(model, val)
    return {
        "tag_map": q.tasks["tagging"]["map"],
        "det_map50": q.tasks["detection"]["map50"],
        "sal_fbeta": q.tasks["saliency"]["max_fbeta"],
        "aggregate": q.aggregate,
    }


def _rows(
    net: MultiTaskNet,
    ratios: list[float],
    schemes: list[str],
    calib: torch.Tensor,
    val: object,
    out: Path,
    resolution: int,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for ratio in ratios:
        model = prune(net, PruneSpec(ratio), calibration=calib) if ratio else net
        for scheme in schemes:
            start = time.perf_counter()
            sim = simulate(model, scheme, calibration=calib)
            path = export_coreml(model, out / f"p{ratio:g}_{scheme}", scheme=scheme, calibration=calib)
            row: dict[str, object] = {"prune": ratio, "scheme": scheme, "params": count_parameters(model)}
            row.update(_cost(model, scheme, resolution))
            row["disk_actual"] = package_size_mb(path)
            row.update(_quality(sim, val))
            rows.append(row)
            print(f"  prune {ratio:g} {scheme:9s} done in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    head = (
        f"{'prune':>5} {'scheme':9} {'params':>9} {'a11 ms':>7} {'m1 ms':>6} {'disk pred':>9} "
        f"{'disk MB':>8} {'err':>6} {'tag mAP':>7} {'det AP50':>8} {'sal Fb':>6} {'aggr':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        err = (r["disk_pred"] - r["disk_actual"]) / r["disk_actual"] * 100
        print(
            f"{r['prune']:>5g} {r['scheme']:9} {r['params']:>9,d} {r['ms_a11']:>7.2f} {r['ms_m1']:>6.2f} "
            f"{r['disk_pred']:>9.3f} {r['disk_actual']:>8.3f} {err:>+5.1f}% {r['tag_map']:>7.3f} "
            f"{r['det_map50']:>8.3f} {r['sal_fbeta']:>6.3f} {r['aggregate']:>6.2f}"
        )
    worst = max(abs(r["disk_pred"] - r["disk_actual"]) / r["disk_actual"] for r in rows)
    print(f"\nworst disk-size prediction error: {worst * 100:.1f}% (target: within 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mobilenetv3_small_075")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prune", default="0,0.3")
    parser.add_argument("--schemes", default="fp16,int8,pal2,pal4,pal6,pal8,pal4-g16,w8a8")
    parser.add_argument("--val", type=int, default=400, help="validation images used for quality")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    print(f"data: builtin at {args.resolution} px", flush=True)
    train_data, val = load_data("builtin", resolution=args.resolution, progress=False)
    val = val.subset(torch.arange(min(args.val, len(val))))
    spec = get_preset(args.preset, num_classes=train_data.num_classes, resolution=args.resolution)
    net = MultiTaskNet(spec)
    print(f"training {args.preset} ({count_parameters(net):,d} params) for {args.steps} steps", flush=True)
    train(net, train_data, steps=args.steps)
    calib = train_data.images[:256]
    ratios = [float(r) for r in args.prune.split(",")]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        rows = _rows(net, ratios, schemes, calib, val, Path(tmp), args.resolution)
    print()
    _print(rows)


if __name__ == "__main__":
    main()
