"""CenterNet-style detection: training targets, loss and decoding for ``DetectionHead`` outputs.

Encoding (per object, on the head's output grid of stride ``sx = W / w``, ``sy = H / h``): the object's centre
``(cx, cy)`` in cells falls in cell ``(ix, iy) = floor(cx, cy)``; the heatmap of its class holds a Gaussian
peak of value 1 there (CenterNet's radius rule, ``min_overlap = 0.7``); ``det_box`` at that cell regresses
``(cx - ix, cy - iy, log(w / sx), log(h / sy))``: the centre offset in cells and the log box size in cells.

Loss: the penalty-reduced pixel-wise focal loss of CenterNet (alpha 2, beta 4) on the heatmap, normalised by
the number of objects, plus L1 on the four box values at object centres. Decoding: 3x3 max-pool peak
extraction on ``sigmoid(det_heatmap)``, top-k over classes and cells, boxes clipped to the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["DetectionTargets", "decode_detections", "detection_loss", "detection_targets"]

MIN_OVERLAP = 0.7
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
MAX_LOG_SIZE = 8.0


class DetectionTargets(NamedTuple):
    """Training targets on one output grid: dense maps plus the per-object view the loss gathers from."""

    heatmap: torch.Tensor  # [B, C, h, w] in [0, 1], exactly 1 at object centres
    box: torch.Tensor  # [B, 4, h, w], box encoding at object centres, 0 elsewhere
    cell: torch.Tensor  # [B, K] int64: flat cell index (iy * w + ix) of each object's centre
    box_target: torch.Tensor  # [B, K, 4]
    valid: torch.Tensor  # [B, K] bool: a real (non-padding, non-empty) box


def _size2(value: int | tuple[int, int] | torch.Size) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def gaussian_radius(
    height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP
) -> torch.Tensor:
    """CenterNet's Gaussian radius (in cells) for boxes of the given size in cells (its reference formula)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt((b1**2 - 4 * c1).clamp_min(0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt((b2**2 - 16 * c2).clamp_min(0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt((b3**2 - 4 * a3 * c3).clamp_min(0))) / 2
    return torch.minimum(torch.minimum(r1, r2), r3).floor().clamp_min(0)


def detection_targets(
    boxes: torch.Tensor,
    box_labels: torch.Tensor,
    *,
    num_classes: int,
    output_size: tuple[int, int] | torch.Size,
    input_size: int | tuple[int, int],
) -> DetectionTargets:
    """Targets for ``boxes`` [B, K, 4] (xyxy, input pixels) and ``box_labels`` [B, K] (-1 = padding)."""
    h, w = _size2(output_size)
    in_h, in_w = _size2(input_size)
    sx, sy = in_w / w, in_h / h
    boxes = boxes.float()
    labels = box_labels.long()
    bw = (boxes[..., 2] - boxes[..., 0]) / sx
    bh = (boxes[..., 3] - boxes[..., 1]) / sy
    valid = (labels >= 0) & (labels < num_classes) & (bw > 0) & (bh > 0)
    cx = ((boxes[..., 0] + boxes[..., 2]) / 2 / sx).clamp(0, w - 1e-4)
    cy = ((boxes[..., 1] + boxes[..., 3]) / 2 / sy).clamp(0, h - 1e-4)
    ix, iy = cx.floor(), cy.floor()
    box_target = (
        torch.stack([cx - ix, cy - iy, bw.clamp_min(1e-3).log(), bh.clamp_min(1e-3).log()], dim=-1)
        * valid[..., None]
    )
    cell = (iy * w + ix).long() * valid

    radius = gaussian_radius(bh, bw)  # [B, K]
    sigma = (2 * radius + 1) / 6
    gx = torch.arange(w, dtype=torch.float32, device=boxes.device).view(1, 1, 1, w) - ix[..., None, None]
    gy = torch.arange(h, dtype=torch.float32, device=boxes.device).view(1, 1, h, 1) - iy[..., None, None]
    r = radius[..., None, None]
    g = torch.exp(-(gx**2 + gy**2) / (2 * sigma[..., None, None] ** 2))
    g = g * ((gx.abs() <= r) & (gy.abs() <= r) & valid[..., None, None])  # [B, K, h, w]
    onehot = (
        F.one_hot(labels.clamp(0, num_classes - 1), num_classes).to(g.dtype) * valid[..., None]
    )  # [B, K, C]
    heatmap = (
        (onehot[..., None, None] * g[:, :, None]).amax(dim=1)
        if labels.shape[1]
        else g.new_zeros(boxes.shape[0], num_classes, h, w)
    )
    box_map = boxes.new_zeros(boxes.shape[0], 4, h * w)
    bi, ki = valid.nonzero(as_tuple=True)
    box_map[bi, :, cell[bi, ki]] = box_target[bi, ki]  # later objects win a shared cell
    return DetectionTargets(heatmap, box_map.view(-1, 4, h, w), cell, box_target, valid)


def _focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, summed (normalise outside)."""
    p = torch.sigmoid(logits)
    pos = target.ge(1.0 - 1e-6).to(logits.dtype)
    pos_loss = -F.logsigmoid(logits) * (1 - p) ** FOCAL_ALPHA * pos
    neg_loss = -F.logsigmoid(-logits) * p**FOCAL_ALPHA * (1 - target) ** FOCAL_BETA * (1 - pos)
    return pos_loss.sum() + neg_loss.sum()


def detection_loss(
    outputs: dict[str, torch.Tensor],
    boxes: torch.Tensor,
    box_labels: torch.Tensor,
    *,
    input_size: int | tuple[int, int],
    box_weight: float = 1.0,
) -> torch.Tensor:
    """Focal heatmap loss + ``box_weight`` * L1 box loss, both per object (see the module docstring)."""
    heat, box = outputs["det_heatmap"], outputs["det_box"]
    t = detection_targets(
        boxes, box_labels, num_classes=heat.shape[1], output_size=heat.shape[-2:], input_size=input_size
    )
    num = t.valid.sum().clamp_min(1).to(heat.dtype)
    focal = _focal_loss(heat.float(), t.heatmap) / num
    pred = box.float().flatten(2).gather(2, t.cell[:, None, :].expand(-1, 4, -1)).transpose(1, 2)  # [B, K, 4]
    l1 = ((pred - t.box_target).abs() * t.valid[..., None]).sum() / num
    return focal + box_weight * l1


@torch.no_grad()
def decode_detections(
    outputs: dict[str, torch.Tensor],
    *,
    input_size: int | tuple[int, int],
    top_k: int = 50,
    score_threshold: float = 0.05,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image: ``(boxes [k, 4] xyxy in input pixels, scores [k], labels [k] int64)``, best first.

    Peaks are cells equal to their 3x3 max-pooled neighbourhood; the ``top_k`` best over all classes and
    cells are kept, then those scoring below ``score_threshold`` are dropped.
    """
    heat = torch.sigmoid(outputs["det_heatmap"].float())
    box = outputs["det_box"].float()
    b, c, h, w = heat.shape
    in_h, in_w = _size2(input_size)
    sx, sy = in_w / w, in_h / h
    peaks = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1))
    scores, idx = peaks.flatten(1).topk(min(top_k, c * h * w), dim=1)
    labels = idx // (h * w)
    cell = idx % (h * w)
    reg = box.flatten(2).gather(2, cell[:, None, :].expand(-1, 4, -1))  # [B, 4, k]
    cx = ((cell % w).float() + reg[:, 0]) * sx
    cy = ((cell // w).float() + reg[:, 1]) * sy
    bw = reg[:, 2].clamp(max=MAX_LOG_SIZE).exp() * sx
    bh = reg[:, 3].clamp(max=MAX_LOG_SIZE).exp() * sy
    xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)
    xyxy[..., 0::2] = xyxy[..., 0::2].clamp(0, in_w)
    xyxy[..., 1::2] = xyxy[..., 1::2].clamp(0, in_h)
    result = []
    for i in range(b):
        keep = scores[i] >= score_threshold
        result.append((xyxy[i][keep], scores[i][keep], labels[i][keep]))
    return result
