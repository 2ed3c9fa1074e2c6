"""Fixtures of the profiles tests: a real (small) measured host profile, measured once per session."""

from __future__ import annotations

import pytest

import profiles
from profiles import _host


@pytest.fixture(scope="session")
def host_toml(tmp_path_factory):
    """A real (small) measured host profile: 10 single layers, 3 random MobileNetV3-style nets, 2 random
    MobileNet-like CNNs, the reference net."""
    every = _host.micro_benchmarks
    patch = pytest.MonkeyPatch()
    patch.setattr(_host, "micro_benchmarks", lambda: every()[:10])
    try:
        out = tmp_path_factory.mktemp("host") / "host.toml"
        return profiles.measure_host(out=out, n_nets=3, n_cnns=2, rounds=1, progress=False)
    finally:
        patch.undo()
