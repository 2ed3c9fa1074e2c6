"""MobileNetV3 building blocks, as in the paper and torchvision.

``ConvBNAct`` (conv without bias, BatchNorm, optional activation), ``SqueezeExcite`` (global pool, 1x1 conv,
ReLU, 1x1 conv, h-sigmoid gate) and ``InvertedResidual`` (the paper's "bneck": optional 1x1 expand, kxk
depthwise, optional SE, 1x1 linear project, residual when the shape is kept). All plain ``nn`` layers with
static structure, so models built from them trace, export to ONNX / Core ML and prune with Torch-Pruning.

Child names (``conv``/``bn``/``act``, ``expand``/``depthwise``/``se``/``project``) are shared with the elastic
supernet's modules: ``compress.model.extract`` copies weights by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from compress.model.spec import make_divisible

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "ConvBNAct",
    "InvertedResidual",
    "SqueezeExcite",
    "make_act",
    "se_channels",
]

BN_EPS = 1e-3
"""BatchNorm epsilon (torchvision's MobileNetV3 value)."""
BN_MOMENTUM = 0.1
"""BatchNorm momentum: PyTorch's default, not torchvision's 0.01, because our trainings are short."""


def make_act(name: str | None) -> nn.Module | None:
    """The activation module for a spec name: ``"relu"``, ``"hswish"`` or ``None`` (linear)."""
    if name is None:
        return None
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}; known: relu, hswish")


def se_channels(expanded: int) -> int:
    """Squeeze width of a block's SE module: ``make_divisible(expanded // 4, 8)`` (torchvision)."""
    return make_divisible(expanded // 4, 8)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional activation; "same" padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride=stride,
                padding=kernel // 2,
                groups=groups,
                bias=False,
            ),
            bn=nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
        )
        act_module = make_act(act)
        if act_module is not None:
            layers["act"] = act_module
        super().__init__(layers)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with MobileNetV3's hard-sigmoid gate: ``x * hsigmoid(fc2(relu(fc1(pool(x)))))``."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3 "bneck": [1x1 expand] -> kxk depthwise (stride) -> [SE] -> 1x1 project, [+ input].

    The expand conv is omitted when ``expanded == in_channels`` (torchvision's rule); the residual is used
    when ``stride == 1`` and ``in_channels == out_channels``. ``expand`` and ``se`` are ``None`` when absent.
    A residual block's last BN starts with zero scale, so the block starts as the identity (Goyal et al.
    2017, BigNAS's "zero-initialised residual"): deep stacks then train as fast as shallow ones.
    """

    def __init__(
        self,
        in_channels: int,
        expanded: int,
        out_channels: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        se: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = None if expanded == in_channels else ConvBNAct(in_channels, expanded, 1, act=act)
        self.depthwise = ConvBNAct(expanded, expanded, kernel, stride=stride, groups=expanded, act=act)
        self.se = SqueezeExcite(expanded, se_channels(expanded)) if se else None
        self.project = ConvBNAct(expanded, out_channels, 1, act=None)
        if self.use_residual:
            nn.init.zeros_(self.project.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.use_residual else y
