"""ANSA comparison: a ~16M-parameter MobileNetV3-style multi-head model at 360x360 on ``a15``.

    python benchmarks/ansa_comparison.py

Apple's ANSA runs a MobileNetV3-variant backbone (16M parameters) with all heads in under 9.7 ms, 24.6 MB of
memory on the Neural Engine and 16.4 MB on disk (third-party notes quoting Apple's article; device iPhone 13
/ A15 per one of them; shared/reference/apple-devices.md §1). We build a MobileNetV3-Large-shaped
``compress.model`` network widened until it has ~16M parameters, with tagging, detection (branching at
stride 4: a 90x90 map at 360 px, as in the SceneNet dump) and saliency heads, and print the ``a15``
estimate per scheme beside ANSA's figures. A printed comparison, not a pass/fail: ANSA's exact
architecture, head depths and quantization are not public.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from compress.model import HeadSpec, MultiTaskNet, count_parameters, get_preset, make_divisible
from profiles import estimate_graph, extract_graph, load_profile

ANSA = {"latency_ms": 9.7, "memory_mb": 24.6, "disk_mb": 16.4, "params_m": 16.0}


def ansa_like(target_params: float = 16e6) -> MultiTaskNet:
    """MobileNetV3-Large stages widened by the smallest multiplier that reaches ``target_params``."""
    base = get_preset("mobilenetv3_large_100")
    for mult in [1.0 + 0.05 * i for i in range(60)]:
        stages = tuple(replace(s, width=make_divisible(s.width * mult)) for s in base.stages)
        last = stages[-1].width
        heads = (
            HeadSpec("tagging", len(stages) - 1, (make_divisible(6 * last), 1280)),
            HeadSpec("detection", 1, (make_divisible(64 * mult),)),
            HeadSpec("saliency", 2, (make_divisible(64 * mult),)),
        )
        spec = replace(
            base, resolution=352, stem=make_divisible(16 * mult), stages=stages, heads=heads, num_classes=30
        )
        model = MultiTaskNet(spec)
        if count_parameters(model) >= target_params:
            return model
    raise RuntimeError("no multiplier reached the target")


def main() -> None:
    torch.set_num_threads(1)
    model = ansa_like()
    params = count_parameters(model)
    graph = extract_graph(model, (1, 3, 360, 360))
    profile = load_profile("a15")
    cal = profile.calibration
    print(f"ANSA-like model: {params / 1e6:.1f}M parameters, {graph.flops / 2e9:.2f} GMAC at 360x360, heads:")
    print(f"  {', '.join(name for name, _ in graph.outputs)}")
    print(f"a15 profile: {cal.basis} ({cal.note or cal.data})")
    print(f"{'scheme':10s} {'latency ms':>11s} {'memory MB':>10s} {'disk MB':>8s}  units")
    for q in ("fp16", "int8", "pal8", "pal6", "pal4", "w8a8"):
        c = estimate_graph(graph, profile, quant=q)
        print(f"{q:10s} {c.latency_ms:11.2f} {c.peak_memory_mb:10.1f} {c.disk_mb:8.1f}  {'+'.join(c.units)}")
    a = ANSA
    print(
        f"{'ANSA':10s} {a['latency_ms']:>11} {a['memory_mb']:>10} {a['disk_mb']:>8}  (all heads, '<9.7 ms')"
    )
    heads = estimate_graph(graph, profile, quant="int8").by_output()
    print("per output group (int8):")
    for name, row in heads.iterrows():
        mparams = row.params / 1e6
        print(f"  {name:28s} {row.ms:6.2f} ms  {mparams:5.2f}M params  {row.weights_mb:5.2f} MB weights")


if __name__ == "__main__":
    main()
