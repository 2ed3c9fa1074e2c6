"""Fixtures for the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A complete run directory ``<tmp>/runs/demo``."""
    return write_run(tmp_path / "runs")
