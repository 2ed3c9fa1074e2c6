"""The built-in data: procedural multi-task scenes written to disk as a COCO-format dataset.

Each image shows 1 to ``max_objects`` objects from 12 categories (``CATEGORY_NAMES``) that differ in shape,
texture (solid, stripes, checker, dots) and colour (one hue per category, jittered), at random scale,
rotation and aspect, over a textured background with smooth colour noise, a faint pattern and clutter
(strokes and small irregular blobs that are not objects), plus pixel noise over everything. Later objects
occlude earlier ones; a placement that would hide more than ``1 - min_visible`` of an earlier object is
redrawn (or the object dropped after a few tries), so every annotated object stays recognisable.

Per object the annotation holds only its visible pixels: ``segmentation`` (COCO RLE of the visible mask),
``bbox`` (the visible extent, ``[x, y, w, h]`` in pixels) and ``area`` (visible pixel count). Image tags are
the categories present; the saliency mask is the union of all object masks.

Layout written by :func:`generate_scenes` (the layout of COCO's own releases)::

    OUT/annotations/instances_train.json   OUT/train/000000.png ...
    OUT/annotations/instances_val.json     OUT/val/000000.png ...
    OUT/annotations/instances_test.json    OUT/test/000000.png ...
    OUT/annotations/captions_train.json    OUT/annotations/captions_val.json    OUT/annotations/captions_test.json

Captions (COCO's caption format, five per image) describe what was drawn: colour, texture and shape, counts,
rough positions, relations and occlusion (see :mod:`compress.data.captions`).

Every image draws from its own ``numpy`` Generator seeded by ``(seed, split, index)``, so a seed gives
byte-identical files whatever the order of generation.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from compress.data._pool import chunked_map
from compress.data._shapes import CATEGORIES, background, blob_mask, render_object, stroke_mask
from compress.data.captions import caption_scene, captions_doc, scene_objects
from compress.errors import ConfigError
from compress.progress import Bar

__all__ = ["CATEGORY_NAMES", "SceneConfig", "generate_scenes"]

CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
# Bump when the drawing or the files written change, so caches keyed by the config hash are rebuilt
# (2: captions_{split}.json beside the instances files).
_GENERATOR_VERSION = 2
_SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SceneConfig:
    """What :func:`generate_scenes` draws. Frozen and validated on creation (``ConfigError``).

    The defaults (2000 train + 400 val + 400 test images, 160 x 160 px) are sized for the search on 2 CPU cores, by
    measurement (``benchmarks/data_speed.py``): drawing and writing them costs ~26 s of CPU on one core
    (~11 ms per image, ~4 ms of it PNG encoding), once per machine; the tensor cache at 128 px is 150 MB,
    builds in ~4 s of CPU and loads in 0.2 s; 400 validation images (~1200 boxes) keep ``detection_map``
    at ~0.15 s per candidate while giving every category ~100 validation instances. 160 px is the native
    size so that the model's 96-160 px training resolutions only ever downsample.

    Attributes:
        num_train: training images (>= 1).
        num_val: validation images (>= 1): the search and every keep/drop decision read these.
        num_test: test images (>= 1): only the card's and the report's final figures read these.
        image_size: side of the square images in pixels (32..1024).
        min_objects, max_objects: objects per image, drawn uniformly (1 <= min <= max <= 12).
        min_scale, max_scale: object size as a fraction of the image side (0 < min <= max <= 0.9).
        max_clutter: distractor strokes and blobs per image, drawn uniformly from 0..max_clutter.
        noise: standard deviation of the Gaussian pixel noise, in [0, 1] intensity units (0..0.2).
        min_visible: fraction of each object's pixels that must stay visible under later objects (0..1).
        seed: the random seed.
    """

    num_train: int = 2000
    num_val: int = 400
    num_test: int = 400
    image_size: int = 160
    min_objects: int = 1
    max_objects: int = 5
    min_scale: float = 0.2
    max_scale: float = 0.5
    max_clutter: int = 6
    noise: float = 0.03
    min_visible: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = int if isinstance(f.default, int) else int | float
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"SceneConfig.{f.name} must be {f.type}, but got {value!r}")
        checks = [
            ("num_train", self.num_train >= 1, "must be >= 1"),
            ("num_val", self.num_val >= 1, "must be >= 1"),
            ("num_test", self.num_test >= 1, "must be >= 1"),
            ("image_size", 32 <= self.image_size <= 1024, "must be in 32..1024"),
            ("min_objects", 1 <= self.min_objects <= self.max_objects, "must be in 1..max_objects"),
            ("max_objects", self.max_objects <= 12, "must be <= 12"),
            ("min_scale", 0 < self.min_scale <= self.max_scale, "must be > 0 and <= max_scale"),
            ("max_scale", self.max_scale <= 0.9, "must be <= 0.9"),
            ("max_clutter", 0 <= self.max_clutter <= 50, "must be in 0..50"),
            ("noise", 0 <= self.noise <= 0.2, "must be in 0..0.2"),
            ("min_visible", 0 <= self.min_visible < 1, "must be in [0, 1)"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"SceneConfig.{name} {rule}, but got {getattr(self, name)!r}")
        if self.min_scale * self.image_size < 8:
            raise ConfigError(
                f"SceneConfig.min_scale * image_size must be >= 8 px, but got "
                f"{self.min_scale} * {self.image_size}; raise min_scale or image_size"
            )

    def config_hash(self) -> str:
        """A short stable hash of this config and the generator version (names cache folders)."""
        payload = json.dumps({"version": _GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _add_clutter(canvas: np.ndarray, cfg: SceneConfig, rng: np.random.Generator) -> None:
    """Paint strokes and small irregular blobs (not objects) onto the background, in place."""
    size = cfg.image_size
    for _ in range(int(rng.integers(0, cfg.max_clutter + 1))):
        colour = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
        if rng.random() < 0.6:
            p0 = rng.uniform(0, size, size=2).astype(np.float32)
            p1 = p0 + rng.normal(0, size * 0.25, size=2).astype(np.float32)
            window, mask = stroke_mask(size, p0, p1, float(rng.uniform(1.0, 3.0)))
        else:
            centre = rng.uniform(0, size, size=2)
            window, mask = blob_mask(size, centre, rng.uniform(0.02, 0.045) * size, rng)
        canvas[window][mask] = colour


def _place(cfg: SceneConfig, rng: np.random.Generator) -> tuple[int, np.ndarray, tuple, np.ndarray] | None:
    """Draw one object at a random pose: (category, full-canvas bool mask, patch window, patch colours)."""
    size = cfg.image_size
    cat = int(rng.integers(len(CATEGORIES)))
    side = max(8, int(round(rng.uniform(cfg.min_scale, cfg.max_scale) * size)))
    mask, rgb = render_object(
        CATEGORIES[cat], side, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.9, 1.1)), rng
    )
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    full = np.zeros((size, size), dtype=bool)
    full[window] = mask
    return (cat, full, window, rgb) if mask.any() else None


def draw_scene(
    cfg: SceneConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, int, int | None]]]:
    """Draw one scene: uint8 [S, S, 3] image and per object (category, visible mask, full area, occluder).

    The occluder is the index of the later object that hides most of this one's pixels (``None`` if none).
    """
    canvas = background(cfg.image_size, rng)
    _add_clutter(canvas, cfg, rng)
    objects: list[tuple[int, np.ndarray, int]] = []  # category, visible mask, full area
    hidden: list[dict[int, int]] = []  # per object: pixels hidden by each later object
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        for _attempt in range(8):
            placed = _place(cfg, rng)
            if placed is None:
                continue
            cat, full, window, rgb = placed
            if all((vis & ~full).sum() >= cfg.min_visible * area for _, vis, area in objects):
                break
        else:
            continue  # no placement kept the earlier objects visible enough: drop this one
        np.copyto(canvas[window], rgb, where=full[window][..., None])
        for (_, vis, _), by in zip(objects, hidden, strict=True):
            covered = int((vis & full).sum())
            if covered:
                by[len(objects)] = covered
        objects = [(c, vis & ~full, area) for c, vis, area in objects]
        objects.append((cat, full, int(full.sum())))
        hidden.append({})
    canvas += rng.standard_normal(size=canvas.shape, dtype=np.float32) * np.float32(cfg.noise)
    canvas *= 255.0
    canvas += 0.5  # round half up on the cast below
    image = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
    return image, [
        (c, vis, area, max(by, key=by.__getitem__) if by else None)
        for (c, vis, area), by in zip(objects, hidden, strict=True)
    ]


def make_scene(cfg: SceneConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Draw one scene: uint8 [S, S, 3] image and a list of (category index, visible bool mask)."""
    image, objects = draw_scene(cfg, rng)
    return image, [(c, vis) for c, vis, _, _ in objects]


def _annotation(ann_id: int, image_id: int, cat: int, mask: np.ndarray) -> dict:
    """A COCO instance annotation for one visible mask (RLE segmentation, bbox of the visible extent)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rows, cols = np.nonzero(mask)
    x0, y0 = int(cols.min()), int(rows.min())
    bbox = [float(x0), float(y0), float(cols.max() + 1 - x0), float(rows.max() + 1 - y0)]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat + 1,
        "bbox": bbox,
        "area": float(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
    }


def _draw_one(cfg: SceneConfig, split: str, index: int, out: Path) -> tuple[dict, list[dict], list[str]]:
    """Draw image ``index`` of ``split`` from its own seed, write its PNG; return its image record, its
    annotations (ids assigned by the caller, in image order) and its captions."""
    from PIL import Image

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _SPLITS[split], index]))
    pixels, drawn = draw_scene(cfg, rng)
    name = f"{index:06d}.png"
    Image.fromarray(pixels).save(out / split / name, compress_level=1)
    image_id = index + 1
    image = {"id": image_id, "file_name": name, "width": cfg.image_size, "height": cfg.image_size}
    annotations = [_annotation(0, image_id, cat, mask) for cat, mask, _, _ in drawn if mask.any()]
    text_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _SPLITS[split], index, 1]))
    return image, annotations, caption_scene(scene_objects(drawn, CATEGORIES), text_rng)


def _draw_chunk(
    cfg: SceneConfig, split: str, out: Path, indices: range
) -> list[tuple[dict, list[dict], list[str]]]:
    return [_draw_one(cfg, split, i, out) for i in indices]


def _write_split(out: Path, split: str, count: int, cfg: SceneConfig, progress: bool) -> None:
    """Draw and write one split's PNGs, its instances JSON and its captions JSON."""
    (out / split).mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    annotations: list[dict] = []
    captions: list[list[str]] = []
    with Bar(f"scenes {split}", total=count, enabled=progress) as bar:
        for chunk in chunked_map(_draw_chunk, range(count), cfg, split, out):
            for image, anns, caps in chunk:
                images.append(image)
                for ann in anns:  # ids in image order, as one process numbered them
                    annotations.append(ann | {"id": len(annotations) + 1})
                captions.append(caps)
            bar.update(len(images))
    info = {"description": "compress built-in procedural scenes", "scene_config": asdict(cfg)}
    doc = {
        "info": info,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CATEGORY_NAMES)
        ],
        "images": images,
        "annotations": annotations,
    }
    _write_json(out / "annotations" / f"instances_{split}.json", doc)
    _write_json(out / "annotations" / f"captions_{split}.json", captions_doc(images, captions, info))


def _write_json(path: Path, doc: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def generate_scenes(
    out_dir: str | Path, config: SceneConfig = SceneConfig(), *, progress: bool = True
) -> Path:
    """Draw the scenes of ``config`` and write them to ``out_dir`` as a COCO-format dataset.

    Args:
        out_dir: the folder to write (created if needed; files of an earlier run are overwritten).
        config: what to draw; see :class:`SceneConfig` for the defaults and why.
        progress: show a progress bar on stderr.

    Returns:
        ``out_dir`` as a ``Path``; load it with ``load_data(f"coco:{out_dir}", ...)``.
    """
    if not isinstance(config, SceneConfig):
        raise ConfigError(f"config must be a SceneConfig, but got {type(config).__name__}")
    out = Path(out_dir)
    _write_split(out, "train", config.num_train, config, progress)
    _write_split(out, "val", config.num_val, config, progress)
    _write_split(out, "test", config.num_test, config, progress)
    return out
