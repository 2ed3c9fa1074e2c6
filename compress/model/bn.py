"""BatchNorm recalibration: re-estimate running statistics after extraction or pruning."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


def _batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    if hasattr(images, "batch") and hasattr(images, "__len__"):  # a MultiTaskDataset
        for start in range(0, len(images), batch_size):
            yield images.batch(list(range(start, min(start + batch_size, len(images)))))["images"]
        return
    for item in images:
        yield item["images"] if isinstance(item, Mapping) else item


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    images: torch.Tensor | Iterable[Any],
    *,
    batch_size: int = 64,
    num_batches: int | None = None,
    spec: Any = None,
) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as exact averages over the batches.

    ``images``: a tensor [N, 3, R, R] (float in [0, 1] or uint8), a ``MultiTaskDataset``, or an iterable of
    image tensors / batch dicts with an ``"images"`` key. At most ``num_batches`` batches are used. Forward
    passes run in train mode without gradients (``model(x)``, or ``model(x, spec)`` for a ``Supernet``); the
    model's train/eval mode and BN momenta are restored afterwards. Returns ``model``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts equally
    device = next(model.parameters()).device
    model.train()
    try:
        for i, x in enumerate(_batches(images, batch_size)):
            if num_batches is not None and i >= num_batches:
                break
            x = _as_float(x.to(device))
            model(x) if spec is None else model(x, spec)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)
    return model
