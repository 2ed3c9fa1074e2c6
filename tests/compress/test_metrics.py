"""Tests of compress.metrics on hand-made cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.errors import ConfigError, DataError
from compress.metrics import Quality, aggregate_quality, detection_map, saliency_scores, tagging_map

# --- tagging ----------------------------------------------------------------------------------------------


def test_tagging_map_known_values() -> None:
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    assert tagging_map(targets * 2.0 - 1.0, targets) == 1.0  # perfect ranking; category 2 has no positive
    # One category: scores 0.9 (+), 0.8 (-), 0.7 (+): AP = (1/1 + 2/3) / 2.
    assert tagging_map(np.array([[0.9], [0.8], [0.7]]), np.array([[1], [0], [1]])) == pytest.approx(5 / 6)
    # Macro average: a perfect category (1.0) and the one above (5/6).
    scores = np.array([[0.9, 0.9], [0.1, 0.8], [0.8, 0.7]])
    assert tagging_map(scores, np.array([[1, 1], [0, 0], [1, 1]])) == pytest.approx((1 + 5 / 6) / 2)


def test_tagging_map_errors() -> None:
    with pytest.raises(DataError, match="no positive"):
        tagging_map(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(DataError, match="must both be \\[N, C\\]"):
        tagging_map(np.zeros((3, 2)), np.zeros((3, 3)))


# --- detection --------------------------------------------------------------------------------------------

GT_BOXES = np.array([[[10, 10, 50, 50], [60, 60, 90, 100]], [[0, 0, 30, 20], [0, 0, 0, 0]]], dtype=float)
GT_LABELS = np.array([[0, 2], [1, -1]])


def _perfect() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    keep = GT_LABELS >= 0
    return [(GT_BOXES[i][keep[i]], np.ones(int(keep[i].sum())), GT_LABELS[i][keep[i]]) for i in range(2)]


def test_detection_map_perfect_and_empty() -> None:
    result = detection_map(_perfect(), GT_BOXES, GT_LABELS, image_size=128)
    assert result == {"map50": pytest.approx(1.0), "map": pytest.approx(1.0)}
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))] * 2
    assert detection_map(empty, GT_BOXES, GT_LABELS, image_size=128) == {"map50": 0.0, "map": 0.0}


def test_detection_map_iou_thresholds() -> None:
    # A 40x40 gt box and a 40x33 prediction inside it: IoU 0.825, matched at thresholds .50 .. .80 (7 of 10).
    gt = np.array([[[10.0, 10.0, 50.0, 50.0]]])
    dets = [(np.array([[10.0, 10.0, 50.0, 43.0]]), np.array([0.9]), np.array([0]))]
    result = detection_map(dets, gt, np.array([[0]]), image_size=64)
    assert result["map50"] == pytest.approx(1.0) and result["map"] == pytest.approx(0.7)


def test_detection_map_wrong_label_and_extra_detections() -> None:
    wrong = [(b, s, (lab + 1) % 3) for b, s, lab in _perfect()]
    assert detection_map(wrong, GT_BOXES, GT_LABELS, image_size=128)["map"] == 0.0
    # A higher-scored false positive in front of every true positive halves precision at every recall.
    noisy = [
        (np.concatenate([b + 70, b]), np.concatenate([np.full(len(s), 2.0), s]), np.concatenate([lab, lab]))
        for b, s, lab in _perfect()
    ]
    result = detection_map(noisy, GT_BOXES, GT_LABELS, image_size=128)
    assert result["map50"] == pytest.approx(0.5, abs=0.01)


def test_detection_map_errors() -> None:
    with pytest.raises(DataError, match="1 detection entries for 2 images"):
        detection_map(_perfect()[:1], GT_BOXES, GT_LABELS, image_size=128)
    with pytest.raises(DataError, match="no ground-truth boxes"):
        detection_map(_perfect(), GT_BOXES, np.full((2, 2), -1), image_size=128)
    bad = [(np.zeros((2, 4)), np.zeros(1), np.zeros(2)), _perfect()[1]]
    with pytest.raises(DataError, match="image 0: 2 boxes, 1 scores, 2 labels"):
        detection_map(bad, GT_BOXES, GT_LABELS, image_size=128)


# --- saliency ---------------------------------------------------------------------------------------------


def test_saliency_scores_known_values() -> None:
    gt = np.array([[[1, 1, 0, 0]]])
    assert saliency_scores(gt.astype(float), gt) == {"max_fbeta": 1.0, "mae": 0.0}
    # Thresholds keep {.9}: P=1, R=.5 -> F = 1.3 * .5 / (.3 + .5) = 0.8125, the best of all thresholds.
    pred = np.array([[[0.9, 0.4, 0.6, 0.1]]])
    result = saliency_scores(pred, gt)
    assert result["max_fbeta"] == pytest.approx(0.8125) and result["mae"] == pytest.approx(0.35)
    # All zeros: only t = 0 predicts anything (everything): P = 0.5, R = 1 -> F = 0.65 / 1.15.
    assert saliency_scores(np.zeros((1, 1, 4)), gt)["max_fbeta"] == pytest.approx(0.65 / 1.15)


def test_saliency_scores_pool_pixels_over_the_dataset() -> None:
    gt = np.zeros((2, 4, 4))
    gt[0, :2] = 1  # 8 positives in image 0, none in image 1
    pred = np.where(gt > 0, 0.7, 0.0)
    pred[1, 0, 0] = 0.9  # one confident false positive in image 1
    # t in (0.7, 0.9]: P = 0, so the best is t in (0, 0.7]: P = 8/9, R = 1.
    p = 8 / 9
    assert saliency_scores(pred, gt)["max_fbeta"] == pytest.approx(1.3 * p / (0.3 * p + 1))


def test_saliency_scores_errors() -> None:
    with pytest.raises(DataError, match="no salient pixel"):
        saliency_scores(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(DataError, match="must both be \\[N, H, W\\]"):
        saliency_scores(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))


# --- aggregate --------------------------------------------------------------------------------------------

TASKS = {
    "tagging": {"map": 0.8},
    "detection": {"map50": 0.7, "map": 0.4},
    "saliency": {"max_fbeta": 0.9, "mae": 0.05},
}


def test_aggregate_quality_is_documented_mean_and_monotone() -> None:
    assert aggregate_quality(TASKS) == pytest.approx(70.0)
    assert aggregate_quality({"tagging": {"map": 0.5}}) == pytest.approx(50.0)
    assert aggregate_quality({t: {k: 1.0 for k in m} for t, m in TASKS.items()}) == pytest.approx(100.0)
    assert aggregate_quality({t: {k: 0.0 for k in m} for t, m in TASKS.items()}) == 0.0
    for task, key in (("tagging", "map"), ("detection", "map"), ("saliency", "max_fbeta")):
        better = {t: dict(m) for t, m in TASKS.items()}
        better[task][key] += 0.05
        assert aggregate_quality(better) > aggregate_quality(TASKS)


def test_aggregate_quality_errors() -> None:
    with pytest.raises(ConfigError, match="unknown task 'pose'; known: tagging, detection, saliency"):
        aggregate_quality({"pose": {"map": 0.5}})
    with pytest.raises(ConfigError, match="detection needs 'map' in \\[0, 1\\], but got None"):
        aggregate_quality({"detection": {"map50": 0.5}})
    with pytest.raises(ConfigError, match="but got 1.5"):
        aggregate_quality({"tagging": {"map": 1.5}})
    with pytest.raises(ConfigError, match="no task metrics"):
        aggregate_quality({})


def test_quality_round_trip() -> None:
    quality = Quality.from_tasks(TASKS)
    assert quality.aggregate == pytest.approx(70.0)
    assert Quality.from_dict(json.loads(json.dumps(quality.to_dict()))) == quality
    with pytest.raises(
        ConfigError, match="exactly keys 'tasks' and 'aggregate', but got \\['aggregate', 'x'\\]"
    ):
        Quality.from_dict({"aggregate": 1.0, "x": {}})


def _random_case(seed: int):  # noqa: ANN202
    """Small random detection problems with score ties, duplicate boxes, >100 detections per group,
    degenerate (zero- or negative-size) detections and labels without ground truth: the corners where
    greedy matching, sorting and ignoring must agree between the two COCOeval implementations."""
    rng = np.random.default_rng(seed)
    n, k, c = int(rng.integers(1, 8)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
    gt_boxes, gt_labels = np.zeros((n, k, 4)), np.full((n, k), -1)
    for i in range(n):
        m = int(rng.integers(0, k + 1))
        xy = rng.integers(0, 40, (m, 2)).astype(float)
        gt_boxes[i, :m] = np.concatenate([xy, xy + rng.integers(6, 30, (m, 2))], axis=1)
        gt_labels[i, :m] = rng.integers(0, c, m)
        if m > 1 and rng.random() < 0.3:
            gt_boxes[i, 1], gt_labels[i, 1] = gt_boxes[i, 0], gt_labels[i, 0]
    gt_labels[0, 0], gt_boxes[0, 0] = 0, [1, 1, 10, 10]
    dets = []
    for i in range(n):
        m = int(rng.integers(0, 130 if i == 0 and seed % 3 == 0 else 8))
        xy = rng.integers(0, 40, (m, 2)).astype(float)
        boxes = np.concatenate([xy, xy + rng.integers(-3, 24, (m, 2))], axis=1)
        labels = rng.integers(0, c + 1, m)
        j = min(int((gt_labels[i] >= 0).sum()), m)
        boxes[:j] = gt_boxes[i, :j] + rng.integers(-2, 3, (j, 4))
        labels[:j] = np.where(rng.random(j) < 0.8, gt_labels[i, :j], labels[:j])
        scores = np.round(rng.uniform(0, 0.8, m), 1)
        scores[:j] = np.round(rng.uniform(0.3, 1.0, j), 1)
        dets.append((boxes, scores, labels))
    return dets, gt_boxes, gt_labels


@pytest.mark.parametrize("seed", range(6))
def test_detection_map_faster_coco_eval_equals_pycocotools(seed: int) -> None:
    dets, gt_boxes, gt_labels = _random_case(seed)
    fast = detection_map(dets, gt_boxes, gt_labels, image_size=64)
    reference = detection_map(dets, gt_boxes, gt_labels, image_size=64, backend="pycocotools")
    assert fast == pytest.approx(reference, abs=1e-6)
    assert 0 < fast["map"] < fast["map50"] <= 1  # not a trivial case


def test_detection_map_keeps_top_100_per_image_and_category() -> None:
    # 100 confident false positives push the true positive (score 0.5) past COCO's limit of 100.
    gt = np.array([[[10.0, 10.0, 50.0, 50.0]]])
    clutter = np.tile([60.0, 60.0, 70.0, 70.0], (100, 1))
    boxes = np.concatenate([clutter, gt[0]])
    scores = np.concatenate([np.full(100, 0.9), [0.5]])
    for backend in ("faster-coco-eval", "pycocotools"):
        dets = [(boxes, scores, np.zeros(101, dtype=int))]
        assert detection_map(dets, gt, np.array([[0]]), image_size=128, backend=backend)["map"] == 0.0
        dets = [(boxes[1:], scores[1:], np.zeros(100, dtype=int))]  # 99 in front: found, precision 1/100
        result = detection_map(dets, gt, np.array([[0]]), image_size=128, backend=backend)
        assert result["map50"] == pytest.approx(0.01)


def test_detection_map_argument_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'torch'"):
        detection_map(_perfect(), GT_BOXES, GT_LABELS, image_size=128, backend="torch")
    bad = [(GT_BOXES[0], np.ones(2), np.array([0, -1])), _perfect()[1]]
    with pytest.raises(DataError, match="image 0: labels must be category indices >= 0"):
        detection_map(bad, GT_BOXES, GT_LABELS, image_size=128)
