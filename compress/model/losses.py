"""Training losses for the multi-task outputs: per task, combined, and in-place distillation.

Batch keys (as ``compress.data.MultiTaskDataset.batch`` returns them): ``images`` [B, 3, R, R] float in
[0, 1], ``tags`` [B, C] multi-hot float, ``boxes`` [B, K, 4] xyxy pixels, ``box_labels`` [B, K] (-1 padding),
``saliency`` [B, 1, R, R] uint8 {0, 1}.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from compress.model.detection import detection_loss

__all__ = ["distillation_loss", "multitask_loss", "saliency_loss", "tagging_loss"]


def tagging_loss(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Multi-label binary cross-entropy, mean over images and categories."""
    return F.binary_cross_entropy_with_logits(logits.float(), tags.float())


def _resize_mask(masks: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Masks [B, 1, H, W] (uint8 {0, 1} or float) as float coverage in [0, 1] at ``size`` (area average)."""
    m = masks.float()
    if m.max() > 1:
        m = m / 255.0
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.adaptive_avg_pool2d(m, (int(size[0]), int(size[1])))
    return m


def saliency_loss(logits: torch.Tensor, masks: torch.Tensor, *, dice_weight: float = 0.5) -> torch.Tensor:
    """BCE + ``dice_weight`` * soft Dice between ``logits`` [B, 1, h, w] and masks resized to h x w."""
    target = _resize_mask(masks, logits.shape[-2:])
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, target)
    if dice_weight:
        p = torch.sigmoid(logits).flatten(1)
        t = target.flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        loss = loss + dice_weight * dice.mean()
    return loss


def multitask_loss(
    outputs: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    *,
    input_size: int | tuple[int, int] | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-task losses (``"tagging"``, ``"detection"``, ``"saliency"`` for the heads present) and ``"total"``.

    ``input_size`` defaults to the batch images' size; ``weights`` maps task -> weight (default 1 each).
    """
    if input_size is None:
        h, w = batch["images"].shape[-2:]
        input_size = (int(h), int(w))
    losses: dict[str, torch.Tensor] = {}
    if "tags" in outputs:
        losses["tagging"] = tagging_loss(outputs["tags"], batch["tags"])
    if "det_heatmap" in outputs:
        losses["detection"] = detection_loss(
            dict(outputs), batch["boxes"], batch["box_labels"], input_size=input_size
        )
    if "saliency" in outputs:
        losses["saliency"] = saliency_loss(outputs["saliency"], batch["saliency"])
    if not losses:
        raise ValueError(f"outputs hold no known head output; got keys {sorted(outputs)}")
    weights = weights or {}
    losses["total"] = sum((weights.get(t, 1.0) * v for t, v in losses.items()), torch.zeros(()))
    return losses


def _soft_bce(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    target = torch.sigmoid(teacher.detach().float())
    if target.shape[-2:] != student.shape[-2:] and student.dim() == 4:
        target = F.interpolate(target, size=student.shape[-2:], mode="bilinear", align_corners=False)
    return F.binary_cross_entropy_with_logits(student.float(), target)


def distillation_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    *,
    weights: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """In-place distillation: the student's logits against the teacher's sigmoid probabilities (BCE).

    Per task present in both: tagging on ``tags``; detection on ``det_heatmap`` (the teacher's map resized
    bilinearly when the two heads branch at different strides) plus, when both grids match, L1 on ``det_box``
    weighted by the teacher's peak probability per cell; saliency on ``saliency`` (resized likewise).
    """
    losses: dict[str, torch.Tensor] = {}
    if "tags" in student and "tags" in teacher:
        losses["tagging"] = _soft_bce(student["tags"], teacher["tags"])
    if "det_heatmap" in student and "det_heatmap" in teacher:
        loss = _soft_bce(student["det_heatmap"], teacher["det_heatmap"])
        if student["det_box"].shape == teacher["det_box"].shape:
            wgt = torch.sigmoid(teacher["det_heatmap"].detach().float()).amax(1, keepdim=True)
            l1 = (student["det_box"].float() - teacher["det_box"].detach().float()).abs() * wgt
            loss = loss + l1.sum() / wgt.sum().clamp_min(1.0)
        losses["detection"] = loss
    if "saliency" in student and "saliency" in teacher:
        losses["saliency"] = _soft_bce(student["saliency"], teacher["saliency"])
    weights = weights or {}
    losses["total"] = sum((weights.get(t, 1.0) * v for t, v in losses.items()), torch.zeros(()))
    return losses
