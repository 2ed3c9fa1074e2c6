"""The hardening table: each bad input ends in one line on stderr, a non-zero exit, no traceback, and nothing
of the user's deleted (a file the user keeps in ``--out`` is still there afterwards).

Runs ``compress.cli.main`` in-process, as ``test_bad_input.py`` does. Images that the toolkit can use after a
change (EXIF rotation, 16-bit, alpha) are converted; the last two with a warning.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compress.cli import main
from compress.errors import DataWarning
from search.config import max_workers

SPACE = "resolutions: [96]\nwidths: [0.35]\ndepths: [1]\nkernels: [3]\nexpands: [3]\nprune: [0.0]\nquant: [fp16]\n"
NOTE = "user notes: keep me"


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    from compress.data import SceneConfig, generate_scenes

    root = tmp_path_factory.mktemp("coco")
    return Path(
        generate_scenes(root / "ok", SceneConfig(num_train=24, num_val=8, image_size=64), progress=False)
    )


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _copy(coco: Path, tmp_path: Path, split: str = "train", edit=None) -> Path:
    out = tmp_path / "coco"
    shutil.copytree(coco, out)
    if edit is not None:
        ann = out / "annotations" / f"instances_{split}.json"
        data = json.loads(ann.read_text())
        edit(data)
        ann.write_text(json.dumps(data))
    return out


def _out(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text(NOTE)
    return out


def _fails(capsys, args: list[str], *, match: str, out: Path | None = None) -> str:
    code = main(args)
    captured = capsys.readouterr()
    err = captured.err
    assert code in (1, 2), err
    assert "Traceback" not in err + captured.out
    assert err.count("\n") == 1 and err.startswith("compress: error: "), err
    assert match in err, err
    if out is not None:
        assert (out / "notes.txt").read_text() == NOTE  # nothing of the user's deleted
        assert not (out / "supernet.safetensors").exists()  # failed before training
    return err


def _search(out: Path, *args: str) -> list[str]:
    return ["search", "--out", str(out), "--no-progress", *args]


# -- options --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1, but got -1"),
        (["--eval-images", "-5"], "--eval-images must be a positive count (0 = all images), but got -5"),
        (["--budget", "1e306h"], "latency budget '1e306h' is out of range"),
        (["--timeout", "1e306h"], "'1e306h' is out of range"),
        (["--workers", "100000"], f"--workers must be between 1 and {max_workers()}"),
        (["--workers", "0"], "--workers must be between 1"),
    ],
)
def test_bad_option(capsys, tmp_path, args, match):
    out = _out(tmp_path)
    _fails(capsys, _search(out, *args), match=match, out=out)


def test_space_file_not_utf8(capsys, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_bytes(b"quant: [fp16]\n# caf\xe9 \xff\xfe\n")
    out = _out(tmp_path)
    _fails(capsys, _search(out, "--space", str(space)), match="is not UTF-8 text", out=out)


# -- the run directory ----------------------------------------------------------------------------------------
def test_out_below_a_file(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text(NOTE)
    _fails(capsys, _search(blocker / "run"), match="Not a directory")
    assert blocker.read_text() == NOTE


def test_out_that_cannot_be_created(capsys, tmp_path, coco):
    _fails(capsys, _search(Path("/proc/compress-run"), "--data", f"coco:{coco}"), match="/proc/compress-run")


def test_full_disk(capsys, tmp_path, coco, monkeypatch):
    import compress.atomic as atomic

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "write_bytes", full)
    out = _out(tmp_path)
    err = _fails(capsys, _search(out, "--data", f"coco:{coco}"), match="No space left on device", out=out)
    assert "run.json" in err and "free some space" in err


def test_pickled_supernet_of_an_older_release(capsys, tmp_path, coco):
    import torch

    out = _out(tmp_path)
    torch.save({"format": 1}, out / "supernet.pt")
    _fails(capsys, _search(out, "--data", f"coco:{coco}"), match="torch pickle written by an older release")
    assert (out / "supernet.pt").exists() and (out / "notes.txt").read_text() == NOTE


def test_second_search_on_a_locked_run_directory(capsys, tmp_path, coco):
    from search._lock import run_lock

    out = _out(tmp_path)
    with run_lock(out):  # as if another `compress search` were running on it
        _fails(capsys, _search(out, "--data", f"coco:{coco}"), match="is in use by another compress search")
    assert (out / "notes.txt").read_text() == NOTE


# -- data -----------------------------------------------------------------------------------------------------
def _first_image(data: dict) -> dict:
    return data["images"][0]


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("a\x00b.png", "contains a NUL byte"),
        ("../../../../etc/hostname", "points outside the image folder"),
        ("/etc/hostname", "points outside the image folder"),
    ],
)
def test_coco_file_name(capsys, tmp_path, coco, name, match):
    broken = _copy(coco, tmp_path, edit=lambda d: _first_image(d).update(file_name=name))
    out = _out(tmp_path)
    _fails(capsys, _search(out, "--data", f"coco:{broken}"), match=match, out=out)


def test_decompression_bomb(capsys, tmp_path, coco, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 64 x 64 scenes now count as bombs
    out = _out(tmp_path)
    _fails(capsys, _search(out, "--data", f"coco:{coco}"), match="too large to decode safely", out=out)


@pytest.mark.parametrize("how", ["empty", "unlabeled"])
def test_validation_split_that_cannot_score(capsys, tmp_path, coco, how):
    def edit(data):
        if how == "empty":
            data["images"], data["annotations"] = [], []
        else:
            data["annotations"] = []

    broken = _copy(coco, tmp_path, split="val", edit=edit)
    (broken / "annotations" / "captions_val.json").unlink(missing_ok=True)  # captions of images now gone
    out = _out(tmp_path)
    match = "no images" if how == "empty" else "no labels"
    _fails(capsys, _search(out, "--data", f"coco:{broken}"), match=match, out=out)


# -- images the toolkit converts -----------------------------------------------------------------------------
def _replace_image(root: Path, make) -> None:
    from PIL import Image

    path = sorted((root / "train").glob("*.png"))[0]
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    make(rgb).save(path)


def test_16_bit_and_alpha_images_are_converted_with_a_warning(tmp_path, coco):
    from PIL import Image

    from compress.data import load_data

    def sixteen(rgb):
        gray = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257  # 0..65535
        return Image.fromarray(gray)  # mode I;16

    root = _copy(coco, tmp_path)
    first = sorted((root / "train").glob("*.png"))[0]
    with Image.open(first) as img:
        gray = np.asarray(img.convert("L"), dtype=np.int16)
    _replace_image(root, sixteen)
    with pytest.warns(DataWarning, match="16-bit images are scaled to 8 bits"):
        train, _ = load_data(f"coco:{root}", resolution=64, cache_dir=tmp_path / "c1", progress=False)
    got = train.images[0].numpy().astype(np.int16)  # 64 px images at 64 px: no resampling
    assert np.abs(got - gray[None]).max() <= 1  # scaled back to the 8-bit values, not clipped to white

    root2 = tmp_path / "alpha"
    shutil.copytree(coco, root2)
    _replace_image(root2, lambda rgb: rgb.convert("RGBA"))
    with pytest.warns(DataWarning, match="alpha channel"):
        load_data(f"coco:{root2}", resolution=64, cache_dir=tmp_path / "c2", progress=False)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from compress.data.coco import _to_rgb

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)

    with Image.open(path) as opened:
        shown = _to_rgb(tmp_path / "instances.json", opened)
    assert shown.size == (20, 40)  # portrait, as a photo viewer shows it
    r, g, b = shown.getpixel((10, 2))
    assert b > 200 and r < 60  # the blue strip is now at the top
