"""``MultiTaskNet``: the static multi-task MobileNetV3 network an ``ArchSpec`` describes."""

from __future__ import annotations

import torch
from torch import nn

from compress.model.blocks import ConvBNAct, InvertedResidual
from compress.model.heads import build_head
from compress.model.spec import ArchSpec, expanded_channels

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MultiTaskNet", "count_parameters"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def block_channels(spec: ArchSpec) -> list[list[tuple[int, int, int]]]:
    """Per built stage, per block: ``(in_channels, expanded, out_channels)``."""
    out, in_ch = [], spec.stem
    for stage in spec.stages[: spec.built_stages]:
        blocks = []
        for ratio in stage.expand[: stage.depth]:
            blocks.append((in_ch, expanded_channels(in_ch, ratio), stage.width))
            in_ch = stage.width
        out.append(blocks)
    return out


class MultiTaskNet(nn.Module):
    """A MobileNetV3 backbone (stem + ``spec.built_stages`` stages) with one head per ``spec.heads`` entry.

    ``forward(x)`` takes float images in [0, 1], shape [B, 3, R, R], normalises them with fixed ImageNet
    mean/std buffers and returns a flat dict with the keys of the heads present: ``"tags"`` [B, C],
    ``"det_heatmap"`` [B, C, h, w] and ``"det_box"`` [B, 4, h, w], ``"saliency"`` [B, 1, hs, ws] (all logits
    / raw regressions). Plain static modules only: traces, exports and prunes. ``self.spec`` is the spec.

    Module tree: ``stem`` (ConvBNAct), ``stages`` (ModuleList of Sequential of InvertedResidual), ``heads``
    (ModuleDict keyed by task).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = ConvBNAct(3, spec.stem, 3, stride=2, act=spec.stem_act)
        self.stages = nn.ModuleList()
        for stage, blocks in zip(spec.stages, block_channels(spec), strict=False):
            self.stages.append(
                nn.Sequential(
                    *(
                        InvertedResidual(
                            i,
                            e,
                            o,
                            kernel=stage.kernel,
                            stride=stage.stride if j == 0 else 1,
                            se=stage.se,
                            act=stage.act,
                        )
                        for j, (i, e, o) in enumerate(blocks)
                    )
                )
            )
        self.branches = {h.task: h.branch for h in spec.heads}
        self.heads = nn.ModuleDict(
            {
                h.task: build_head(h.task, spec.stages[h.branch].width, h.channels, spec.num_classes)
                for h in spec.heads
            }
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem((x - self.mean) / self.std)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        out: dict[str, torch.Tensor] = {}
        for task, head in self.heads.items():
            out.update(head(features[self.branches[task]]))
        return out

    def extra_repr(self) -> str:
        return self.spec.describe()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
