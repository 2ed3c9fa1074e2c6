"""Tests of the scene captions: what the generator writes, how ``coco:PATH`` reads them, the data set's field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compress.data import SceneConfig, generate_scenes, load_data
from compress.data.captions import CAPTIONS_PER_IMAGE, SceneObject, caption_scene, read_captions
from compress.data.scenes import CATEGORY_NAMES
from compress.errors import DataError

TINY = SceneConfig(num_train=24, num_val=8, image_size=64, seed=3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scenes(tmp_path_factory.mktemp("captioned"), TINY, progress=False)


def _captions(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"captions_{split}.json").read_text())


def _instances(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_generator_writes_coco_captions_naming_what_was_drawn(scenes: Path) -> None:
    for split, count in (("train", 24), ("val", 8)):
        doc, inst = _captions(scenes, split), _instances(scenes, split)
        assert doc["images"] == inst["images"]
        per_image: dict[int, list[str]] = {}
        for ann in doc["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann["caption"])
        assert sorted(per_image) == [img["id"] for img in inst["images"]] and len(per_image) == count
        names = {c["id"]: c["name"] for c in inst["categories"]}
        for image_id, texts in per_image.items():
            assert len(texts) == CAPTIONS_PER_IMAGE
            drawn = {names[a["category_id"]] for a in inst["annotations"] if a["image_id"] == image_id}
            for text in texts:  # every caption names at least one drawn shape and no shape that is absent
                words = set(text.replace(",", " ").split())
                said = {n for n in CATEGORY_NAMES if n in words or n + "s" in words or n + "es" in words}
                assert said and said <= drawn, (text, drawn)
            assert len(set(texts)) > 1  # phrasings vary


def test_captions_are_seeded_and_leave_the_images_unchanged(scenes: Path, tmp_path: Path) -> None:
    again = generate_scenes(tmp_path / "again", TINY, progress=False)
    assert _captions(again) == _captions(scenes)
    other = generate_scenes(tmp_path / "other", SceneConfig(num_train=24, num_val=8, image_size=64, seed=4),
                            progress=False)  # fmt: skip
    assert _captions(other)["annotations"] != _captions(scenes)["annotations"]


def test_caption_styles_say_counts_positions_relations_and_occlusion() -> None:
    objects = [
        SceneObject("triangle", 240.0, "checker", (0.8, 0.5), 0.5, occluder=2),
        SceneObject("disc", 0.0, "stripes", (0.1, 0.1), 1.0),
        SceneObject("disc", 0.0, "stripes", (0.2, 0.9), 1.0),
    ]
    texts = caption_scene(objects, np.random.default_rng(0), count=40)
    joined = " | ".join(texts)
    assert "two" in joined and "discs" in joined  # counts
    assert "in the top left" in joined  # rough position of the first disc
    assert "partly hidden behind" in joined and "blue" in joined and "red" in joined
    assert any(rel in joined for rel in ("left of", "right of", "above", "below"))
    assert caption_scene(objects, np.random.default_rng(0), count=40) == texts  # seeded


def test_coco_spec_reads_captions_per_image_and_subsets_keep_them(scenes: Path, tmp_path: Path) -> None:
    train, val = load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path, progress=False)
    doc = _captions(scenes)
    first = [a["caption"] for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]]
    assert train.captions is not None and len(train.captions) == 24 and train.captions[0] == first
    assert val.captions is not None and len(val.captions) == 8
    sub = train.subset([3, 1])
    assert sub.captions == [train.captions[3], train.captions[1]]
    again, _ = load_data(f"coco:{scenes}", resolution=32, cache_dir=tmp_path, progress=False)  # from cache
    assert again.captions == train.captions


def test_data_without_caption_files_has_none_and_adding_them_rebuilds_the_cache(
    scenes: Path, tmp_path: Path
) -> None:
    root = tmp_path / "plain"
    shutil.copytree(scenes, root)
    for split in ("train", "val"):
        (root / "annotations" / f"captions_{split}.json").unlink()
    train, _ = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert train.captions is None
    shutil.copy(scenes / "annotations" / "captions_train.json", root / "annotations")
    shutil.copy(scenes / "annotations" / "captions_val.json", root / "annotations")
    train, _ = load_data(f"coco:{root}", resolution=32, cache_dir=tmp_path / "c", progress=False)
    assert train.captions is not None and len(train.captions[0]) == CAPTIONS_PER_IMAGE


def test_single_json_spec_reads_captions_json_beside_it(scenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "single"
    shutil.copytree(scenes / "train", root)
    shutil.copy(scenes / "annotations" / "instances_train.json", root / "instances.json")
    shutil.copy(scenes / "annotations" / "captions_train.json", root / "captions.json")
    train, val = load_data(
        f"coco:{root / 'instances.json'}", resolution=32, cache_dir=tmp_path, progress=False
    )
    assert train.captions is not None and val.captions is not None
    assert len(train.captions) + len(val.captions) == 22  # 2 of the 24 carved off for the test split


def test_builtin_cache_key_is_not_the_one_of_scenes_without_captions() -> None:
    # caches written before captions existed (generator version 1) must not be reused
    cfg = SceneConfig()
    before = json.dumps({"version": 1, **dataclasses.asdict(cfg)}, sort_keys=True)
    assert cfg.config_hash() != hashlib.sha256(before.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("annotation", "match"),
    [
        ({"image_id": 99, "caption": "a disc"}, "field 'image_id' 99 is not an image"),
        ({"image_id": 1, "caption": 5}, "field 'caption' must be a string"),
        ({"image_id": "1", "caption": "a disc"}, "field 'image_id' must be an integer"),
    ],
)
def test_bad_caption_files_name_the_field(tmp_path: Path, annotation: dict, match: str) -> None:
    path = tmp_path / "captions_train.json"
    path.write_text(json.dumps({"annotations": [annotation]}))
    with pytest.raises(DataError, match=match):
        read_captions(path, [1, 2])
    path.write_text("[]")
    with pytest.raises(DataError, match="missing list field 'annotations'"):
        read_captions(path, [1])
