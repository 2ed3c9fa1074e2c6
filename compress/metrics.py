"""Quality metrics for the three tasks, and one aggregate quality number; no model knowledge.

* Tagging: :func:`tagging_map`, macro average precision over categories (scikit-learn).
* Detection: :func:`detection_map`, COCO mAP@0.5 and mAP@[.5:.95] (faster-coco-eval, or pycocotools).
* Saliency: :func:`saliency_scores`, max F-beta (beta^2 = 0.3) and MAE.
* :class:`Quality` holds per-task metrics and :func:`aggregate_quality` of them.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.errors import ConfigError, DataError

__all__ = [
    "PRIMARY_METRICS",
    "Quality",
    "aggregate_quality",
    "detection_map",
    "saliency_scores",
    "tagging_map",
]

# The one metric per task that enters the aggregate (each in [0, 1], higher is better).
PRIMARY_METRICS: dict[str, str] = {"tagging": "map", "detection": "map", "saliency": "max_fbeta"}
_BETA2 = 0.3


def tagging_map(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro average precision over the categories with at least one positive, in [0, 1].

    Args:
        scores: [N, C] scores (logits or probabilities; only their order matters).
        targets: [N, C] multi-hot {0, 1}.

    Raises:
        DataError: shapes differ, or no category has a positive.
    """
    from sklearn.metrics import average_precision_score

    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise DataError(
            f"tagging_map: scores and targets must both be [N, C], but got {scores.shape} and {targets.shape}"
        )
    present = targets.sum(axis=0) > 0
    if not present.any():
        raise DataError("tagging_map: targets have no positive in any category; AP is undefined")
    aps = [average_precision_score(targets[:, c] > 0, scores[:, c]) for c in np.flatnonzero(present)]
    return float(np.mean(aps))


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _coco_inputs(rows: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray, image_size: int):
    """COCO-format datasets ``(ground truth, detections)`` as dicts, built in memory.

    Image and category ids are 1-based (index + 1); only categories with ground truth are listed, so
    COCOeval drops detections of other categories and averages over the categories with ground truth.
    The detections carry what ``COCO.loadRes`` would add for boxes (``id``, ``area`` = w * h).
    """
    gi, gk = np.nonzero(gt_labels >= 0)
    gt_xywh, gt_cat = _xywh(gt_boxes[gi, gk]).tolist(), (gt_labels[gi, gk] + 1).tolist()
    images = [{"id": i + 1, "width": image_size, "height": image_size} for i in range(len(gt_boxes))]
    categories = [{"id": c, "name": str(c - 1)} for c in sorted(set(gt_cat))]
    gt = [
        {"id": n + 1, "image_id": i + 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, c, b) in enumerate(zip(gi.tolist(), gt_cat, gt_xywh, strict=True))
    ]
    dt = [
        {"id": n + 1, "image_id": int(r[0]), "category_id": int(r[6]), "bbox": r[1:5], "score": r[5],
         "area": r[3] * r[4], "iscrowd": 0}
        for n, r in enumerate(rows.tolist())
    ]  # fmt: skip
    return (
        {"images": images, "annotations": gt, "categories": categories},
        {"images": images, "annotations": dt, "categories": categories},
    )


def _detection_rows(detections: Sequence[tuple[Any, Any, Any]], n_images: int) -> np.ndarray:
    """[M, 7] rows ``(image_id, x, y, w, h, score, category_id)``, ids 1-based."""
    if len(detections) != n_images:
        raise DataError(f"detection_map: {len(detections)} detection entries for {n_images} images")
    rows = []
    for i, (boxes, scores, labels) in enumerate(detections):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        if not len(boxes) == len(scores) == len(labels):
            raise DataError(
                f"detection_map: image {i}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
            )
        if labels.size and (labels.min() < 0 or np.any(labels != np.round(labels))):
            raise DataError(f"detection_map: image {i}: labels must be category indices >= 0, got {labels}")
        ids = np.full((len(boxes), 1), i + 1.0)
        rows.append(np.concatenate([ids, _xywh(boxes), scores[:, None], labels[:, None] + 1.0], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


_BACKENDS = ("faster-coco-eval", "pycocotools")
_MAX_DETS = 100  # COCO's per-image detection limit (per category, as COCOeval applies it)


def detection_map(
    detections: Sequence[tuple[Any, Any, Any]],
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    *,
    image_size: int,
    backend: str = "faster-coco-eval",
) -> dict[str, float]:
    """COCO box mAP: ``{"map50": AP@IoU 0.5, "map": AP@IoU [.5:.95]}``, each in [0, 1].

    COCO's bbox protocol (``COCOeval``): per image and category the top 100 detections by score are
    matched greedily to unmatched ground truth at each IoU threshold .50:.05:.95, AP is the 101-point
    interpolated precision, averaged over the categories that have ground truth. All object sizes count
    together (one area range, no small/medium/large breakdown). ``backend="faster-coco-eval"`` (default)
    runs faster-coco-eval's C++ ``COCOeval_faster``; ``backend="pycocotools"`` the reference ``COCOeval``
    (same numbers, tested; slower).

    Args:
        detections: one ``(boxes [k, 4] xyxy pixels, scores [k], labels [k])`` per image.
        gt_boxes: [N, K, 4] xyxy pixels, padded (as ``MultiTaskDataset.boxes``).
        gt_labels: [N, K] category indices, -1 for padding.
        image_size: the square image side in pixels.
        backend: ``"faster-coco-eval"`` or ``"pycocotools"``.
    """
    if backend not in _BACKENDS:
        raise ConfigError(
            f"detection_map: unknown backend {backend!r}; use {' or '.join(repr(b) for b in _BACKENDS)}"
        )
    gt_boxes, gt_labels = np.asarray(gt_boxes, dtype=np.float64), np.asarray(gt_labels)
    if gt_boxes.ndim != 3 or gt_boxes.shape[2] != 4 or gt_labels.shape != gt_boxes.shape[:2]:
        raise DataError(f"detection_map: gt_boxes [N, K, 4] and gt_labels [N, K], got {gt_boxes.shape}, "
                        f"{gt_labels.shape}")  # fmt: skip
    if gt_labels.size and gt_labels.min() < -1:
        raise DataError(f"detection_map: gt_labels must be >= 0 (or -1 for padding), got {gt_labels.min()}")
    rows = _detection_rows(detections, gt_boxes.shape[0])
    if not (gt_labels >= 0).any():
        raise DataError("detection_map: no ground-truth boxes; mAP is undefined")
    if len(rows) == 0:
        return {"map50": 0.0, "map": 0.0}
    gt, dt = _coco_inputs(rows, gt_boxes, gt_labels.astype(np.int64), image_size)
    run = _precision_pycocotools if backend == "pycocotools" else _precision_faster_coco_eval
    precision = run(gt, dt)
    return {"map50": _mean_valid(precision[0]), "map": _mean_valid(precision)}


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """A print function that prints nothing."""


def _precision_faster_coco_eval(gt: dict[str, Any], dt: dict[str, Any]) -> np.ndarray:
    """faster-coco-eval's interpolated precision [T, R, K] (one area range, up to 100 detections)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt_coco, dt_coco = COCO(gt, print_function=_quiet), COCO(dt, print_function=_quiet)
    ev = COCOeval_faster(gt_coco, dt_coco, iouType="bbox", print_function=_quiet)
    ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
    ev.params.maxDets = [_MAX_DETS]
    ev.evaluate()
    ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, 0]


def _precision_pycocotools(gt: dict[str, Any], dt: dict[str, Any]) -> np.ndarray:
    """pycocotools' interpolated precision [T, R, K] (one area range, up to 100 detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco, dt_coco = COCO(), COCO()
        gt_coco.dataset, dt_coco.dataset = gt, dt
        gt_coco.createIndex()
        dt_coco.createIndex()
        ev = COCOeval(gt_coco, dt_coco, iouType="bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        ev.params.maxDets = [_MAX_DETS]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, 0]


def _mean_valid(values: np.ndarray) -> float:
    """Mean over the entries COCOeval filled (it leaves -1 where a category has no ground truth)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0


def saliency_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Saliency quality: ``{"max_fbeta": ..., "mae": ...}``, both in [0, 1].

    ``max_fbeta`` is the maximum over 256 thresholds t = k / 255 (k = 0..255) of the dataset-level F-beta:
    pixels of all images are pooled, a pixel is predicted salient when ``pred >= t``, precision
    P = TP / (TP + FP) and recall R = TP / (TP + FN) are counted over the whole set, and
    F = (1 + beta^2) P R / (beta^2 P + R) with beta^2 = 0.3 (0 where P + R = 0). ``mae`` is the mean
    absolute difference ``|pred - gt|`` over all pixels.

    Args:
        pred: [N, H, W] probabilities in [0, 1] (clipped).
        gt: [N, H, W] masks in {0, 1}.
    """
    pred, gt = np.asarray(pred, dtype=np.float32), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise DataError(f"saliency_scores: pred and gt must both be [N, H, W], got {pred.shape}, {gt.shape}")
    pred = np.clip(pred, 0.0, 1.0)
    positive = gt > 0.5
    if not positive.any():
        raise DataError("saliency_scores: gt has no salient pixel; F-beta is undefined")
    level = np.floor(pred * 255.0 + 1e-4).astype(np.int64)  # pred >= k/255  <=>  level >= k
    pos_hist = np.bincount(level[positive], minlength=256)
    neg_hist = np.bincount(level[~positive], minlength=256)
    tp = np.cumsum(pos_hist[::-1])[::-1].astype(np.float64)  # tp[k]: positives with level >= k
    fp = np.cumsum(neg_hist[::-1])[::-1].astype(np.float64)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = tp / positive.sum()
    denom = _BETA2 * precision + recall
    fbeta = np.divide((1 + _BETA2) * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    mae = float(np.abs(pred - positive).mean())
    return {"max_fbeta": float(fbeta.max()), "mae": mae}


def aggregate_quality(tasks: Mapping[str, Mapping[str, float]]) -> float:
    """One quality number in [0, 100]: 100 x the mean, over the tasks present, of each task's primary metric.

    Primary metrics (``PRIMARY_METRICS``): tagging mAP, detection mAP@[.5:.95], saliency max F-beta. Each is
    in [0, 1] and higher is better, so the aggregate is monotone (non-decreasing) in every one of them;
    other metrics (mAP@0.5, MAE) are reported but do not enter it.

    Raises:
        ConfigError: no task, an unknown task, or a task without its primary metric (or outside [0, 1]).
    """
    if not tasks:
        raise ConfigError("aggregate_quality: no task metrics given")
    values = []
    for task, metrics in tasks.items():
        if task not in PRIMARY_METRICS:
            raise ConfigError(
                f"aggregate_quality: unknown task {task!r}; known: {', '.join(PRIMARY_METRICS)}"
            )
        key = PRIMARY_METRICS[task]
        value = metrics.get(key)
        if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"aggregate_quality: {task} needs {key!r} in [0, 1], but got {value!r}")
        values.append(float(value))
    return 100.0 * sum(values) / len(values)


@dataclass(frozen=True)
class Quality:
    """Per-task metrics (``{"tagging": {"map": ...}, "detection": {"map50": ..., "map": ...}, ...}``) and
    their :func:`aggregate_quality`."""

    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    aggregate: float = 0.0

    @classmethod
    def from_tasks(cls, tasks: Mapping[str, Mapping[str, float]]) -> Quality:
        """A Quality whose aggregate is computed from ``tasks``."""
        plain = {t: {k: float(v) for k, v in m.items()} for t, m in tasks.items()}
        return cls(tasks=plain, aggregate=aggregate_quality(plain))

    def task_scores(self) -> dict[str, float]:
        """Each task's primary metric x 100 (``PRIMARY_METRICS``): the numbers whose mean is the aggregate."""
        return {t: 100.0 * float(m[PRIMARY_METRICS[t]]) for t, m in self.tasks.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"tasks": {t: dict(m) for t, m in self.tasks.items()}, "aggregate": self.aggregate}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quality:
        """Rebuild from :meth:`to_dict` output; rejects unknown or missing keys (``ConfigError``)."""
        if not isinstance(data, Mapping) or set(data) != {"tasks", "aggregate"}:
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"Quality.from_dict needs exactly keys 'tasks' and 'aggregate', but got {keys}")
        tasks = data["tasks"]
        if not isinstance(tasks, Mapping) or not all(isinstance(m, Mapping) for m in tasks.values()):
            raise ConfigError(
                f"Quality.from_dict: 'tasks' must map task -> {{metric: value}}, got {tasks!r:.80}"
            )
        plain = {str(t): {str(k): float(v) for k, v in m.items()} for t, m in tasks.items()}
        return cls(tasks=plain, aggregate=float(data["aggregate"]))
