"""Random candidates of the default space as plain models: what a host profile is measured on and judged by."""

from __future__ import annotations

import numpy as np

from compress.model.net import MultiTaskNet
from compress.model.space import default_space

__all__ = ["sample_nets"]


def sample_nets(n: int, seed: int = 20260) -> list[tuple[str, MultiTaskNet, tuple[int, ...]]]:
    """``n`` random subnets of the default space as ``(name, model in eval mode, input shape)``."""
    rng, space = np.random.default_rng(seed), default_space()
    out: list[tuple[str, MultiTaskNet, tuple[int, ...]]] = []
    for i in range(n):
        spec = space.sample(rng)
        name = f"search-space #{i} @{spec.resolution}"
        out.append((name, MultiTaskNet(spec).eval(), (1, 3, spec.resolution, spec.resolution)))
    return out
