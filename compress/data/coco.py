"""Data specs, the COCO-format loader and its tensor cache: ``load_data`` turns a spec into two data sets.

A data spec is ``"builtin"`` (the procedural scenes of :mod:`compress.data.scenes`, generated once into the
cache folder) or ``"coco:PATH"``, where PATH is either

* a folder laid out as COCO's releases: ``annotations/instances_train.json`` and
  ``annotations/instances_val.json``, images in ``train/`` and ``val/`` (or ``train2017/``, ``val2017/``),
  and optionally ``annotations/instances_test.json`` with ``test/`` (``test2017/``); or
* one instances JSON whose ``file_name`` entries are relative to the JSON's folder; a validation part
  (``val_fraction`` of the images, chosen by ``seed``) is then split off deterministically.

Three splits: the search and every keep/drop decision read *val*; only the final figures (card, report,
"beats the baseline") read *test*. Without a test file, a test part (``test_fraction`` of the training
images, chosen by ``seed``) is carved from train, deterministically, and never trained on
(``load_splits(...).test_origin`` says which).

Captions are read when COCO caption files lie beside the instances files
(``annotations/captions_{train,val,test}.json``, the layout of COCO's releases; for a single ``instances.json``,
``captions.json``); each data set's ``captions`` then holds every image's captions, else it is ``None``.

Targets: tags are the categories present in an image (crowd annotations included); boxes come from
``bbox`` (crowd regions excluded, since they box groups); saliency is the union of every annotation's
segmentation (polygons or RLE, crowd included; an annotation without one contributes its box).

Cache: the decoded, resized tensors of both splits go to one file per key under ``cache_dir``. The key
holds the spec (the scene config's hash for ``builtin``; for ``coco:`` the resolved annotation files with
their sizes and mtimes and the image folders with their mtimes) and the resolution. Files are written
atomically (temp file + rename) as safetensors + JSON (``compress._safeio``), never a pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from compress.data._cocofile import CocoFile, check_box, read_coco, union_mask
from compress.data._pool import chunked_map
from compress.data.captions import read_captions
from compress.data.dataset import MultiTaskDataset
from compress.data.scenes import SceneConfig, generate_scenes
from compress.errors import ConfigError, DataError, DataWarning, RunError
from compress.progress import Bar

__all__ = ["DataSpec", "Splits", "default_cache_dir", "load_data", "load_splits", "parse_data_spec"]

_CACHE_VERSION = 3  # 2: the test split; 3: captions (from captions_{split}.json when present)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: ``kind`` is ``"builtin"`` or ``"coco"`` (then ``path`` is set)."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return "builtin" if self.kind == "builtin" else f"coco:{self.path}"


def parse_data_spec(text: str | DataSpec) -> DataSpec:
    """Parse ``"builtin"`` or ``"coco:PATH"`` (``~`` expanded); anything else is a ``ConfigError``."""
    if isinstance(text, DataSpec):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"data spec must be a string, but got {text!r}; use 'builtin' or 'coco:PATH'")
    if text.strip() == "builtin":
        return DataSpec("builtin")
    if text.startswith("coco:") and text[5:].strip():
        return DataSpec("coco", Path(text[5:].strip()).expanduser())
    raise ConfigError(f"unknown data spec {text!r}; use 'builtin' or 'coco:PATH'")


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("compress")/data``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("compress")) / "data"


@dataclass(frozen=True)
class _Source:
    """Resolved files of a COCO data set: (instances JSON, image folder) for train, maybe val and test."""

    train: tuple[Path, Path]
    val: tuple[Path, Path] | None
    test: tuple[Path, Path] | None = None

    def captions(self, split: str) -> Path | None:
        """The split's COCO captions file beside its instances file, if there is one.

        ``annotations/instances_train.json`` pairs with ``annotations/captions_train.json``; a single
        ``NAME.json`` spec pairs with ``captions.json`` (or ``NAME`` with ``instances`` -> ``captions``).
        """
        pair = {"train": self.train, "val": self.val, "test": self.test}[split]
        if pair is None:
            return None
        ann = pair[0]
        names = [ann.name.replace("instances", "captions")] if "instances" in ann.name else []
        names.append("captions.json" if self.val is None else f"captions_{split}.json")
        for name in names:
            if name != ann.name and (ann.parent / name).is_file():
                return ann.parent / name
        return None


def _image_dir(root: Path, split: str) -> Path:
    for name in (split, f"{split}2017"):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: no image folder {split}/ or {split}2017/ beside annotations/")


def _resolve(path: Path) -> _Source:
    """Find the annotation files and image folders of a ``coco:PATH`` spec."""
    if path.is_file():
        return _Source(train=(path, path.parent), val=None)
    if not path.is_dir():
        raise DataError(f"coco:{path}: no such file or folder; give a COCO folder or an instances JSON")
    ann = path / "annotations"
    files = [ann / f"instances_{s}.json" for s in ("train", "val")]
    missing = [str(f.relative_to(path)) for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"coco:{path}: missing {', '.join(missing)}; a COCO folder needs "
            "annotations/instances_train.json and annotations/instances_val.json "
            "(or pass coco:PATH/TO/instances.json)"
        )
    test_file = ann / "instances_test.json"
    test = (test_file, _image_dir(path, "test")) if test_file.is_file() else None
    return _Source(
        train=(files[0], _image_dir(path, "train")), val=(files[1], _image_dir(path, "val")), test=test
    )


def _inside(path: Path, rec: Any, image_dir: Path) -> Path:
    """The image file of ``rec``; DataError for a name with a NUL byte or one that leaves the image folder."""
    name = rec.file_name
    if "\x00" in name:
        raise DataError(f"{path}: image {rec.id}: field 'file_name' contains a NUL byte: {name!r}")
    file = image_dir / name
    root = image_dir.resolve()
    if not file.resolve().is_relative_to(root):
        raise DataError(
            f"{path}: image {rec.id}: field 'file_name' {name!r} points outside the image folder {root}; "
            "give a path relative to it"
        )
    return file


def _to_rgb(path: Path, opened: Any) -> Any:
    """8-bit RGB in display orientation: EXIF rotation applied; 16-bit scaled and alpha dropped, with a warning."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(opened)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        warnings.warn(
            f"{path}: 16-bit images are scaled to 8 bits (their lowest 8 bits dropped)",
            DataWarning,
            stacklevel=2,
        )
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))  # mode L
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        warnings.warn(
            f"{path}: images with an alpha channel are used without it (transparency ignored)",
            DataWarning,
            stacklevel=2,
        )
    return image.convert("RGB")


def _read_image(path: Path, rec: Any, image_dir: Path, resolution: int) -> tuple[np.ndarray, int, int]:
    """The image resized (squashed) to resolution x resolution, uint8 [3, R, R], and its original size."""
    from PIL import Image, UnidentifiedImageError

    file = _inside(path, rec, image_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                rgb = _to_rgb(path, opened)
        width, height = rgb.size
        small = rgb.resize((resolution, resolution), Image.Resampling.BILINEAR)
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{path}: image {rec.id}: field 'file_name': no file {file}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path}: image {rec.id}: {file} is too large to decode safely ({exc}); resize it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: image {rec.id}: field 'file_name': cannot read {file} ({exc})") from None
    for key, want, got in (("width", rec.width, width), ("height", rec.height, height)):
        if want is not None and want != got:
            raise DataError(f"{path}: image {rec.id}: field {key!r} is {want}, but {file} has {got}")
    return np.asarray(small).transpose(2, 0, 1), width, height


_Read = tuple[np.ndarray, list[int], list[list[float]], list[int], np.ndarray | None]


def _read_chunk(
    path: Path, image_dir: Path, label: dict[int, int], r: int, records: list[Any]
) -> tuple[list[_Read], list[tuple[str, type[Warning]]]]:
    """Each record's image at ``r`` px, its tags, its non-crowd boxes (scaled to ``r``) and labels, and its
    saliency mask at ``r`` px (None without annotations); and the warnings raised, for the caller to repeat
    (a worker process's warnings would not reach the caller's filters)."""
    from PIL import Image

    out: list[_Read] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rec in records:
            pixels, width, height = _read_image(path, rec, image_dir, r)
            scale = np.array([r / width, r / height, r / width, r / height], dtype=np.float32)
            tags, boxes, labels = [], [], []
            for ann in rec.annotations:
                box = check_box(path, ann, width, height)
                tags.append(label[ann["category_id"]])
                if not ann.get("iscrowd"):
                    boxes.append((np.asarray(box, dtype=np.float32) * scale).tolist())
                    labels.append(label[ann["category_id"]])
            saliency = None
            if rec.annotations:
                mask = union_mask(path, rec.annotations, width, height)
                saliency = np.array(
                    Image.fromarray(mask.astype(np.uint8)).resize((r, r), Image.Resampling.NEAREST)
                )
            out.append((pixels, tags, boxes, labels, saliency))
    return out, [(str(w.message), w.category) for w in caught]


def _build(
    coco: CocoFile,
    image_dir: Path,
    categories: list[tuple[int, str]],
    resolution: int,
    progress: bool,
    captions: Path | None = None,
):
    """Decode and resize every image of ``coco`` into the tensors of a MultiTaskDataset (a state dict); the
    images are read in chunks, on every core where the platform forks (``compress.data._pool``)."""
    label = {cid: i for i, (cid, _) in enumerate(categories)}
    n, r = len(coco.images), resolution
    k = max([sum(not a.get("iscrowd") for a in rec.annotations) for rec in coco.images] + [1])
    images = torch.zeros((n, 3, r, r), dtype=torch.uint8)
    tags = torch.zeros((n, len(categories)), dtype=torch.float32)
    boxes = torch.zeros((n, k, 4), dtype=torch.float32)
    labels = torch.full((n, k), -1, dtype=torch.int64)
    saliency = torch.zeros((n, 1, r, r), dtype=torch.uint8)
    i, warned = 0, set()
    with Bar(f"caching {coco.path.name} @{r}px", total=n, enabled=progress) as bar:
        for chunk, caught in chunked_map(_read_chunk, coco.images, coco.path, image_dir, label, r):
            for message, category in caught:
                if message not in warned:
                    warned.add(message)
                    warnings.warn(message, category, stacklevel=2)
            for pixels, tag_ids, box_list, box_labels, mask in chunk:
                images[i] = torch.from_numpy(pixels.copy())
                tags[i, tag_ids] = 1.0
                if box_list:
                    boxes[i, : len(box_list)] = torch.tensor(box_list, dtype=torch.float32)
                    labels[i, : len(box_labels)] = torch.tensor(box_labels, dtype=torch.int64)
                if mask is not None:
                    saliency[i, 0] = torch.from_numpy(mask)
                i += 1
            bar.update(i)
    names = [name for _, name in categories]
    state = {"images": images, "tags": tags, "boxes": boxes, "box_labels": labels, "saliency": saliency,
             "categories": names}  # fmt: skip
    if captions is not None:
        state["captions"] = read_captions(captions, [rec.id for rec in coco.images])
    return state


def _ensure_builtin(cache_dir: Path, config: SceneConfig, progress: bool) -> Path:
    """Generate the built-in scenes into ``cache_dir/scenes-<hash>`` once; return that folder."""
    final = cache_dir / f"scenes-{config.config_hash()}"
    if (final / "DONE").is_file():
        return final
    tmp = cache_dir / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate_scenes(tmp, config, progress=progress)
    (tmp / "DONE").write_text(json.dumps({"scene_config_hash": config.config_hash()}))
    shutil.rmtree(final, ignore_errors=True)  # an incomplete folder from an interrupted run
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _cache_key(spec: DataSpec, source: _Source, resolution: int, config: SceneConfig | None) -> str:
    parts: dict[str, object] = {"version": _CACHE_VERSION, "resolution": resolution, "spec": spec.kind}
    if config is not None:
        parts["scenes"] = config.config_hash()
    else:
        for name, pair in (("train", source.train), ("val", source.val), ("test", source.test)):
            if pair is not None:
                ann, img = (p.resolve() for p in pair)
                st, sd = ann.stat(), img.stat()
                parts[name] = [str(ann), st.st_size, st.st_mtime_ns, str(img), sd.st_mtime_ns]
                cap = source.captions(name)
                if cap is not None:
                    sc = cap.stat()
                    parts[f"{name}_captions"] = [str(cap.resolve()), sc.st_size, sc.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _build_all(source: _Source, resolution: int, progress: bool) -> dict[str, object]:
    train = read_coco(source.train[0])
    out: dict[str, object] = {
        "train": _build(
            train, source.train[1], train.categories, resolution, progress, source.captions("train")
        )
    }
    for name, pair in (("val", source.val), ("test", source.test)):
        if pair is None:
            continue
        other = read_coco(pair[0])
        if other.categories != train.categories:
            raise DataError(
                f"{other.path}: field 'categories' differs from {train.path}'s; "
                "every split needs the same categories"
            )
        out[name] = _build(other, pair[1], train.categories, resolution, progress, source.captions(name))
    return out


def _load_or_build(file: Path, source: _Source, resolution: int, progress: bool) -> dict:
    from compress._safeio import load_state, save_state

    if file.is_file():
        try:
            return load_state(file, what="data cache")
        except RunError:  # a truncated or foreign file: rebuild it
            pass
    state = _build_all(source, resolution, progress)
    file.parent.mkdir(parents=True, exist_ok=True)
    save_state(state, file)  # safetensors + JSON, never a pickle; temp file + rename
    return state


def _split(data: MultiTaskDataset, fraction: float, seed: int, where: str, part: str):
    """(rest, part): ``fraction`` of ``data``'s images, chosen by ``seed``, split off as ``part``."""
    n = len(data)
    if n < 2:
        raise DataError(f"{where}: {n} image(s); splitting off a {part} part needs at least 2")
    n_part = min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return data.subset(np.sort(order[n_part:]).tolist()), data.subset(np.sort(order[:n_part]).tolist())


class Splits(NamedTuple):
    """The three splits of a data spec, and where the test split came from (for run.json and the card)."""

    train: MultiTaskDataset
    val: MultiTaskDataset
    test: MultiTaskDataset
    test_origin: str


def load_splits(
    spec: str | DataSpec = "builtin",
    *,
    resolution: int,
    cache_dir: Path | str | None = None,
    progress: bool = True,
    val_fraction: float = 0.15,
    test_fraction: float = 0.1,
    seed: int = 0,
    scenes: SceneConfig | None = None,
) -> Splits:
    """Load the train, val and test splits of ``spec`` at ``resolution`` px, building the cache once.

    Args:
        spec: ``"builtin"`` or ``"coco:PATH"`` (see the module docstring), or a parsed ``DataSpec``.
        resolution: image side in pixels (16..2048); images are squashed (no crop), boxes scaled, masks
            resized nearest.
        cache_dir: where generated scenes and tensor caches live (default :func:`default_cache_dir`).
        progress: show progress bars on stderr while generating or caching.
        val_fraction: share of images split off for validation, only when PATH is a single JSON.
        test_fraction: share of the training images carved off for test when there is no test file.
        seed: seed of those splits.
        scenes: the scene config for ``"builtin"`` (default ``SceneConfig()``); ignored for ``coco:``.
    """
    parsed = parse_data_spec(spec)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 16 <= resolution <= 2048:
        raise ConfigError(f"resolution must be an integer in 16..2048, but got {resolution!r}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} must be in (0, 1), but got {value!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    config = None
    if parsed.kind == "builtin":
        config = scenes if scenes is not None else SceneConfig()
        source = _resolve(_ensure_builtin(cache, config, progress))
    else:
        assert parsed.path is not None  # parse_data_spec sets it for "coco"
        source = _resolve(parsed.path)
    key = _cache_key(parsed, source, resolution, config)
    state = _load_or_build(
        cache / f"{parsed.kind}-{resolution}px-{key}.safetensors", source, resolution, progress
    )
    where = str(source.train[0])
    train = MultiTaskDataset.from_state(state["train"])
    if "val" in state:
        val = MultiTaskDataset.from_state(state["val"])
    else:
        train, val = _split(train, val_fraction, seed, where, "validation")
    if "test" in state:
        assert source.test is not None
        return Splits(train, val, MultiTaskDataset.from_state(state["test"]), f"{source.test[0].name}")
    train, test = _split(train, test_fraction, seed + 1, where, "test")
    origin = (
        f"{len(test)} images carved from train ({test_fraction:g} of it, seed {seed + 1}); never trained on"
    )
    return Splits(train, val, test, origin)


def load_data(
    spec: str | DataSpec = "builtin",
    *,
    resolution: int,
    cache_dir: Path | str | None = None,
    progress: bool = True,
    val_fraction: float = 0.15,
    seed: int = 0,
    scenes: SceneConfig | None = None,
) -> tuple[MultiTaskDataset, MultiTaskDataset]:
    """The (train, val) splits of :func:`load_splits` (train without the test part carved from it)."""
    s = load_splits(
        spec,
        resolution=resolution,
        cache_dir=cache_dir,
        progress=progress,
        val_fraction=val_fraction,
        seed=seed,
        scenes=scenes,
    )
    return s.train, s.val
