"""Quality of a multi-task model on a data set: per-task metrics and one aggregate (``compress.metrics``).

``evaluate(model, data)`` runs the model in eval mode over ``data`` at the model's own input resolution
(images are resized on the fly when the data set was cached at another size; boxes are compared in the
data set's pixel frame), decodes detections, upsamples saliency to the mask size and scores: tagging mAP,
detection COCO mAP@[.5:.95] and @0.5, saliency max F-beta (β² = 0.3) and MAE. The aggregate is
``compress.metrics.aggregate_quality`` (100 x the mean of the primary metric of each task present).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from compress.metrics import Quality, detection_map, saliency_scores, tagging_map

__all__ = ["Quality", "evaluate", "predict"]


@torch.no_grad()
def predict(model: torch.nn.Module, data: Any, *, batch_size: int = 100, spec: Any = None) -> dict[str, Any]:
    """Run ``model`` over ``data``; outputs in the data set's frame: tag probabilities, detections, masks.

    ``spec`` is needed only for a ``Supernet`` (then ``model(x, spec)``); a ``MultiTaskNet`` knows its own.
    """
    arch = spec if spec is not None else getattr(model, "spec", None)
    resolution = arch.resolution if arch is not None else data.resolution
    was_training = model.training
    model.eval()
    tags, dets, sal = [], [], []
    try:
        for start in range(0, len(data), batch_size):
            images = data.batch(torch.arange(start, min(start + batch_size, len(data))))["images"]
            x = (
                images
                if resolution == data.resolution
                else F.interpolate(
                    images, size=(resolution, resolution), mode="bilinear", align_corners=False
                )
            )
            out = model(x, spec) if spec is not None else model(x)
            if "tags" in out:
                tags.append(torch.sigmoid(out["tags"].float()).numpy())
            if "det_heatmap" in out:
                from compress.model import decode_detections

                for boxes, scores, labels in decode_detections(out, input_size=data.resolution):
                    dets.append((boxes.numpy(), scores.numpy(), labels.numpy()))
            if "saliency" in out:
                s = F.interpolate(
                    out["saliency"].float(), size=(data.resolution,) * 2, mode="bilinear", align_corners=False
                )
                sal.append(torch.sigmoid(s)[:, 0].numpy())
    finally:
        model.train(was_training)
    result: dict[str, Any] = {}
    if tags:
        result["tags"] = np.concatenate(tags)
    if dets:
        result["detections"] = dets
    if sal:
        result["saliency"] = np.concatenate(sal)
    return result


def evaluate(model: torch.nn.Module, data: Any, *, batch_size: int = 100, spec: Any = None) -> Quality:
    """Per-task metrics and the aggregate of ``model`` on ``data`` (a ``MultiTaskDataset``)."""
    pred = predict(model, data, batch_size=batch_size, spec=spec)
    tasks: dict[str, dict[str, float]] = {}
    if "tags" in pred:
        tasks["tagging"] = {"map": tagging_map(pred["tags"], data.tags.numpy())}
    if "detections" in pred:
        tasks["detection"] = detection_map(
            pred["detections"], data.boxes.numpy(), data.box_labels.numpy(), image_size=data.resolution
        )
    if "saliency" in pred:
        tasks["saliency"] = saliency_scores(pred["saliency"], data.saliency[:, 0].numpy())
    return Quality.from_tasks(tasks)
