"""ANSA comparison: a ~16M-parameter MobileNetV3 multi-head model at 360x360 on the A-series and M1.

    python benchmarks/ansa_comparison.py

Apple's ANSA runs a MobileNetV3-variant backbone (16M parameters) with all heads in under 9.7 ms, 24.6 MB of
memory on the Neural Engine and 16.4 MB on disk, heads branching at different depths, its detection head
about 1 MB of storage (third-party notes quoting Apple's article; shared/reference/apple-devices.md §1). We
build that shape with ``compress.model``: MobileNetV3-Large stages widened until the **backbone** carries
most of ~16M parameters, a tagging head on the last stage, a detection head of ~1 MB (fp16) branching at
stride 16 and a saliency head at stride 8, at 360x360; and print, per scheme and device, the predicted
latency with its p10-p90 interval (held-out errors of the device's calibration), peak memory and disk beside
ANSA's figures. A printed comparison, not a pass/fail: ANSA's exact architecture, head depths and
quantization are not public.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from compress.model import HeadSpec, MultiTaskNet, count_parameters, get_preset, make_divisible
from profiles import estimate_graph, extract_graph, load_profile

ANSA = {"latency_ms": 9.7, "memory_mb": 24.6, "disk_mb": 16.4, "params_m": 16.0}
DEVICES = ("a11", "a12", "a13", "a14", "a15", "a16", "a17pro", "m1")
SCHEMES = ("fp16", "int8", "pal8", "pal6", "pal4", "w8a8")
RESOLUTION = 360


def _head_widths(stages: tuple) -> tuple[HeadSpec, ...]:
    last = stages[-1].width
    det = next(w for w in range(64, 2048, 16) if _detection_params(stages[3].width, w) >= 0.5e6)
    return (
        HeadSpec("tagging", len(stages) - 1, (make_divisible(2 * last), 1024)),
        HeadSpec("detection", 3, (det,)),
        HeadSpec("saliency", 2, (make_divisible(2 * stages[2].width),)),
    )


def _detection_params(cin: int, width: int, classes: int = 30) -> float:
    """Parameters of ``compress.model``'s detection tower + outputs (dw, pw, dw, pw, heatmap, box)."""
    return 9 * cin + cin * width + 9 * width + width * width + width * (classes + 4)


def ansa_like(backbone_params: float = 14.5e6) -> MultiTaskNet:
    """MobileNetV3-Large stages widened by the smallest multiplier whose backbone reaches ``backbone_params``."""
    base = get_preset("mobilenetv3_large_100")
    for mult in [1.0 + 0.05 * i for i in range(80)]:
        stages = tuple(replace(s, width=make_divisible(s.width * mult)) for s in base.stages)
        spec = replace(
            base,
            resolution=352,
            stem=make_divisible(16 * mult),
            stages=stages,
            heads=_head_widths(stages),
            num_classes=30,
        )
        model = MultiTaskNet(spec)
        heads = sum(count_parameters(h) for h in model.heads.values())
        if count_parameters(model) - heads >= backbone_params:
            return model
    raise RuntimeError("no multiplier reached the target")


def main() -> None:
    torch.set_num_threads(1)
    model = ansa_like()
    params = count_parameters(model)
    heads = {name: count_parameters(h) for name, h in model.heads.items()}
    graph = extract_graph(model, (1, 3, RESOLUTION, RESOLUTION))
    print(
        f"ANSA-like model: {params / 1e6:.1f}M parameters (backbone {(params - sum(heads.values())) / 1e6:.1f}M; "
        + ", ".join(f"{n} head {p / 1e6:.2f}M" for n, p in heads.items())
        + f"), {graph.flops / 2e9:.2f} GMAC at {RESOLUTION}x{RESOLUTION}"
    )
    print("  heads branch at stages " + ", ".join(f"{h.task} {h.branch}" for h in model.spec.heads))
    print(
        f"{'device':7s} {'scheme':7s} {'latency ms':>10s} {'p10-p90 ms':>13s} {'memory MB':>10s} {'disk MB':>8s}  basis"
    )
    for d in DEVICES:
        profile = load_profile(d)
        for q in SCHEMES:
            c = estimate_graph(graph, profile, quant=q)
            basis = profile.units[c.units[0]].costs.basis
            band = f"{c.latency_ms_p10:.1f}-{c.latency_ms_p90:.1f}" if c.latency_ms_p10 is not None else "-"
            print(
                f"{d:7s} {q:7s} {c.latency_ms:10.2f} {band:>13s} {c.peak_memory_mb:10.1f} {c.disk_mb:8.1f}  "
                f"{basis} ({'+'.join(c.units)})"
            )
    a = ANSA
    print(f"{'ANSA':15s} {'<' + str(a['latency_ms']):>10s} {'':>13s} {a['memory_mb']:10.1f} {a['disk_mb']:8.1f}"
          "  (all heads; device per one note: iPhone 13 / A15)")  # fmt: skip
    by = estimate_graph(graph, "a15", quant="fp16").by_output()
    print("a15, fp16, per output group:")
    for name, row in by.iterrows():
        print(
            f"  {name:28s} {row.ms:6.2f} ms  {row.params / 1e6:5.2f}M params  {row.weights_mb:5.2f} MB weights"
        )


if __name__ == "__main__":
    main()
