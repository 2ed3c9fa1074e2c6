"""Reading and validating one COCO instances JSON, and decoding one image's targets from it.

Every problem becomes a ``DataError`` that names the file, the image or annotation id and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import DataError

__all__ = ["CocoFile", "ImageRecord", "check_box", "read_coco", "union_mask"]

_BOX_SLACK = 1.0  # pixels a box may overhang the image (rounding in exporters); it is clipped


@dataclass
class ImageRecord:
    """One entry of ``images`` with its annotations (validated, except boxes against an unknown size)."""

    id: int
    file_name: str
    width: int | None
    height: int | None
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CocoFile:
    """A validated instances JSON: categories as (id, name) sorted by id, and the image records in order."""

    path: Path
    categories: list[tuple[int, str]]
    images: list[ImageRecord]


def _fail(path: Path, where: str, message: str) -> DataError:
    return DataError(f"{path}: {where}: {message}")


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found; check the data path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); is it a COCO instances file?") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: top level must be a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: missing list field {key!r}; a COCO instances file needs it")
    return doc


def _opt_int(path: Path, where: str, entry: Any, key: str) -> int | None:
    """``entry[key]`` as an int, or None when absent; anything else is a DataError."""
    if not isinstance(entry, dict):
        raise _fail(path, where, f"must be a JSON object, but got {entry!r:.80}")
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(path, where, f"field {key!r} must be an integer, but got {value!r:.80}")
    return value


def _req_int(path: Path, where: str, entry: Any, key: str) -> int:
    """``entry[key]`` as an int; missing or anything else is a DataError."""
    value = _opt_int(path, where, entry, key)
    if value is None:
        raise _fail(path, where, f"missing field {key!r} (an integer)")
    return value


def _categories(path: Path, doc: dict[str, Any]) -> list[tuple[int, str]]:
    cats: dict[int, str] = {}
    for i, entry in enumerate(doc["categories"]):
        cid = _req_int(path, f"categories[{i}]", entry, "id")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(path, f"category {cid}", f"field 'name' must be a non-empty string, but got {name!r}")
        if cid in cats:
            raise _fail(path, f"category {cid}", "duplicate category id")
        cats[cid] = name
    if not cats:
        raise DataError(f"{path}: field 'categories' is empty; at least one category is needed")
    return sorted(cats.items())


def _images(path: Path, doc: dict[str, Any]) -> dict[int, ImageRecord]:
    records: dict[int, ImageRecord] = {}
    for i, entry in enumerate(doc["images"]):
        iid = _req_int(path, f"images[{i}]", entry, "id")
        where = f"image {iid}"
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise _fail(path, where, f"field 'file_name' must be a non-empty string, but got {name!r}")
        width = _opt_int(path, where, entry, "width")
        height = _opt_int(path, where, entry, "height")
        for key, value in (("width", width), ("height", height)):
            if value is not None and value <= 0:
                raise _fail(path, where, f"field {key!r} must be positive, but got {value}")
        if iid in records:
            raise _fail(path, where, "duplicate image id")
        records[iid] = ImageRecord(iid, name, width, height)
    return records


def _check_annotation(path: Path, entry: Any, index: int, cat_ids: set[int]) -> tuple[int, dict[str, Any]]:
    where = f"annotations[{index}]"
    if isinstance(entry, dict) and isinstance(entry.get("id"), int):
        where = f"annotation {entry['id']}"
    image_id = _req_int(path, where, entry, "image_id")
    cat = _req_int(path, where, entry, "category_id")
    if cat not in cat_ids:
        raise _fail(path, where, f"field 'category_id' {cat} is not in categories (ids {sorted(cat_ids)})")
    bbox = entry.get("bbox")
    if (
        not isinstance(bbox, list | tuple)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    ):
        what = "missing field" if bbox is None else "field"
        raise _fail(path, where, f"{what} 'bbox' must be [x, y, width, height] numbers, but got {bbox!r:.80}")
    if not (bbox[2] > 0 and bbox[3] > 0):
        raise _fail(path, where, f"field 'bbox' {list(bbox)} must have positive width and height")
    return image_id, {**entry, "_where": where}


def read_coco(path: Path) -> CocoFile:
    """Read and validate one instances JSON (boxes are checked against image sizes later)."""
    doc = _load_json(path)
    categories = _categories(path, doc)
    records = _images(path, doc)
    cat_ids = {cid for cid, _ in categories}
    for i, entry in enumerate(doc["annotations"]):
        image_id, ann = _check_annotation(path, entry, i, cat_ids)
        if image_id not in records:
            raise _fail(path, ann["_where"], f"field 'image_id' {image_id} is not in images")
        records[image_id].annotations.append(ann)
    return CocoFile(path, categories, list(records.values()))


def check_box(path: Path, ann: dict[str, Any], width: int, height: int) -> list[float]:
    """The annotation's bbox clipped to the image, or a DataError if it lies outside it."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    if x < -_BOX_SLACK or y < -_BOX_SLACK or x + w > width + _BOX_SLACK or y + h > height + _BOX_SLACK:
        raise _fail(
            path,
            f"{ann['_where']} (image {ann['image_id']})",
            f"field 'bbox' [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image",
        )
    x0, y0 = max(x, 0.0), max(y, 0.0)
    return [x0, y0, min(x + w, float(width)), min(y + h, float(height))]


def _segment_mask(path: Path, ann: dict[str, Any], width: int, height: int) -> np.ndarray:
    """One annotation's mask [height, width] from polygons or RLE (its box when there is none)."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if not seg:
        x0, y0, x1, y1 = check_box(path, ann, width, height)
        mask = np.zeros((height, width), dtype=bool)
        mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        return mask
    try:
        if isinstance(seg, list):
            polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
            if len(polygons) != len(seg):
                raise ValueError("each polygon must be a list of >= 3 x, y pairs")
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, height, width)
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), str | bytes):
            if list(seg.get("size", [])) != [height, width]:
                raise ValueError(f"RLE size {seg.get('size')} is not the image's [{height}, {width}]")
            rle = seg
        else:
            raise ValueError("expected polygons (a list) or RLE (an object with size and counts)")
        return mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, IndexError) as exc:
        where = f"{ann['_where']} (image {ann['image_id']})"
        raise _fail(path, where, f"field 'segmentation' cannot be decoded: {exc}") from None


def union_mask(path: Path, annotations: list[dict[str, Any]], width: int, height: int) -> np.ndarray:
    """The union of all annotations' masks (crowd regions included), bool [height, width]."""
    mask = np.zeros((height, width), dtype=bool)
    for ann in annotations:
        mask |= _segment_mask(path, ann, width, height)
    return mask
