"""Benchmark networks for fitting the host profile: single layers and random MobileNetV3-style nets.

``micro_benchmarks()`` covers every op class at the shapes MobileNetV3-style multi-task nets use;
``random_mbv3(rng)`` draws a multi-head network (tagging, CenterNet-style detection, saliency) from a
MobileNetV3-like space. Both are plain torch and random-weighted: only shapes matter for latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["micro_benchmarks", "random_mbv3"]


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


class _Op:
    """Builds a one-op ``nn.Module`` from a callable (defined lazily: torch is imported on first use)."""

    cls: Any = None

    @classmethod
    def make(cls, fn: Any, *modules: Any) -> Any:
        from torch import nn

        if cls.cls is None:

            class OpModule(nn.Module):
                def __init__(self, fn: Any, mods: tuple) -> None:
                    super().__init__()
                    self.fn = fn
                    self.mods = nn.ModuleList(mods)

                def forward(self, x: Any) -> Any:
                    return self.fn(x, *self.mods)

            cls.cls = OpModule
        return cls.cls(fn, modules)


def _conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: str | None = "relu") -> Any:
    from torch import nn

    acts: dict[str | None, Any] = {"relu": nn.ReLU, "hswish": nn.Hardswish, None: None}
    layers: list[Any] = [
        nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if acts[act] is not None:
        layers.append(acts[act](inplace=True))
    return nn.Sequential(*layers)


def micro_benchmarks() -> list[tuple[str, Any, tuple[int, ...]]]:
    """``(label, module, input_shape)`` for single layers of every op class at MobileNetV3-like shapes."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    out: list[tuple[str, Any, tuple[int, ...]]] = []

    def add(label: str, module: Any, shape: tuple[int, ...]) -> None:
        out.append((label, module, shape))

    for cin, cout, k, r, s in [
        (3, 16, 3, 224, 2),
        (3, 16, 3, 320, 2),
        (16, 32, 3, 56, 1),
        (32, 64, 3, 28, 1),
        (64, 64, 3, 14, 1),
        (24, 24, 3, 56, 1),
    ]:
        add(f"conv{k} {cin}>{cout} @{r}/s{s}", nn.Conv2d(cin, cout, k, s, k // 2, bias=False), (1, cin, r, r))
    for cin, cout, r in [
        (16, 64, 112),
        (16, 16, 112),
        (24, 72, 56),
        (72, 24, 56),
        (40, 120, 28),
        (120, 40, 28),
        (80, 480, 14),
        (480, 112, 14),
        (160, 960, 7),
        (960, 160, 7),
        (96, 576, 7),
        (48, 288, 14),
        (16, 96, 160),
        (200, 80, 14),
    ]:
        add(f"pw {cin}>{cout} @{r}", nn.Conv2d(cin, cout, 1, bias=False), (1, cin, r, r))
    for c, k, r, s in [
        (16, 3, 112, 1),
        (64, 3, 112, 2),
        (72, 3, 56, 1),
        (72, 5, 56, 2),
        (120, 5, 28, 1),
        (240, 3, 28, 2),
        (480, 3, 14, 1),
        (672, 5, 14, 2),
        (960, 5, 7, 1),
        (576, 5, 7, 1),
        (96, 7, 28, 1),
        (32, 3, 160, 1),
    ]:
        add(f"dw{k} {c} @{r}/s{s}", nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), (1, c, r, r))
    for c, g, r in [(64, 4, 28), (128, 8, 14)]:
        add(f"gconv3 {c}/g{g} @{r}", nn.Conv2d(c, c, 3, 1, 1, groups=g, bias=False), (1, c, r, r))
    for cin, cout in [(576, 1024), (960, 1280), (1280, 1000), (1024, 12), (32, 10)]:
        add(f"linear {cin}>{cout}", nn.Linear(cin, cout), (1, cin))
    for c, r in [(16, 112), (72, 56), (120, 28), (480, 14), (960, 7)]:
        add(f"bn {c} @{r}", nn.BatchNorm2d(c), (1, c, r, r))
    acts = {
        "relu": nn.ReLU(),
        "relu6": nn.ReLU6(),
        "hswish": nn.Hardswish(),
        "hsigmoid": nn.Hardsigmoid(),
        "silu": nn.SiLU(),
        "sigmoid": nn.Sigmoid(),
    }
    for i, (name, act) in enumerate(acts.items()):
        for c, r in [(16, 112), (120, 28), (960, 7)][i % 2 :: 1 + i % 2]:
            add(f"{name} {c} @{r}", act, (1, c, r, r))
    add("maxpool2 32 @56", nn.MaxPool2d(2), (1, 32, 56, 56))
    add("maxpool3/s2 64 @112", nn.MaxPool2d(3, 2, 1), (1, 64, 112, 112))
    add("avgpool2 64 @28", nn.AvgPool2d(2), (1, 64, 28, 28))
    for c, r in [(72, 56), (120, 28), (960, 7), (576, 10)]:
        add(f"gpool {c} @{r}", nn.AdaptiveAvgPool2d(1), (1, c, r, r))
    add("upsample2 nearest 64 @28", nn.Upsample(scale_factor=2.0), (1, 64, 28, 28))
    add("upsample2 bilinear 32 @28", nn.Upsample(scale_factor=2.0, mode="bilinear"), (1, 32, 28, 28))
    add("add 24 @56", _Op.make(lambda x: x + x), (1, 24, 56, 56))
    add("add 112 @14", _Op.make(lambda x: x + x), (1, 112, 14, 14))
    add("mul-bcast 120 @28", _Op.make(lambda x: x * x[:, :, :1, :1]), (1, 120, 28, 28))
    add("mul-bcast 672 @14", _Op.make(lambda x: x * x[:, :, :1, :1]), (1, 672, 14, 14))
    add("cat 2x40 @28", _Op.make(lambda x: torch.cat([x, x], 1)), (1, 40, 28, 28))
    add("flatten 960", nn.Flatten(), (1, 960, 1, 1))
    add("reshape 96 @14", _Op.make(lambda x: x.reshape(1, -1)), (1, 96, 14, 14))
    add(
        "se 120 @28",
        _Op.make(
            lambda x, a, b: x * F.hardsigmoid(b(F.relu(a(F.adaptive_avg_pool2d(x, 1))))),
            nn.Conv2d(120, 32, 1),
            nn.Conv2d(32, 120, 1),
        ),
        (1, 120, 28, 28),
    )
    return out


# ----------------------------------------------------------------------------------------------------------


def _se(c: int) -> Any:
    import torch.nn.functional as F
    from torch import nn

    return _Op.make(
        lambda x, a, b: x * F.hardsigmoid(b(F.relu(a(F.adaptive_avg_pool2d(x, 1))))),
        nn.Conv2d(c, _div8(c / 4), 1),
        nn.Conv2d(_div8(c / 4), c, 1),
    )


def _block(cin: int, cout: int, k: int, exp: int, s: int, se: bool, act: str) -> Any:
    from torch import nn

    body = [_conv(cin, exp, 1, act=act)] if exp != cin else []
    body.append(_conv(exp, exp, k, s, groups=exp, act=act))
    if se:
        body.append(_se(exp))
    body.append(_conv(exp, cout, 1, act=None))
    seq = nn.Sequential(*body)
    if s == 1 and cin == cout:
        return _Op.make(lambda x, b: x + b(x), seq)
    return seq


def random_mbv3(
    rng: np.random.Generator, *, resolutions: tuple[int, ...] = (160, 192, 224, 256, 288, 320)
) -> tuple[Any, tuple[int, ...]]:
    """A random MobileNetV3-style multi-task net and its input shape (tagging, detection, saliency heads)."""
    import torch.nn.functional as F
    from torch import nn

    width = float(rng.choice([0.5, 0.75, 1.0, 1.25]))
    res = int(rng.choice(resolutions))
    stages = [
        (16, 3, 1, False, "relu"),
        (24, 3, 2, False, "relu"),
        (40, 5, 2, True, "relu"),
        (80, 3, 2, False, "hswish"),
        (112, 3, 1, True, "hswish"),
        (160, 5, 2, True, "hswish"),
    ]
    cin = _div8(16 * width)
    feats = [_conv(3, cin, 3, 2, act="hswish")]
    taps: list[int] = []
    for i, (c, k, s, se, act) in enumerate(stages):
        c = _div8(c * width)
        k = int(rng.choice([3, 5, 7])) if i > 0 else 3
        depth = 1 if i == 0 else int(rng.integers(1, 5))
        for j in range(depth):
            exp = cin if i == 0 else _div8(cin * float(rng.choice([3, 4, 6])))
            feats.append(_block(cin, c, k, exp, s if j == 0 else 1, se, act))
            cin = c
        taps.append(len(feats))
    body = nn.Sequential(*feats)
    det_c = _div8(float(rng.choice([32, 48, 64, 96])) * width)
    det_at = int(rng.choice([2, 3, 4]))
    sal_at = int(rng.choice([1, 2, 3]))
    c_at = [_div8(s[0] * width) for s in stages]
    tag = nn.Sequential(
        _conv(cin, _div8(6 * cin), 1, act="hswish"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(_div8(6 * cin), 1024),
        nn.Hardswish(),
        nn.Linear(1024, 12),
    )
    det = nn.Sequential(
        _conv(c_at[det_at], c_at[det_at], 3, groups=c_at[det_at]),
        _conv(c_at[det_at], det_c, 1),
        _conv(det_c, det_c, 3, groups=det_c),
        _conv(det_c, det_c, 1),
    )
    heat, box = nn.Conv2d(det_c, 12, 1), nn.Conv2d(det_c, 4, 1)
    sal = nn.Sequential(_conv(c_at[sal_at], 32, 1), _conv(32, 32, 3), nn.Conv2d(32, 1, 1))
    stops = (taps[det_at], taps[sal_at])

    def forward(x: Any, body: Any, tag: Any, det: Any, heat: Any, box: Any, sal: Any) -> dict[str, Any]:
        outs = {}
        for i, layer in enumerate(body):
            x = layer(x)
            if i + 1 == stops[0]:
                d = det(x)
                outs["det_heatmap"], outs["det_box"] = heat(d), box(d)
            if i + 1 == stops[1]:
                outs["saliency"] = F.interpolate(sal(x), scale_factor=2.0)
        outs["tags"] = tag(x)
        return outs

    return _Op.make(forward, body, tag, det, heat, box, sal), (1, 3, res, res)
