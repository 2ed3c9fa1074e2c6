"""The small three-head net the compression tests (pruning, quantization, export) share."""

from __future__ import annotations

import torch
from torch import nn

from compress.model import ArchSpec, HeadSpec, MultiTaskNet, StageSpec


def tiny_spec(resolution: int = 64) -> ArchSpec:
    """Three stages (one with SE and h-swish), every head, 5 classes: builds and runs in milliseconds."""
    return ArchSpec(
        resolution=resolution,
        stem=8,
        stages=(
            StageSpec(16, 1, 3, 2.0, 2),
            StageSpec(24, 2, 3, (4.0, 3.0), 2, True, "relu"),
            StageSpec(32, 1, 5, 4.0, 2, True, "hswish"),
        ),
        heads=(
            HeadSpec("tagging", 2, (96, 128)),
            HeadSpec("detection", 1, (16,)),
            HeadSpec("saliency", 0, (16,)),
        ),
        num_classes=5,
    )


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (so folding and pruning matter); returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def tiny_model(seed: int = 0) -> MultiTaskNet:
    """``MultiTaskNet(tiny_spec())`` with seeded weights and randomised BN."""
    torch.manual_seed(seed)
    return randomise_bn(MultiTaskNet(tiny_spec()), seed)
