"""Time the built-in data path and the detection metric; prints its figures.

    python benchmarks/data_speed.py [--train 2000 --val 400 --resolution 128]

Measures, on one thread: generating the default built-in scenes, building the tensor cache at 128 px,
loading from the warm cache, and ``detection_map`` on 400 images with 50 detections each with both
backends, faster-coco-eval (the default) and pycocotools (target < 1 s).
Everything is written to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compress.data import SceneConfig, generate_scenes, load_data
from compress.metrics import detection_map


def _timed(fn):  # noqa: ANN001, ANN202
    """(result, wall seconds); the CPU seconds of the call go to ``_timed.cpu`` (robust to shared cores)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    _timed.cpu = time.process_time() - cpu
    return result, time.perf_counter() - start


def _detections(n_images: int, per_image: int, classes: int, size: int, seed: int = 0):  # noqa: ANN202
    """Random ground truth (1-5 boxes per image) and detections that find it among clutter."""
    rng = np.random.default_rng(seed)
    gt_boxes, gt_labels = np.zeros((n_images, 5, 4)), np.full((n_images, 5), -1)
    dets = []
    for i in range(n_images):
        k = int(rng.integers(1, 6))
        xy, wh = rng.uniform(0, size * 0.6, (per_image, 2)), rng.uniform(10, size * 0.4, (per_image, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, classes, per_image)
        gt_boxes[i, :k], gt_labels[i, :k] = boxes[:k], labels[:k]
        boxes[:k] += rng.normal(0, 2, (k, 4))
        dets.append((boxes, rng.uniform(0, 1, per_image), labels))
    return dets, gt_boxes, gt_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=SceneConfig().num_train)
    parser.add_argument("--val", type=int, default=SceneConfig().num_val)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = SceneConfig(num_train=args.train, num_val=args.val)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        _, gen_s = _timed(lambda: generate_scenes(cache / "gen", config, progress=False))
        n = args.train + args.val
        print(f"generate {n} scenes at {config.image_size}px: {gen_s:.1f} s wall, {_timed.cpu:.1f} s CPU")
        spec = f"coco:{cache / 'gen'}"

        def load():  # noqa: ANN202
            return load_data(spec, resolution=args.resolution, cache_dir=cache, progress=False)

        (train, val), cold_s = _timed(load)
        print(f"cache build at {args.resolution}px: {cold_s:.1f} s wall, {_timed.cpu:.1f} s CPU")
        _, warm_s = _timed(load)
        size_mb = sum(p.stat().st_size for p in cache.glob("coco-*.safetensors")) / 2**20
        print(
            f"cached load: {warm_s:.2f} s wall, {_timed.cpu:.2f} s CPU; cache file {size_mb:.0f} MB; "
            f"{train}, {val}"
        )
    dets, gt_boxes, gt_labels = _detections(400, 50, 12, 128)
    detection_map(dets, gt_boxes, gt_labels, image_size=128)  # import both libraries outside the timing
    detection_map(dets, gt_boxes, gt_labels, image_size=128, backend="pycocotools")
    for backend in ("faster-coco-eval", "pycocotools"):
        wall, cpu = [], []
        for _ in range(5):
            result, seconds = _timed(
                lambda b=backend: detection_map(dets, gt_boxes, gt_labels, image_size=128, backend=b)
            )
            wall.append(seconds)
            cpu.append(_timed.cpu)
        print(
            f"detection_map ({backend}), 400 images x 50 detections: best of 5 {min(wall):.3f} s wall, "
            f"{min(cpu):.3f} s CPU; map50 {result['map50']:.6f}, map {result['map']:.6f}"
        )


if __name__ == "__main__":
    main()
