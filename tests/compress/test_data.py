"""Tests of compress.data: the scene generator, the COCO loader and its cache, MultiTaskDataset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import compress.data.coco as coco_mod
from compress.data import (
    CATEGORY_NAMES,
    DataSpec,
    MultiTaskDataset,
    SceneConfig,
    generate_scenes,
    load_data,
    load_splits,
    parse_data_spec,
)
from compress.errors import ConfigError, DataError, DataWarning

TINY = SceneConfig(num_train=24, num_val=8, num_test=6, image_size=64, seed=1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scenes(tmp_path_factory.mktemp("scenes"), TINY, progress=False)


def _doc(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- generator -------------------------------------------------------------------------------------------


def test_generator_is_deterministic(scenes: Path, tmp_path: Path) -> None:
    again = generate_scenes(tmp_path / "again", TINY, progress=False)
    assert _files(again) == _files(scenes)
    other = generate_scenes(tmp_path / "other", SceneConfig(num_train=4, num_val=1, image_size=64, seed=2),
                            progress=False)  # fmt: skip
    assert (other / "train" / "000000.png").read_bytes() != (scenes / "train" / "000000.png").read_bytes()
    assert _doc(other)["annotations"][:3] != _doc(scenes)["annotations"][:3]


def test_parallel_generation_writes_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers draw chunks of images in parallel; every file equals the one process's."""
    import compress.data._pool as pool_mod

    cfg = SceneConfig(num_train=2 * pool_mod.CHUNK + 3, num_val=2, num_test=2, image_size=48)
    monkeypatch.setattr(pool_mod.os, "cpu_count", lambda: 2)
    pooled = generate_scenes(tmp_path / "pooled", cfg, progress=False)
    monkeypatch.setattr(pool_mod.os, "cpu_count", lambda: 1)
    serial = generate_scenes(tmp_path / "serial", cfg, progress=False)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert len(files) == cfg.num_train + cfg.num_val + cfg.num_test + 6
    assert files == sorted(p.relative_to(pooled) for p in pooled.rglob("*") if p.is_file())
    for f in files:
        assert (serial / f).read_bytes() == (pooled / f).read_bytes(), f
    # the cache is read in chunks too: same tensors, and a worker's warning reaches the caller
    rgba = pooled / "train" / f"{pool_mod.CHUNK + 1:06d}.png"
    Image.open(rgba).convert("RGBA").save(rgba)
    monkeypatch.setattr(pool_mod.os, "cpu_count", lambda: 2)
    with pytest.warns(DataWarning, match="alpha channel"):
        a, _ = load_data(f"coco:{pooled}", resolution=32, cache_dir=tmp_path / "ca", progress=False)
    monkeypatch.setattr(pool_mod.os, "cpu_count", lambda: 1)
    with pytest.warns(DataWarning, match="alpha channel"):
        b, _ = load_data(f"coco:{pooled}", resolution=32, cache_dir=tmp_path / "cb", progress=False)
    for name in ("images", "tags", "boxes", "box_labels", "saliency"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # a worker's DataError reaches the caller as raised (the CLI turns it into its one-line error)
    bad = pooled / "train" / f"{2 * pool_mod.CHUNK:06d}.png"
    bad.write_bytes(b"not a png")
    monkeypatch.setattr(pool_mod.os, "cpu_count", lambda: 2)
    with pytest.raises(DataError, match=f"image {2 * pool_mod.CHUNK + 1}: field 'file_name': cannot read"), \
            pytest.warns(DataWarning, match="alpha channel"):  # fmt: skip
        load_data(f"coco:{pooled}", resolution=32, cache_dir=tmp_path / "cc", progress=False)


def test_generator_layout_and_categories(scenes: Path) -> None:
    doc = _doc(scenes)
    assert [c["name"] for c in doc["categories"]] == list(CATEGORY_NAMES)
    assert len(CATEGORY_NAMES) >= 12
    assert len(doc["images"]) == 24 and len(_doc(scenes, "val")["images"]) == 8
    assert {a["category_id"] for a in doc["annotations"]} == {c["id"] for c in doc["categories"]}
    per_image = np.bincount([a["image_id"] for a in doc["annotations"]], minlength=25)[1:]
    assert per_image.min() >= 1 and per_image.max() <= TINY.max_objects and per_image.max() >= 3
    for img in doc["images"]:
        with Image.open(scenes / "train" / img["file_name"]) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_masks_match_boxes_and_do_not_overlap(scenes: Path) -> None:
    doc = _doc(scenes)
    by_image: dict[int, np.ndarray] = {}
    for ann in doc["annotations"]:
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        assert mask_utils.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
        assert ann["area"] == mask.sum() > 0 and ann["iscrowd"] == 0
        seen = by_image.setdefault(ann["image_id"], np.zeros_like(mask))
        assert not (seen & mask).any(), "occluded pixels must not belong to two objects"
        seen |= mask
    assert 0.05 < np.mean([m.mean() for m in by_image.values()]) < 0.8


def test_scene_config_validation() -> None:
    with pytest.raises(ConfigError, match="SceneConfig.num_train must be >= 1, but got 0"):
        SceneConfig(num_train=0)
    with pytest.raises(ConfigError, match="SceneConfig.max_objects"):
        SceneConfig(max_objects=20)
    with pytest.raises(ConfigError, match="SceneConfig.image_size must be int"):
        SceneConfig(image_size=96.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_scale \\* image_size"):
        SceneConfig(image_size=32, min_scale=0.1)
    assert SceneConfig().config_hash() == SceneConfig().config_hash() != SceneConfig(seed=1).config_hash()


# --- loader ----------------------------------------------------------------------------------------------


def test_parse_data_spec() -> None:
    assert parse_data_spec("builtin") == DataSpec("builtin")
    assert parse_data_spec("coco:/x/y") == DataSpec("coco", Path("/x/y"))
    assert str(parse_data_spec("coco:/x/y")) == "coco:/x/y"
    for bad in ("x", "coco:", "imagenet:/x"):
        with pytest.raises(ConfigError, match=f"unknown data spec '{bad}'; use 'builtin' or 'coco:PATH'"):
            parse_data_spec(bad)


def test_load_round_trip(scenes: Path, tmp_path: Path) -> None:
    train, val = load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path, progress=False)
    assert (len(train), len(val), train.resolution, train.categories) == (24, 8, 32, list(CATEGORY_NAMES))
    doc = _doc(scenes)
    for i, img in enumerate(doc["images"]):
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        assert train.tags[i].nonzero().flatten().tolist() == sorted({a["category_id"] - 1 for a in anns})
        k = len(anns)
        assert train.box_labels[i, :k].tolist() == [a["category_id"] - 1 for a in anns]
        assert (train.box_labels[i, k:] == -1).all()
        x, y, w, h = anns[0]["bbox"]
        assert torch.allclose(train.boxes[i, 0], torch.tensor([x, y, x + w, y + h]) / 2)
        union = np.zeros((64, 64), dtype=bool)
        for a in anns:
            union |= mask_utils.decode(a["segmentation"]).astype(bool)
        assert torch.equal(
            train.saliency[i, 0].bool(), torch.from_numpy(union[1::2, 1::2])
        )  # nearest: pixel centres
        with Image.open(scenes / "train" / img["file_name"]) as im:
            want = np.asarray(im.resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
        assert torch.equal(train.images[i], torch.from_numpy(want.copy()))


def test_coco_2017_layout(scenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    shutil.copytree(scenes / "annotations", root / "annotations")
    shutil.copytree(scenes / "train", root / "train2017")
    shutil.copytree(scenes / "val", root / "val2017")
    shutil.copytree(scenes / "test", root / "test2017")
    train, val = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    ref, ref_val = load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(train.images, ref.images) and torch.equal(val.boxes, ref_val.boxes)


def test_builtin_layout_has_a_test_split(scenes: Path, tmp_path: Path) -> None:
    s = load_splits(f"coco:{scenes}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert (len(s.train), len(s.val), len(s.test)) == (24, 8, 6)
    assert s.test_origin == "instances_test.json"
    assert len(_doc(scenes, "test")["images"]) == 6


def test_test_split_is_carved_from_train_without_a_test_file(scenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    shutil.copytree(scenes, root)
    (root / "annotations" / "instances_test.json").unlink()
    s = load_splits(
        f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False, test_fraction=0.25
    )
    again = load_splits(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False,
                        test_fraction=0.25)  # fmt: skip
    assert (len(s.train), len(s.val), len(s.test)) == (18, 8, 6)
    assert "carved from train" in s.test_origin and "seed 1" in s.test_origin
    assert torch.equal(s.test.images, again.test.images)
    rows = torch.cat([s.train.images, s.test.images]).flatten(1)
    assert len({tuple(r.tolist()) for r in rows}) == 24  # disjoint, nothing lost
    train, val = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert len(train) == 22  # load_data never hands out the carved test images for training (0.1 of 24)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_splits(
            f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False, test_fraction=1.5
        )


def test_single_json_split_is_deterministic(scenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "flat"
    shutil.copytree(scenes / "train", root)
    shutil.copy(scenes / "annotations" / "instances_train.json", root / "instances.json")
    spec = f"coco:{root / 'instances.json'}"

    def load(seed: int) -> tuple[MultiTaskDataset, MultiTaskDataset]:
        return load_data(spec, resolution=32, cache_dir=tmp_path / "c", progress=False, val_fraction=0.25,
                         seed=seed)  # fmt: skip

    (train, val), (train2, val2), (_, val3) = load(0), load(0), load(5)
    assert (len(train), len(val)) == (16, 6)  # 18 after validation, 2 of them carved off for test
    assert torch.equal(val.images, val2.images) and torch.equal(train.tags, train2.tags)
    assert not torch.equal(val.images, val3.images)
    everything = torch.cat([train.images, val.images]).flatten(1)
    assert len({tuple(row.tolist()) for row in everything}) == 22  # disjoint (the test part aside)


def test_cache_is_reused_and_invalidated(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    shutil.copytree(scenes, root)
    first, _ = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert len(list((tmp_path / "c").glob("coco-32px-*.safetensors"))) == 1

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache was not reused")

    with monkeypatch.context() as m:
        m.setattr(coco_mod, "_build", boom)
        again, _ = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(first.images, again.images)
    ann = root / "annotations" / "instances_train.json"
    os.utime(ann, ns=(ann.stat().st_atime_ns, ann.stat().st_mtime_ns + 10**9))
    load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert len(list((tmp_path / "c").glob("coco-32px-*.safetensors"))) == 2


def test_builtin_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SceneConfig(num_train=6, num_val=3, image_size=48, seed=3)
    train, val = load_data("builtin", resolution=32, cache_dir=tmp_path, progress=False, scenes=cfg)
    assert (len(train), len(val)) == (6, 3)
    assert (tmp_path / f"scenes-{cfg.config_hash()}" / "DONE").is_file()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated")

    monkeypatch.setattr(coco_mod, "generate_scenes", boom)
    monkeypatch.setattr(coco_mod, "_build", boom)
    again, _ = load_data("builtin", resolution=32, cache_dir=tmp_path, progress=False, scenes=cfg)
    assert torch.equal(again.saliency, train.saliency)


def test_load_data_argument_errors(scenes: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resolution must be an integer in 16..2048, but got 8"):
        load_data(f"coco:{scenes}", resolution=8, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="val_fraction must be in \\(0, 1\\), but got 1.5"):
        load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path, val_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown data spec"):
        load_data("imagenet", resolution=32, cache_dir=tmp_path)


# --- malformed input ----------------------------------------------------------------------------------------


def _tiny_coco(root: Path) -> dict:
    """Three 20x16 images beside instances.json (returned as a dict for the caller to break and write)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray(np.full((16, 20, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.png")
    return {
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": 20, "height": 16} for i in range(3)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "bbox": [2, 3, 5, 4], "iscrowd": 0,
             "segmentation": [[2, 3, 7, 3, 7, 7, 2, 7]]},
            {"id": 8, "image_id": 2, "category_id": 2, "bbox": [0, 0, 20, 16], "iscrowd": 1,
             "segmentation": {"size": [16, 20], "counts": [0, 320]}},
        ],
    }  # fmt: skip


def _load_doc(tmp_path: Path, doc: dict | str) -> tuple[MultiTaskDataset, MultiTaskDataset]:
    path = tmp_path / "d" / "instances.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return load_data(f"coco:{path}", resolution=16, cache_dir=tmp_path / "c", progress=False)


def test_tiny_coco_polygons_rle_and_crowd(tmp_path: Path) -> None:
    _load_doc(tmp_path, _tiny_coco(tmp_path / "d"))  # writes the file
    s = load_splits(f"coco:{tmp_path / 'd' / 'instances.json'}", resolution=16, cache_dir=tmp_path / "c",
                    progress=False)  # fmt: skip
    parts = [s.train, s.val, s.test]
    assert sorted(len(p) for p in parts) == [1, 1, 1]  # val split off, then test carved from train
    data = MultiTaskDataset(
        **{k: torch.cat([getattr(p, k) for p in parts]) for k in ("images", "tags", "saliency")},
        boxes=torch.cat([p.boxes for p in parts]), box_labels=torch.cat([p.box_labels for p in parts]),
        categories=s.train.categories,
    )  # fmt: skip
    assert data.categories == ["a", "b"] and data.max_boxes == 1
    assert sorted(data.tags.sum(0).tolist()) == [1.0, 1.0]  # crowd counts for tags
    assert (data.box_labels >= 0).sum() == 1  # ... but gives no box
    assert sorted(data.saliency.sum((1, 2, 3)).tolist())[-1] == 16 * 16  # RLE covering the image


def _break(tmp_path: Path, edit) -> dict:  # noqa: ANN001
    doc = _tiny_coco(tmp_path / "d")
    edit(doc)
    return doc


MALFORMED = [
    ("missing annotations", lambda d: d.pop("annotations"), "missing list field 'annotations'"),
    ("missing images", lambda d: d.pop("images"), "missing list field 'images'"),
    ("missing categories", lambda d: d.pop("categories"), "missing list field 'categories'"),
    ("no bbox", lambda d: d["annotations"][0].pop("bbox"), "annotation 7: missing field 'bbox'"),
    ("no image_id", lambda d: d["annotations"][0].pop("image_id"), "annotation 7: missing field 'image_id'"),
    ("unknown image", lambda d: d["annotations"][1].update(image_id=99),
     "annotation 8: field 'image_id' 99 is not in images"),
    ("box outside", lambda d: d["annotations"][0].update(bbox=[15, 3, 10, 4]),
     "annotation 7 \\(image 1\\): field 'bbox' \\[15, 3, 10, 4\\] lies outside the 20x16 image"),
    ("box size", lambda d: d["annotations"][0].update(bbox=[2, 3, 0, 4]),
     "annotation 7: field 'bbox' \\[2, 3, 0, 4\\] must have positive width and height"),
    ("unknown category", lambda d: d["annotations"][0].update(category_id=42),
     "annotation 7: field 'category_id' 42 is not in categories"),
    ("missing file", lambda d: d["images"][0].update(file_name="gone.png"),
     "image 1: field 'file_name': no file"),
    ("bad segmentation", lambda d: d["annotations"][0].update(segmentation=[[1, 2]]),
     "annotation 7 \\(image 1\\): field 'segmentation' cannot be decoded"),
    ("size mismatch", lambda d: d["images"][0].update(width=30),
     "image 1: field 'width' is 30, but .*0.png has 20"),
    ("image id type", lambda d: d["images"][0].update(id="one"),
     "images\\[0\\]: field 'id' must be an integer"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_names_the_field(tmp_path: Path, name: str, edit, message: str) -> None:  # noqa: ANN001
    doc = _break(tmp_path, edit)
    with pytest.raises(DataError, match=message) as info:
        _load_doc(tmp_path, doc)
    assert "instances.json" in str(info.value)


def test_unreadable_image_and_bad_json(tmp_path: Path) -> None:
    doc = _tiny_coco(tmp_path / "d")
    (tmp_path / "d" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="image 2: field 'file_name': cannot read .*1.png"):
        _load_doc(tmp_path, doc)
    with pytest.raises(DataError, match="instances.json: not valid JSON"):
        _load_doc(tmp_path, "{oops")


def test_split_categories_must_agree(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        doc = _tiny_coco(root / split)
        if split == "val":
            doc["categories"][1]["name"] = "renamed"
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    with pytest.raises(
        DataError, match="instances_val.json: field 'categories' differs from .*instances_train"
    ):
        load_data(f"coco:{root}", resolution=16, cache_dir=tmp_path / "c", progress=False)


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(f"coco:{tmp_path / 'nope'}", resolution=16, cache_dir=tmp_path)
    (tmp_path / "ds" / "annotations").mkdir(parents=True)
    (tmp_path / "ds" / "annotations" / "instances_train.json").write_text("{}")
    with pytest.raises(DataError, match="missing annotations/instances_val.json"):
        load_data(f"coco:{tmp_path / 'ds'}", resolution=16, cache_dir=tmp_path)
    (tmp_path / "ds" / "annotations" / "instances_val.json").write_text("{}")
    with pytest.raises(DataError, match="no image folder train/ or train2017/"):
        load_data(f"coco:{tmp_path / 'ds'}", resolution=16, cache_dir=tmp_path)


# --- MultiTaskDataset -------------------------------------------------------------------------------------


def test_dataset_access(scenes: Path, tmp_path: Path) -> None:
    train, _ = load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path, progress=False)
    item = train[3]
    assert item["images"].shape == (3, 32, 32) and item["box_labels"].shape == (train.max_boxes,)
    batch = train.batch([3, 0])
    assert batch["images"].dtype == torch.float32 and 0 <= batch["images"].min() <= batch["images"].max() <= 1
    assert torch.equal(batch["images"][0], item["images"].float() / 255)
    assert set(batch["saliency"].unique().tolist()) <= {0.0, 1.0}
    sub = train.subset([5, 7])
    assert len(sub) == 2 and torch.equal(sub.tags[1], train.tags[7]) and sub.categories == train.categories
    with pytest.raises(IndexError):
        train[24]
    with pytest.raises(DataError, match="MultiTaskDataset.tags must be torch.float32"):
        MultiTaskDataset(**{**train.state(), "tags": train.tags.long()})  # type: ignore[arg-type]
