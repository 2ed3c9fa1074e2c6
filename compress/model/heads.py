"""Task heads: tagging (MobileNetV3's classifier), detection (CenterNet-style dense head), saliency (decoder).

Each head reads the feature map of its branch stage and returns a dict of named outputs, which
``MultiTaskNet`` merges into one flat dict:

- ``TaggingHead``: 1x1 conv to ``channels[0]`` + BN + h-swish, global average pool, linear to ``channels[1]``
  + h-swish, dropout (training only), linear to ``num_classes`` -> ``"tags"`` [B, C] logits. With
  ``(960, 1280)`` and 1000 classes on MobileNetV3-Large this is exactly the paper's classifier.
- ``DetectionHead``: two depthwise-3x3 + pointwise (BN + ReLU each) tower stages to ``channels[0]``, then a
  1x1 heatmap conv (``num_classes``, bias initialised for a prior of 0.01) -> ``"det_heatmap"`` [B, C, h, w]
  logits, and a 1x1 box conv -> ``"det_box"`` [B, 4, h, w] (see ``compress.model.detection`` for the
  encoding). Output stride = the branch stage's stride.
- ``SaliencyHead``: 1x1 conv + BN + ReLU, 3x3 conv + BN + ReLU, 1x1 conv to one logit -> ``"saliency"``
  [B, 1, hs, ws] at the branch stage's stride (upsampled in the loss / evaluation, not in the model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compress.model.blocks import ConvBNAct

__all__ = ["HEAD_OUTPUTS", "DetectionHead", "SaliencyHead", "TaggingHead", "build_head"]

HEAD_OUTPUTS = {"tagging": ("tags",), "detection": ("det_heatmap", "det_box"), "saliency": ("saliency",)}
"""Output keys each task head contributes to a model's output dict."""

HEATMAP_PRIOR = 0.01
DROPOUT = 0.2


class TaggingHead(nn.Module):
    """MobileNetV3's classifier as a multi-label tagging head."""

    def __init__(self, in_channels: int, channels: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_channels, channels[0], 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels[0], channels[1])
        self.act = nn.Hardswish(inplace=True)
        self.dropout = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(channels[1], num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return {"tags": self.fc2(self.dropout(self.act(self.fc1(x))))}


def _init_heatmap_bias(conv: nn.Conv2d) -> None:
    assert conv.bias is not None
    nn.init.constant_(conv.bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))


class DetectionHead(nn.Module):
    """A light anchor-free CenterNet-style head: separable tower, class heatmap and box regression."""

    def __init__(self, in_channels: int, channels: tuple[int], num_classes: int) -> None:
        super().__init__()
        width = channels[0]
        self.tower = nn.Sequential(
            ConvBNAct(in_channels, in_channels, 3, groups=in_channels),
            ConvBNAct(in_channels, width, 1),
            ConvBNAct(width, width, 3, groups=width),
            ConvBNAct(width, width, 1),
        )
        self.heatmap = nn.Conv2d(width, num_classes, 1)
        self.box = nn.Conv2d(width, 4, 1)
        _init_heatmap_bias(self.heatmap)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.tower(x)
        return {"det_heatmap": self.heatmap(x), "det_box": self.box(x)}


class SaliencyHead(nn.Module):
    """A light saliency decoder producing one logit per cell at the branch stride."""

    def __init__(self, in_channels: int, channels: tuple[int], num_classes: int = 1) -> None:
        super().__init__()
        width = channels[0]
        self.reduce = ConvBNAct(in_channels, width, 1)
        self.refine = ConvBNAct(width, width, 3)
        self.logit = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"saliency": self.logit(self.refine(self.reduce(x)))}


_HEADS: dict[str, type[nn.Module]] = {
    "tagging": TaggingHead,
    "detection": DetectionHead,
    "saliency": SaliencyHead,
}


def build_head(task: str, in_channels: int, channels: tuple[int, ...], num_classes: int) -> nn.Module:
    """The static head module for ``task`` reading ``in_channels`` features."""
    return _HEADS[task](in_channels, channels, num_classes)  # type: ignore[call-arg]
