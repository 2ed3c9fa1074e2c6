"""pyproject.toml declares what the code imports, with ranges that hold (an upper bound on every dependency)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower(): r for r in reqs}


def test_every_dependency_has_a_floor_and_an_upper_bound():
    extras = PROJECT["optional-dependencies"]
    for req in PROJECT["dependencies"] + [r for k, v in extras.items() if k != "dev" for r in v]:
        assert ">=" in req and "<" in req, req


def test_imported_packages_are_declared_and_test_only_ones_are_in_dev():
    deps = _names(PROJECT["dependencies"])
    dev = _names(PROJECT["optional-dependencies"]["dev"])
    for name in ("scipy", "sqlalchemy", "optuna", "safetensors"):
        assert name in deps, name
    assert "onnxruntime" not in deps and "onnxruntime" in dev
    assert "pyarrow" in _names(PROJECT["optional-dependencies"]["parquet"])
    assert re.search(r">=\s*5", deps["optuna"]) and "<6" in deps["optuna"]  # Trial.set_constraint is 5.0
    assert re.search(r">=\s*2\.(6|[7-9]|\d\d)", deps["torch"])  # CVE-2025-32434: weights_only bypass < 2.6


def test_runtime_code_does_not_import_test_only_packages():
    for folder in ("compress", "search", "profiles", "reports"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not re.search(r"^\s*(import|from) onnxruntime", path.read_text(), re.M), path
