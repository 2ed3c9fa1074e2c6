"""Reference CNNs for calibration, in plain torch (no torchvision; random weights, only shapes matter).

Names follow the ``model`` column of ``shared/reference/apple-published-latencies.csv``:
``mobilenet_v1_W`` and ``mobilenet_v2_W`` at any width multiplier ``W`` (``mobilenet_v2_0.35``),
``mobilenet_v3_small_1.0``, ``mobilenet_v3_large_1.0``, ``resnet18`` ... ``resnet152``, ``vgg11`` ... ``vgg19``
(``_bn`` variants), ``densenet121`` / ``161`` / ``169`` / ``201``, ``alexnet``, ``efficientnet_b0``,
``efficientnet_b3`` and ``mobileone_s0`` … ``mobileone_s4`` (MobileOne in its re-parameterized inference form:
one conv + bias per block). Layer configurations are those of the torchvision and apple/ml-mobileone reference
implementations (MobileNetV2 below width 1 keeps its 1280-channel last layer, as torchvision and Keras do).

>>> model = reference_model("mobilenet_v2_1.0")      # doctest: +SKIP
>>> list_reference_models()                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from profiles._errors import ProfileError

__all__ = ["REFERENCE_INPUT", "list_reference_models", "reference_model", "reference_name"]

#: Input resolution each reference model is published at.
REFERENCE_INPUT = {"efficientnet_b3": 300}


def _div(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def _cba(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: Any = None, bn: bool = True) -> Any:
    """Conv + batch norm + activation (or conv + bias + activation when ``bn`` is False)."""
    from torch import nn

    layers: list[Any] = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _se_module(c: int, squeeze: int, gate: Any, act: Any) -> Any:
    from torch import nn

    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(c, squeeze, 1)
            self.act = act()
            self.fc2 = nn.Conv2d(squeeze, c, 1)
            self.gate = gate()

        def forward(self, x: Any) -> Any:
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    return SE()


def _residual(body: Any, use: bool) -> Any:
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Any) -> Any:
            return x + self.body(x) if use else self.body(x)

    return Block()


def _classifier(features: Any, cin: int, hidden: list[int], act: Any, classes: int = 1000) -> Any:
    from torch import nn

    layers: list[Any] = [features, nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(cin, h), act(), nn.Dropout(0.2)]
        cin = h
    layers.append(nn.Linear(cin, classes))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------------------


def mobilenet_v1(width: float = 1.0) -> Any:
    from torch import nn

    cfg = (
        [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    )
    cin = _div(32 * width)
    layers = [_cba(3, cin, 3, 2, act=nn.ReLU)]
    for c, s in cfg:
        c = _div(c * width)
        layers += [_cba(cin, cin, 3, s, groups=cin, act=nn.ReLU), _cba(cin, c, 1, act=nn.ReLU)]
        cin = c
    return _classifier(nn.Sequential(*layers), cin, [], nn.ReLU)


def mobilenet_v2(width: float = 1.0) -> Any:
    from torch import nn

    cfg = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    cin = _div(32 * width)
    layers = [_cba(3, cin, 3, 2, act=nn.ReLU6)]
    for t, c, n, s in cfg:
        c = _div(c * width)
        for i in range(n):
            stride, hid = (s if i == 0 else 1), cin * t
            body = ([_cba(cin, hid, 1, act=nn.ReLU6)] if t != 1 else []) + [
                _cba(hid, hid, 3, stride, groups=hid, act=nn.ReLU6),
                _cba(hid, c, 1),
            ]
            layers.append(_residual(nn.Sequential(*body), stride == 1 and cin == c))
            cin = c
    last = _div(1280 * max(1.0, width))
    layers.append(_cba(cin, last, 1, act=nn.ReLU6))
    return _classifier(nn.Sequential(*layers), last, [], nn.ReLU)


_V3_LARGE = [
    (3, 16, 16, False, "re", 1), (3, 64, 24, False, "re", 2), (3, 72, 24, False, "re", 1),
    (5, 72, 40, True, "re", 2), (5, 120, 40, True, "re", 1), (5, 120, 40, True, "re", 1),
    (3, 240, 80, False, "hs", 2), (3, 200, 80, False, "hs", 1), (3, 184, 80, False, "hs", 1),
    (3, 184, 80, False, "hs", 1), (3, 480, 112, True, "hs", 1), (3, 672, 112, True, "hs", 1),
    (5, 672, 160, True, "hs", 2), (5, 960, 160, True, "hs", 1), (5, 960, 160, True, "hs", 1),
]  # fmt: skip
_V3_SMALL = [
    (3, 16, 16, True, "re", 2), (3, 72, 24, False, "re", 2), (3, 88, 24, False, "re", 1),
    (5, 96, 40, True, "hs", 2), (5, 240, 40, True, "hs", 1), (5, 240, 40, True, "hs", 1),
    (5, 120, 48, True, "hs", 1), (5, 144, 48, True, "hs", 1), (5, 288, 96, True, "hs", 2),
    (5, 576, 96, True, "hs", 1), (5, 576, 96, True, "hs", 1),
]  # fmt: skip


def mobilenet_v3(cfg: list[tuple], last: int, hidden: int) -> Any:
    from torch import nn

    cin = 16
    layers = [_cba(3, cin, 3, 2, act=nn.Hardswish)]
    for k, exp, c, se, a, s in cfg:
        act = nn.ReLU if a == "re" else nn.Hardswish
        body = [_cba(cin, exp, 1, act=act)] if exp != cin else []
        body.append(_cba(exp, exp, k, s, groups=exp, act=act))
        if se:
            body.append(_se_module(exp, _div(exp // 4), nn.Hardsigmoid, nn.ReLU))
        body.append(_cba(exp, c, 1))
        layers.append(_residual(nn.Sequential(*body), s == 1 and cin == c))
        cin = c
    layers.append(_cba(cin, last, 1, act=nn.Hardswish))
    return _classifier(nn.Sequential(*layers), last, [hidden], nn.Hardswish)


_RESNET = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
           101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}  # fmt: skip


def resnet(depth: int = 50) -> Any:
    from torch import nn

    kind, counts = _RESNET[depth]
    expand = 4 if kind == "bottleneck" else 1
    layers = [_cba(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, n, s in zip((64, 128, 256, 512), counts, (1, 2, 2, 2), strict=True):
        for i in range(n):
            stride, out = (s if i == 0 else 1), width * expand
            if kind == "bottleneck":
                body = nn.Sequential(
                    _cba(cin, width, 1, act=nn.ReLU),
                    _cba(width, width, 3, stride, act=nn.ReLU),
                    _cba(width, out, 1),
                )
            else:
                body = nn.Sequential(_cba(cin, width, 3, stride, act=nn.ReLU), _cba(width, out, 3))
            short = _cba(cin, out, 1, stride) if (stride != 1 or cin != out) else nn.Identity()
            layers.append(_Bottleneck(body, short))
            cin = out
    return _classifier(nn.Sequential(*layers), cin, [], nn.ReLU)


def resnet50() -> Any:
    return resnet(50)


_VGG = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(depth: int, bn: bool = False) -> Any:
    from torch import nn

    layers: list[Any] = []
    cin = 3
    for c, n in zip((64, 128, 256, 512, 512), _VGG[depth], strict=True):
        for _ in range(n):
            layers.append(_cba(cin, c, 3, act=nn.ReLU, bn=bn))
            cin = c
        layers.append(nn.MaxPool2d(2, 2))
    feats = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten())
    return nn.Sequential(
        feats, nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)
    )


def alexnet() -> Any:
    from torch import nn

    feats = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(),
    )  # fmt: skip
    return nn.Sequential(
        feats, nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)
    )


_DENSENET = {121: (32, (6, 12, 24, 16), 64), 161: (48, (6, 12, 36, 24), 96),
             169: (32, (6, 12, 32, 32), 64), 201: (32, (6, 12, 48, 32), 64)}  # fmt: skip


def _dense_layer_cls() -> type:
    from torch import nn

    class DenseLayer(nn.Module):
        def __init__(self, cin: int, growth: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
            )  # fmt: skip

        def forward(self, x: Any) -> Any:
            import torch

            return torch.cat([x, self.body(x)], 1)

    return DenseLayer


def densenet(depth: int) -> Any:
    from torch import nn

    growth, blocks, cin = _DENSENET[depth]
    layers: list[Any] = [_cba(3, cin, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(_DENSE(cin, growth))
            cin += growth
        if i < len(blocks) - 1:
            layers += [
                nn.BatchNorm2d(cin),
                nn.ReLU(),
                nn.Conv2d(cin, cin // 2, 1, bias=False),
                nn.AvgPool2d(2),
            ]
            cin //= 2
    layers += [nn.BatchNorm2d(cin), nn.ReLU()]
    return _classifier(nn.Sequential(*layers), cin, [], nn.ReLU)


class _Lazy:
    """A module class defined on first use (torch is imported lazily)."""

    def __init__(self, factory: Callable[[], type]) -> None:
        self.factory = factory
        self.cls: type | None = None

    def __call__(self, *args: Any) -> Any:
        if self.cls is None:
            self.cls = self.factory()
        return self.cls(*args)


def _bottleneck_cls() -> type:
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, body: Any, short: Any) -> None:
            super().__init__()
            self.body, self.short, self.act = body, short, nn.ReLU()

        def forward(self, x: Any) -> Any:
            return self.act(self.body(x) + self.short(x))

    return Bottleneck


_Bottleneck = _Lazy(_bottleneck_cls)
_DENSE = _Lazy(_dense_layer_cls)

_EFF_B0 = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


def efficientnet(width: float, depth: float) -> Any:
    from torch import nn

    cin = _div(32 * width)
    layers = [_cba(3, cin, 3, 2, act=nn.SiLU)]
    for t, k, s, c, n in _EFF_B0:
        c = _div(c * width)
        for i in range(int(math.ceil(n * depth))):
            stride, hid = (s if i == 0 else 1), cin * t
            body = ([_cba(cin, hid, 1, act=nn.SiLU)] if t != 1 else []) + [
                _cba(hid, hid, k, stride, groups=hid, act=nn.SiLU),
                _se_module(hid, max(1, cin // 4), nn.Sigmoid, nn.SiLU),
                _cba(hid, c, 1),
            ]
            layers.append(_residual(nn.Sequential(*body), stride == 1 and cin == c))
            cin = c
    last = _div(1280 * width)
    layers.append(_cba(cin, last, 1, act=nn.SiLU))
    return _classifier(nn.Sequential(*layers), last, [], nn.SiLU)


_MOBILEONE = {
    "s0": ((0.75, 1.0, 1.0, 2.0), False),
    "s1": ((1.5, 1.5, 2.0, 2.5), False),
    "s2": ((1.5, 2.0, 2.5, 4.0), False),
    "s3": ((2.0, 2.5, 3.0, 4.0), False),
    "s4": ((3.0, 3.5, 3.5, 4.0), True),
}


def mobileone(variant: str) -> Any:
    """MobileOne in inference form: every block is one conv with bias (+ SE in S4) + ReLU."""
    from torch import nn

    widths, use_se = _MOBILEONE[variant]

    def block(cin: int, cout: int, k: int, s: int, groups: int, se: bool) -> Any:
        parts = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups)]
        if se:
            parts.append(_se_module(cout, int(cout * 0.0625), nn.Sigmoid, nn.ReLU))
        return nn.Sequential(*parts, nn.ReLU())

    cin = min(64, int(64 * widths[0]))
    layers = [block(3, cin, 3, 2, 1, False)]
    for stage, (base, n) in enumerate(zip((64, 128, 256, 512), (2, 8, 10, 1), strict=True)):
        c = int(base * widths[stage])
        n_se = (n // 2 if stage == 2 else n if stage == 3 else 0) if use_se else 0
        for i in range(n):
            se = i >= n - n_se
            layers += [block(cin, cin, 3, 2 if i == 0 else 1, cin, se), block(cin, c, 1, 1, 1, se)]
            cin = c
    return _classifier(nn.Sequential(*layers), cin, [], nn.ReLU)


_BUILDERS: dict[str, Callable[[], Any]] = {
    "mobilenet_v1_1.0": lambda: mobilenet_v1(1.0),
    "mobilenet_v2_1.0": lambda: mobilenet_v2(1.0),
    "mobilenet_v2_1.4": lambda: mobilenet_v2(1.4),
    "mobilenet_v3_small_1.0": lambda: mobilenet_v3(_V3_SMALL, 576, 1024),
    "mobilenet_v3_large_1.0": lambda: mobilenet_v3(_V3_LARGE, 960, 1280),
    **{f"resnet{d}": functools.partial(resnet, d) for d in _RESNET},
    **{f"vgg{d}": functools.partial(vgg, d) for d in _VGG},
    **{f"vgg{d}_bn": functools.partial(vgg, d, True) for d in _VGG},
    **{f"densenet{d}": functools.partial(densenet, d) for d in _DENSENET},
    "alexnet": alexnet,
    "efficientnet_b0": lambda: efficientnet(1.0, 1.0),
    "efficientnet_b3": lambda: efficientnet(1.2, 1.4),
    **{f"mobileone_{v}": functools.partial(mobileone, v) for v in _MOBILEONE},
}
#: Width-parametric families: ``mobilenet_v2_0.35`` builds MobileNetV2 at width 0.35.
_WIDTHS: dict[str, Callable[[float], Any]] = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2}


def _builder(key: str) -> Callable[[], Any] | None:
    if key in _BUILDERS:
        return _BUILDERS[key]
    m = re.fullmatch(r"(mobilenet_v[12])_(\d+(?:\.\d+)?)", key)
    if m and 0.1 <= float(m.group(2)) <= 2.0:
        return functools.partial(_WIDTHS[m.group(1)], float(m.group(2)))
    return None


def list_reference_models() -> list[str]:
    """Names of the reference models."""
    return list(_BUILDERS)


def reference_name(label: str) -> str:
    """The reference-model name in a CSV ``model`` cell (``"mobilenet_v1_1.0 (9 MB classifier)"`` -> ...)."""
    key = re.split(r"[\s(]", str(label).strip().lower(), maxsplit=1)[0]
    if _builder(key) is None:
        raise ProfileError(
            f"no reference model for {label!r}; known: {', '.join(_BUILDERS)} (pass reference_models= "
            "to calibrate() for other models)"
        )
    return key


def reference_model(name: str) -> Any:
    """A fresh reference model in eval mode (random weights)."""
    model = _builder(reference_name(name))()  # type: ignore[misc]
    return model.eval()
