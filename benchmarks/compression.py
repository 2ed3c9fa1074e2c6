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

    python benchmarks/compression.py --kmeans [--kmeans-models mid,largest --kmeans-max-tensors 0]

prints instead how palettization's k-means compares with coremltools' own (``kmeans_table``): per model and
scheme, the seconds of our Lloyd k-means (``lloyd_lut``), of coremltools' rule
(``_get_kmeans_lookup_table_and_weight``: kmeans1d for fp16 tensors of >= 10,000 elements, scikit-learn
below) and of kmeans1d on every tensor, and each one's squared error above kmeans1d's optimum, for tensors
(or groups) of >= 10,000 elements and for smaller ones. Models: ``mid`` is the subnet
``default_space(12).sample(random.Random(3))`` and ``largest`` the space's largest, both extracted from
``runs/search-10ms/supernet.safetensors`` when it exists (trained weights), else randomly initialised. By default
only the ``mid`` model and 4 evenly spaced tensors per scheme (about 15 s, most of it importing coremltools
and loading the supernet); ``--kmeans-max-tensors 0`` measures every tensor (about a minute per model).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
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


# -- k-means: ours vs coremltools' -------------------------------------------------------------------------
SUPERNET = Path("runs/search-10ms/supernet.safetensors")
KMEANS_SCHEMES = ("pal2", "pal4", "pal6", "pal8", "pal4-g16")


def _kmeans_models(names: list[str]) -> tuple[dict[str, torch.nn.Module], str]:
    from compress.model import Supernet, default_space, extract
    from compress.training import load_supernet

    if SUPERNET.is_file():
        net, source = load_supernet(SUPERNET), f"trained ({SUPERNET})"
    else:
        net, source = Supernet(default_space(12)), "random init"
    pick = {"mid": lambda: net.space.sample(random.Random(3)), "largest": net.space.largest}
    return {n: extract(net, pick[n]()) for n in names}, source


def _tensors(model: torch.nn.Module, scheme: str, limit: int) -> list[np.ndarray]:
    """The fp16 tensors (or channel groups) ``scheme`` palettizes, ``limit`` of them evenly spaced by size."""
    from compress.compression import QuantScheme, compressed_layers, fold_batchnorm

    qs = QuantScheme.parse(scheme)
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    modules = dict(folded.named_modules())
    out = []
    for name in compressed_layers(folded, qs):
        w = modules[name].weight.detach().numpy().astype(np.float16)
        out += [w] if qs.group_size is None else np.split(w, w.shape[0] // qs.group_size)
    out.sort(key=lambda t: t.size)
    if 0 < limit < len(out):
        out = [out[i] for i in np.linspace(0, len(out) - 1, limit).round().astype(int)]
    return out


def _coremltools(w: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    from compress.compression.kmeans import coreml_kmeans_lut

    return coreml_kmeans_lut(w, nbits)


def _kmeans1d(w: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """kmeans1d (exact) over the distinct values weighted by counts, for any size (the optimum)."""
    from coremltools._deps import _kmeans1d

    values, inverse, counts = np.unique(w.reshape(-1), return_inverse=True, return_counts=True)
    res = _kmeans1d.cluster(values, min(len(values), 1 << nbits), weights=counts)
    lut = np.zeros(1 << nbits)
    lut[: len(res.centroids)] = res.centroids
    return lut.astype(np.float16), np.asarray(res.clusters)[inverse.reshape(-1)]


def _sse(w: np.ndarray, lut: np.ndarray, idx: np.ndarray) -> float:
    return float(((w.reshape(-1).astype(np.float64) - lut.astype(np.float64)[idx]) ** 2).sum())


def kmeans_table(models: dict[str, torch.nn.Module], *, limit: int) -> list[dict[str, object]]:
    """Seconds and squared error (relative to kmeans1d's optimum) of each clustering, per model and scheme."""
    from compress.compression import QuantScheme
    from compress.compression.kmeans import lloyd_lut

    methods = {"ours": lloyd_lut, "coreml": _coremltools, "kmeans1d": _kmeans1d}
    _coremltools(np.arange(16, dtype=np.float16), 2)  # import coremltools outside the timings
    rows = []
    for mname, model in models.items():
        for scheme in KMEANS_SCHEMES:
            nbits = QuantScheme.parse(scheme).weight_bits
            tensors = _tensors(model, scheme, limit)
            row: dict[str, object] = {"model": mname, "scheme": scheme, "n": len(tensors)}
            row["big"] = sum(t.size >= 10_000 for t in tensors)
            sse: dict[tuple[str, bool], float] = {}
            for key, fn in methods.items():
                seconds = 0.0
                for t in tensors:
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        lut, idx = fn(t, nbits)
                    seconds += time.perf_counter() - start
                    part = (key, t.size >= 10_000)
                    sse[part] = sse.get(part, 0.0) + _sse(t, lut.reshape(-1), np.asarray(idx).reshape(-1))
                row[f"s_{key}"] = seconds
            for key in ("ours", "coreml"):
                for big in (True, False):
                    opt = sse.get(("kmeans1d", big), 0.0)
                    row[f"err_{key}_{'big' if big else 'small'}"] = (
                        sse[(key, big)] / opt - 1 if opt > 0 else float("nan")
                    )
            rows.append(row)
            print(_kmeans_line(row), flush=True)
    return rows


KMEANS_HEAD = (
    f"{'model':8} {'scheme':9} {'tensors':>7} {'>=10k':>5} {'ours s':>7} {'coreml s':>8} {'ratio':>6} "
    f"{'k1d s':>7} | err above optimum: {'ours>=10k':>9} {'ours<10k':>8} {'coreml>=10k':>11} {'coreml<10k':>10}"
)


def _kmeans_line(r: dict[str, object]) -> str:
    return (
        f"{r['model']:8} {r['scheme']:9} {r['n']:>7} {r['big']:>5} {r['s_ours']:>7.2f} {r['s_coreml']:>8.2f} "
        f"{r['s_coreml'] / r['s_ours']:>5.1f}x {r['s_kmeans1d']:>7.2f} |{'':19}"
        f"{r['err_ours_big']:>+9.2%} {r['err_ours_small']:>+8.2%} {r['err_coreml_big']:>+11.2%} "
        f"{r['err_coreml_small']:>+10.2%}"
    )


def kmeans_main(names: list[str], limit: int) -> None:
    models, source = _kmeans_models(names)
    scope = "every tensor" if limit <= 0 else f"at most {limit} tensors (evenly spaced by size) per scheme"
    print(f"k-means palettization, one thread, {source} weights, {scope}")
    print("(seconds summed over those tensors; error: squared error / kmeans1d's optimum - 1)")
    print(KMEANS_HEAD)
    print("-" * len(KMEANS_HEAD))
    kmeans_table(models, limit=limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mobilenetv3_small_075")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prune", default="0,0.3")
    parser.add_argument("--schemes", default="fp16,int8,pal2,pal4,pal6,pal8,pal4-g16,w8a8")
    parser.add_argument("--val", type=int, default=400, help="validation images used for quality")
    parser.add_argument("--kmeans", action="store_true", help="print the k-means comparison table only")
    parser.add_argument("--kmeans-models", default="mid", help="mid, largest or both")
    parser.add_argument("--kmeans-max-tensors", type=int, default=4, help="per scheme; 0: every tensor")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.kmeans:
        kmeans_main(args.kmeans_models.split(","), args.kmeans_max_tensors)
        return
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
