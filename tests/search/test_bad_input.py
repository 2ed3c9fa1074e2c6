"""Every bad input ends in one line on stderr and a non-zero exit code, never a traceback.

Each case goes through ``compress.cli.main`` in-process, as a user's command would. Hypothesis checks that
the unit parsers and ``ArchSpec``'s JSON form either work or fail with a one-line ``ConfigError``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.cli import main
from compress.errors import ConfigError
from compress.model.spec import ACTIVATIONS, TASKS, ArchSpec, HeadSpec, StageSpec
from search.units import parse_duration_ms, parse_size_mb

SPACE = "resolutions: [96]\nwidths: [0.35]\ndepths: [1]\nkernels: [3]\nexpands: [3]\nprune: [0.0]\nquant: [fp16]\n"


def _one_line_error(capsys, args: list[str], *, code: int, match: str) -> str:
    """Run ``compress ARGS``; check the exit code and that stderr is exactly one error line with ``match``."""
    got = main(args)
    captured = capsys.readouterr()
    err = captured.err
    assert got == code, err
    assert "Traceback" not in err and "Traceback" not in captured.out
    assert err.count("\n") == 1 and err.startswith("compress: error: "), err
    assert match in err, err
    return err


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    """A small valid COCO folder (generated scenes) to break in different ways."""
    from compress.data import SceneConfig, generate_scenes

    root = tmp_path_factory.mktemp("coco")
    return Path(
        generate_scenes(root / "ok", SceneConfig(num_train=24, num_val=8, image_size=64), progress=False)
    )


def _broken_copy(coco: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "coco"
    shutil.copytree(coco, out)
    ann = out / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    edit(data)
    ann.write_text(json.dumps(data))
    return out


def _search(tmp_path: Path, *args: str) -> list[str]:
    return ["search", *args, "--out", str(tmp_path / "run")]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Data caches go to the test's folder, not the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- one test per bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "match"), [("10 parsecs", "unknown unit 'parsecs'"), ("-3ms", "must be positive")]
)
def test_malformed_budget(capsys, tmp_path, budget, match):
    _one_line_error(capsys, ["search", f"--budget={budget}", "--out", str(tmp_path)], code=2, match=match)


@pytest.mark.parametrize("confidence", ["0.99", "0.2"])
def test_confidence_outside_the_intervals(capsys, tmp_path, confidence):
    _one_line_error(
        capsys,
        ["search", f"--confidence={confidence}", "--out", str(tmp_path)],
        code=2,
        match="--confidence must lie in [0.5, 0.95]",
    )


def test_unknown_device(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        ["search", "--devices", "a15,a99", "--out", str(tmp_path)],
        code=2,
        match="unknown device 'a99'",
    )
    assert "a11" in err and "compress profile list" in err  # says what is known and where to look


def test_unknown_device_is_a_compress_error_for_python_callers(tmp_path):
    """``except CompressError`` around ``run_search`` is the one root a caller needs: a profile error is one."""
    import dataclasses

    from compress.errors import CompressError, ConfigError
    from search import SearchConfig, run_search

    cfg = dataclasses.replace(SearchConfig(), devices=("a15", "a99"), out=tmp_path / "run")
    with pytest.raises(CompressError, match="unknown device 'a99'") as info:
        run_search(cfg, progress=False)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_missing_data_directory(capsys, tmp_path):
    _one_line_error(
        capsys, _search(tmp_path, "--data", "coco:/nope"), code=2, match="coco:/nope: no such file"
    )


def test_coco_file_with_missing_fields(capsys, tmp_path, coco):
    def drop(data):
        del data["annotations"][0]["image_id"]

    broken = _broken_copy(coco, tmp_path, drop)
    _one_line_error(
        capsys, _search(tmp_path, "--data", f"coco:{broken}"), code=2, match="missing field 'image_id'"
    )


def test_coco_file_without_categories(capsys, tmp_path, coco):
    broken = _broken_copy(coco, tmp_path, lambda data: data.pop("categories"))
    _one_line_error(capsys, _search(tmp_path, "--data", f"coco:{broken}"), code=2, match="'categories'")


def test_coco_boxes_outside_the_image(capsys, tmp_path, coco):
    def move(data):
        data["annotations"][0]["bbox"] = [500, 500, 20, 20]

    broken = _broken_copy(coco, tmp_path, move)
    _one_line_error(capsys, _search(tmp_path, "--data", f"coco:{broken}"), code=2, match="lies outside the")


def test_corrupt_profile_file(capsys, tmp_path):
    bad = tmp_path / "phone.toml"
    bad.write_text("name = 'phone\n[[[")
    _one_line_error(capsys, ["profile", "show", str(bad)], code=2, match="not valid TOML")
    _one_line_error(
        capsys,
        ["search", "--devices", str(bad), "--out", str(tmp_path / "r")],
        code=2,
        match="not valid TOML",
    )


def test_unreachable_storage_fails_fast_without_the_password(capsys, tmp_path, coco):
    start = time.perf_counter()
    err = _one_line_error(
        capsys,
        _search(tmp_path, "--data", f"coco:{coco}", "--storage", "postgresql://u:s3cret@127.0.0.1:1/x"),
        code=1,
        match="cannot open the storage postgresql://u:***@127.0.0.1:1/x",
    )
    assert "s3cret" not in err
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "run" / "supernet.safetensors").exists()  # failed before any training


@pytest.mark.slow
def test_budget_no_candidate_can_meet(capsys, tmp_path, coco):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    args = ["--budget", "1us", "--devices", "a15", "--data", f"coco:{coco}", "--space", str(space)]
    args += ["--trials", "2", "--train-steps", "1", "--eval-images", "8", "--no-progress"]
    _one_line_error(capsys, _search(tmp_path, *args), code=1, match="no candidate meets the 0.001 ms budget")
    assert (tmp_path / "run" / "trials.csv").is_file()  # the study is kept: rerun with a larger budget


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_run_directory_that_is_not_one(capsys, tmp_path, kind):
    target = tmp_path / "not-a-run"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("hello")
    _one_line_error(capsys, ["report", str(target)], code=1, match=str(target))


# -- property tests ---------------------------------------------------------------------------------------------
_SIZE_UNITS = {
    "B": 1e-6,
    "KB": 1e-3,
    "MB": 1.0,
    "GB": 1e3,
    "KiB": 1024 / 1e6,
    "MiB": 1.048576,
    "GiB": 1024**3 / 1e6,
}


@given(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), st.sampled_from(sorted(_SIZE_UNITS)))
def test_size_round_trip(value, unit):
    assert parse_size_mb(f"{value!r} {unit}") == pytest.approx(value * _SIZE_UNITS[unit])


@given(
    st.one_of(
        st.text(max_size=16), st.from_regex(r"\s*[-+]?[0-9.eE]{0,6}\s*[a-zA-Zµ]{0,4}\s*", fullmatch=True)
    )
)
def test_any_text_is_a_duration_and_a_size_or_one_config_error(text):
    for parse in (parse_duration_ms, parse_size_mb):
        try:
            value = parse(text)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        else:
            assert value > 0 and value == value and value != float("inf")


@st.composite
def arch_specs(draw) -> ArchSpec:
    n = draw(st.integers(1, 6))
    stages = []
    for _ in range(n):
        depth = draw(st.integers(1, 4))
        expand = draw(
            st.lists(
                st.one_of(
                    st.sampled_from([1.0, 2.3, 2.5, 3.0, 4.0, 6.0]), st.floats(0.5, 8.0, allow_nan=False)
                ),
                min_size=depth,
                max_size=depth,
            )
        )
        stages.append(
            StageSpec(
                width=draw(st.integers(8, 512)),
                depth=depth,
                kernel=draw(st.sampled_from([3, 5, 7])),
                expand=tuple(expand),
                stride=draw(st.sampled_from([1, 2])),
                se=draw(st.booleans()),
                act=draw(st.sampled_from(ACTIVATIONS)),
            )
        )
    tasks = draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=3, unique=True))
    heads = []
    for task in tasks:
        size = 2 if task == "tagging" else 1
        channels = tuple(draw(st.lists(st.integers(8, 2048), min_size=size, max_size=size)))
        heads.append(HeadSpec(task=task, branch=draw(st.integers(0, n - 1)), channels=channels))
    return ArchSpec(
        resolution=32 * draw(st.integers(1, 32)),
        stem=draw(st.integers(8, 64)),
        stages=tuple(stages),
        heads=tuple(heads),
        num_classes=draw(st.integers(1, 1000)),
        stem_act=draw(st.sampled_from(ACTIVATIONS)),
    )


@given(arch_specs())
def test_archspec_json_round_trip(spec):
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec and again.to_json() == text and again.short_hash() == spec.short_hash()
    assert again.describe() == spec.describe()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 2000) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=200)
@given(arch_specs(), st.data())
def test_archspec_json_with_a_bad_field_is_one_config_error(spec, data):
    """Replace one field anywhere in a valid spec's JSON with arbitrary JSON: a valid spec or a ConfigError."""
    doc = spec.to_dict()
    where = data.draw(
        st.sampled_from(
            [("", k) for k in doc if k not in ("stages", "heads")]
            + [("stages", i, k) for i in range(len(doc["stages"])) for k in doc["stages"][i]]
            + [("heads", i, k) for i in range(len(doc["heads"])) for k in doc["heads"][i]]
        )
    )
    value = data.draw(_JSON)
    target = doc if where[0] == "" else doc[where[0]][where[1]]
    target[where[-1]] = value
    try:
        parsed = ArchSpec.from_json(json.dumps(doc))
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert ArchSpec.from_json(parsed.to_json()) == parsed
