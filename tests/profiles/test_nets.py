"""The benchmark nets: random MobileNet-like CNNs outside the search space cover the variety they promise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from profiles import extract_graph
from profiles._nets import ACTIVATIONS, CNN_RESOLUTIONS, random_cnn


@pytest.fixture(scope="module")
def nets():
    rng = np.random.default_rng(14)
    return [random_cnn(rng) for _ in range(20)]


def test_random_cnns_cover_the_listed_variety(nets):
    traits = [t for _, _, t in nets]
    assert set().union(*(t["kernels"] for t in traits)) == {3, 5, 7}
    assert set().union(*(t["acts"] for t in traits)) == set(ACTIVATIONS)
    se = [t["se"] for t in traits]
    blocks = sum(t["blocks"] for t in traits)
    assert 0 < sum(se) < blocks  # squeeze-excite on some blocks, not all
    expansions = np.concatenate([t["expansions"] for t in traits])
    assert expansions.min() == 1.0 and expansions.max() > 5.0
    assert len(np.unique(np.round(expansions, 1))) > 20  # any expansion, not a few fixed ratios
    widths = np.concatenate([t["widths"] for t in traits])
    assert np.mean(widths % 8 != 0) > 0.5  # odd widths, not multiples of 8
    sizes = {t["resolution"] for t in traits}
    assert min(sizes) <= 96 and max(sizes) >= 192 and sizes <= set(CNN_RESOLUTIONS)
    assert {t["upsample"] for t in traits} == {"nearest", "bilinear"}
    assert {t["merge"] for t in traits} == {"add", "cat"}


def test_random_cnn_heads_branch_at_different_depths_and_the_dense_head_upsamples(nets):
    depths = set()
    for model, shape, t in nets[:6]:
        deep, box, last = t["branch_depths"]
        seen: dict = {}
        hook = model.blocks[deep].register_forward_hook(lambda m, i, o, seen=seen: seen.update(deep=o.shape))
        out = model(torch.rand(shape))
        hook.remove()
        assert set(out) == {"classes", "dense", "boxes"}
        assert out["classes"].dim() == 2 and out["classes"].shape[0] == 1
        assert out["dense"].shape[-1] >= 4 * seen["deep"][-1]  # upsampled to the skip feature, then x2
        assert deep < last and box <= last
        depths.add((deep, box))
    assert len(depths) > 1


def test_random_cnn_graphs_hold_the_op_classes_the_host_profile_must_cover(nets):
    ops, classes = set(), set()
    for model, shape, _ in nets[:8]:
        g = extract_graph(model, shape)
        ops |= {n.op for n in g.nodes}
        classes |= {n.cls for n in g.nodes}
    assert {"relu", "hardtanh", "hardswish", "silu", "hardsigmoid", "sigmoid", "interpolate"} <= ops
    assert {"conv", "pw", "dw", "bn", "act", "gpool", "linear", "upsample", "eltwise", "cat"} <= classes


def test_random_cnn_is_deterministic_per_seed():
    a = random_cnn(np.random.default_rng(3))
    b = random_cnn(np.random.default_rng(3))
    c = random_cnn(np.random.default_rng(4))
    shapes = [[tuple(p.shape) for p in m.parameters()] for m, _, _ in (a, b, c)]
    assert a[1] == b[1] and shapes[0] == shapes[1] and shapes[0] != shapes[2]
