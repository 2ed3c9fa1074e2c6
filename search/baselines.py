"""Hand-scaled MobileNetV3 baselines, scored with the same scorer as the search.

The classic way to fit a budget is to scale a published network by hand: a width multiplier and an input
resolution (MobileNet papers). We express MobileNetV3 shapes inside the supernet's space so the baselines get
the same trained weights, BN recalibration, evaluation and cost model as every searched candidate:

- ``mnv3-large``: Large's stage depths (1, 2, 3, 4, 2, 3) and kernels (3, 3, 5, 3, 3, 5); per-stage expansion
  the space's choice nearest to Large's (1, 4, 3, 3, 6, 6).
- ``mnv3-small``: Small's depths (its stages 24:2, 40:3, 48:2, 96:3 on the Large skeleton, with the 80-wide
  stage at depth 1) and kernels (3, 3, 5, 5, 5, 5); expansions (1, 4, 4, 3, 3, 6).

Widths are Large's stage widths times the multiplier (0.35-1.25, nearest available choice); heads at
tagging = the last stage, detection and saliency at their middle branch choice; fp16, no pruning.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from compress.model import ArchSpec, HeadSpec, StageSpec, make_divisible
from search.space import Candidate, SearchSpace

__all__ = ["MULTIPLIERS", "baseline_candidates"]

MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.25)
LARGE_WIDTHS = (16, 24, 40, 80, 112, 160)
SHAPES = {
    "mnv3-large": {
        "depths": (1, 2, 3, 4, 2, 3),
        "kernels": (3, 3, 5, 3, 3, 5),
        "expands": (1, 4, 3, 3, 6, 6),
    },
    "mnv3-small": {
        "depths": (1, 2, 3, 1, 2, 3),
        "kernels": (3, 3, 5, 5, 5, 5),
        "expands": (1, 4, 4, 3, 3, 6),
    },
}


def _nearest(value: float, choices: tuple) -> Any:
    return min(choices, key=lambda c: (abs(c - value), c))


def _spec(space: SearchSpace, shape: dict[str, tuple], mult: float, resolution: int) -> ArchSpec:
    arch = space.arch
    stages = []
    for i, st in enumerate(arch.stages):
        width = _nearest(make_divisible(LARGE_WIDTHS[i] * mult, 8), st.widths)
        depth = _nearest(shape["depths"][i], st.depths)
        expand = _nearest(float(shape["expands"][i]), st.expands)
        stages.append(
            StageSpec(
                width,
                depth,
                _nearest(shape["kernels"][i], st.kernels),
                (expand,) * depth,
                st.stride,
                st.se,
                st.act,
            )
        )
    heads = []
    for h in arch.heads:
        branch = h.branches[-1] if h.task == "tagging" else h.branches[len(h.branches) // 2]
        heads.append(HeadSpec(h.task, branch, h.channels))
    return ArchSpec(
        resolution,
        arch.stem,
        tuple(stages),
        tuple(heads),
        num_classes=arch.num_classes,
        stem_act=arch.stem_act,
    )


def baseline_candidates(
    space: SearchSpace, *, resolutions: tuple[int, ...] | None = None
) -> dict[str, Candidate]:
    """``{name: Candidate}`` for both shapes, every multiplier and ``resolutions`` (default: every resolution
    of the space, so that the smallest shapes a user would try when the budget is tight are there too)."""
    res = resolutions or tuple(sorted(space.arch.resolutions))
    out: dict[str, Candidate] = {}
    for shape_name, shape in SHAPES.items():
        for mult in MULTIPLIERS:
            for r in res:
                spec = _spec(space, shape, mult, r)
                space.arch.check(spec)
                name = f"{shape_name}-{int(round(mult * 100)):03d}-r{r}"
                out[name] = Candidate(spec, (0.0,) * len(spec.stages), "fp16")
    # two multipliers may round to the same widths: keep one name per distinct candidate
    seen: dict[Candidate, str] = {}
    for name, cand in out.items():
        seen.setdefault(cand, name)
    return {name: cand for cand, name in seen.items()}


def with_quant(candidate: Candidate, quant: str) -> Candidate:
    return dataclasses.replace(candidate, quant=quant)
