"""``MultiTaskNet``: the static multi-task MobileNetV3 network an ``ArchSpec`` describes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compress.model.blocks import ConvBNAct, InvertedResidual
from compress.model.heads import build_head
from compress.model.spec import ArchSpec, expanded_channels

__all__ = [
    "EMBEDDING_OUTPUT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageEmbedding",
    "MultiTaskNet",
    "count_parameters",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBEDDING_OUTPUT = "image_embedding"
"""Output key of the optional image embedding (see ``MultiTaskNet.attach_embedding``)."""


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


class ImageEmbedding(nn.Module):
    """Stage features [B, C, h, w] -> unit-norm image embedding [B, dim]: global average pool, a linear map
    without bias, L2 normalisation (``compress.text.ImageProjection`` for one subnet's ``C`` channels)."""

    def __init__(self, stage: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.stage, self.dim = int(stage), int(dim)
        self.linear = nn.Linear(in_channels, dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(features.float().mean(dim=(2, 3))), dim=-1)

    def extra_repr(self) -> str:
        return f"stage={self.stage}, dim={self.dim}"


class MultiTaskNet(nn.Module):
    """A MobileNetV3 backbone (stem + ``spec.built_stages`` stages) with one head per ``spec.heads`` entry.

    ``forward(x)`` takes float images in [0, 1], shape [B, 3, R, R], normalises them with fixed ImageNet
    mean/std buffers and returns a flat dict with the keys of the heads present: ``"tags"`` [B, C],
    ``"det_heatmap"`` [B, C, h, w] and ``"det_box"`` [B, 4, h, w], ``"saliency"`` [B, 1, hs, ws] (all logits
    / raw regressions). Plain static modules only: traces, exports and prunes. ``self.spec`` is the spec.

    Module tree: ``stem`` (ConvBNAct), ``stages`` (ModuleList of Sequential of InvertedResidual), ``heads``
    (ModuleDict keyed by task), and ``embedding`` (an ``ImageEmbedding``, or None): when attached
    (:meth:`attach_embedding`, after an image-text pretraining) ``forward`` also returns ``"image_embedding"``
    [B, D], unit norm, read from the output of stage ``embedding.stage``.
    """

    embedding: ImageEmbedding | None

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
        self.embedding = None

    def attach_embedding(self, stage: int, weight: torch.Tensor) -> None:
        """Add (or replace) the image-embedding output: ``weight`` [D, C] maps stage ``stage``'s pooled
        features (C = that stage's width) to the embedding."""
        from compress.errors import ConfigError

        if not 0 <= stage < len(self.stages):
            raise ConfigError(f"embedding stage {stage} is not a built stage (0..{len(self.stages) - 1})")
        width = self.spec.stages[stage].width
        if weight.dim() != 2 or weight.shape[1] != width:
            raise ConfigError(
                f"an embedding weight for stage {stage} must be [D, {width}], but got {list(weight.shape)}"
            )
        self.embedding = ImageEmbedding(stage, width, int(weight.shape[0]))
        with torch.no_grad():
            self.embedding.linear.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem((x - self.mean) / self.std)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        out: dict[str, torch.Tensor] = {}
        for task, head in self.heads.items():
            out.update(head(features[self.branches[task]]))
        if self.embedding is not None:
            out[EMBEDDING_OUTPUT] = self.embedding(features[self.embedding.stage])
        return out

    def extra_repr(self) -> str:
        return self.spec.describe()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
