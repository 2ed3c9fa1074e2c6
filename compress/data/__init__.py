"""compress.data: the built-in procedural scenes and a loader for any COCO-format data set.

``load_data("builtin" | "coco:PATH", resolution=R)`` returns ``(train, val)`` ``MultiTaskDataset`` objects
(``load_splits`` adds the test split, which only final figures read):
uint8 images, multi-hot tags, padded boxes with labels and saliency masks, all as in-memory tensors at R x R,
cached on disk per (data spec, resolution). ``generate_scenes`` writes the built-in scenes as a COCO data set.
"""

from __future__ import annotations

from compress.data.coco import DataSpec, Splits, default_cache_dir, load_data, load_splits, parse_data_spec
from compress.data.dataset import MultiTaskDataset
from compress.data.scenes import CATEGORY_NAMES, SceneConfig, generate_scenes

__all__ = [
    "CATEGORY_NAMES",
    "DataSpec",
    "MultiTaskDataset",
    "SceneConfig",
    "Splits",
    "default_cache_dir",
    "generate_scenes",
    "load_data",
    "load_splits",
    "parse_data_spec",
]
