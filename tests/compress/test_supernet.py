"""SupernetSpace, the elastic Supernet, extract and BN recalibration of subnets."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from compress.errors import ConfigError
from compress.model import MultiTaskNet, recalibrate_bn
from compress.model.space import HeadChoices, StageChoices, SupernetSpace, default_space
from compress.model.supernet import Supernet, extract

torch.set_num_threads(1)


def small_space() -> SupernetSpace:
    """A narrow 4-stage space: fast, yet with every kind of choice (incl. a mixed expand-skip stage 0)."""
    stages = (
        StageChoices((8, 16), (1,), (3,), (1.0,), 1, False, "relu"),
        StageChoices((16, 24), (1, 2, 3), (3, 5, 7), (3.0, 4.0, 6.0), 2, False, "relu"),
        StageChoices((24, 32), (1, 2), (3, 5, 7), (3.0, 6.0), 2, True, "hswish"),
        StageChoices((32, 40), (1, 2), (3, 5), (3.0, 4.0), 2, True, "hswish"),
    )
    heads = (
        HeadChoices("tagging", (2, 3), (48, 64)),
        HeadChoices("detection", (1, 2), (24,)),
        HeadChoices("saliency", (1, 2), (16,)),
    )
    return SupernetSpace((64, 96), 16, stages, heads, num_classes=5)


@pytest.fixture(scope="module")
def trained_supernet():
    """A supernet whose BN statistics and affine parameters are non-trivial (a few train-mode steps)."""
    torch.manual_seed(0)
    space = small_space()
    net = Supernet(space)
    rng = random.Random(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        net.train()
        for spec in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
            net(torch.rand(4, 3, 64, 64), spec)
    return net.eval()


def _specs(space: SupernetSpace, n: int, seed: int):
    rng = random.Random(seed)
    specs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]
    for h in space.heads:  # every branch choice of every head
        for b in h.branches:
            base = space.sample(rng)
            heads = tuple(dataclasses.replace(x, branch=b) if x.task == h.task else x for x in base.heads)
            specs.append(dataclasses.replace(base, heads=heads))
    return specs


@pytest.mark.parametrize("spec", _specs(small_space(), 10, 0), ids=lambda s: s.short_hash())
def test_extract_equals_supernet(trained_supernet, spec):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = trained_supernet(x, spec)
        static = extract(trained_supernet, spec)
        got = static.eval()(x)
    assert type(static) is MultiTaskNet and static.spec == spec
    assert not any("Elastic" in type(m).__name__ for m in static.modules())
    assert (
        set(ref)
        == set(got)
        == {
            k
            for h in spec.heads
            for k in {"tagging": ["tags"], "detection": ["det_heatmap", "det_box"], "saliency": ["saliency"]}[
                h.task
            ]
        }
    )
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5)


def test_extract_default_space_extremes():
    space = default_space()
    torch.manual_seed(0)
    net = Supernet(space).eval()
    x = torch.rand(1, 3, 96, 96)
    for spec in (space.largest(), space.smallest()):
        with torch.no_grad():
            ref, got = net(x, spec), extract(net, spec).eval()(x)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5)


def test_channels_last_supernet_matches(trained_supernet):
    import copy

    space = small_space()
    fast = copy.deepcopy(trained_supernet).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    for spec in (space.largest(), space.sample(random.Random(2))):
        with torch.no_grad():
            ref, got, static = trained_supernet(x, spec), fast(x, spec), extract(fast, spec).eval()(x)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(static[k], ref[k], atol=1e-5, rtol=1e-5)


def test_supernet_rejects_spec_outside_space():
    space = small_space()
    net = Supernet(space)
    big = space.largest()
    bad = dataclasses.replace(
        big, stages=(big.stages[0], dataclasses.replace(big.stages[1], width=48), *big.stages[2:])
    )
    with pytest.raises(ConfigError, match=r"stage 1 width 48 is not among \(16, 24\)"):
        net(torch.rand(1, 3, 64, 64), bad)
    with pytest.raises(ConfigError, match="stage 1 width 48"):
        extract(net, bad)


def test_supernet_trains_and_bn_slices_update():
    space = small_space()
    torch.manual_seed(0)
    net = Supernet(space).train()
    small = space.smallest()
    bn = net.stages[1][0].project.bn
    before = bn.running_mean.clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.rand(2, 3, 64, 64), small)
    sum(v.float().mean() for v in out.values()).backward()
    opt.step()
    width = small.stages[1].width
    assert not torch.equal(bn.running_mean[:width], before[:width])
    assert torch.equal(bn.running_mean[width:], before[width:])
    assert net.stages[1][0].depthwise.conv.weight.grad is not None


def test_recalibrate_bn_supernet_and_extracted_agree(trained_supernet):
    import copy

    space = small_space()
    spec = space.sample(random.Random(5))
    images = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sn = copy.deepcopy(trained_supernet)
    recalibrate_bn(sn, images, batch_size=4, spec=spec)
    static = recalibrate_bn(extract(trained_supernet, spec).eval(), images, batch_size=4)
    assert not sn.training and not static.training
    x = images[:2]
    with torch.no_grad():
        ref, got = sn(x, spec), static(x)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-4, rtol=1e-4)


# -- the space ---------------------------------------------------------------------------------------------
def test_space_json_round_trip():
    for space in (small_space(), default_space(7)):
        again = SupernetSpace.from_json(space.to_json())
        assert again == space and hash(again) == hash(space)


def test_default_space_shape():
    space = default_space()
    assert [s.stride for s in space.stages] == [1, 2, 2, 2, 1, 2]
    assert space.resolutions == (96, 128, 160)
    assert {h.task: h.branches for h in space.heads} == {
        "tagging": (4, 5),
        "detection": (2, 3, 4),
        "saliency": (1, 2, 3),
    }
    assert space.stages[0].depths == (1,) and all(s.kernels == (3, 5) for s in space.stages[1:])
    big, small = MultiTaskNet(space.largest()), MultiTaskNet(space.smallest())
    assert sum(p.numel() for p in big.parameters()) > 10 * sum(p.numel() for p in small.parameters())


def test_extremes_put_heads_where_they_cost_most_and_least():
    """The largest subnet's dense heads read the shallowest (largest) feature maps and tagging the deepest."""
    space = default_space()
    big, small = space.largest(), space.smallest()
    assert {h.task: h.branch for h in big.heads} == {"tagging": 5, "detection": 2, "saliency": 1}
    assert {h.task: h.branch for h in small.heads} == {"tagging": 4, "detection": 4, "saliency": 3}
    assert big.resolution == 160 and small.resolution == 96
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        out_big, out_small = MultiTaskNet(big).eval()(x), MultiTaskNet(small).eval()(x)
    assert out_big["det_heatmap"].shape[-1] == 2 * out_small["det_heatmap"].shape[-1]
    assert out_big["saliency"].shape[-1] > out_small["saliency"].shape[-1]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(colour=1), r"unknown key\(s\) \['colour'\] in SupernetSpace"),
        (lambda d: d["stages"][1].update(kernels=[3, 4]), "stage kernels must be among"),
        (lambda d: d["stages"][1].update(depths=[]), "stage depths needs at least one choice"),
        (lambda d: d["stages"][2].update(expands=[9]), r"stage expands must lie in \[0.5, 8\]"),
        (lambda d: d["heads"][1].update(branches=[1, 7]), r"detection head branch choices \(1, 7\) exceed"),
        (lambda d: d["heads"].append(dict(d["heads"][0])), "each task may have one head only"),
        (lambda d: d.update(resolutions=[64, 100]), "resolution must be a multiple of 32"),
        (lambda d: d["heads"][0].update(task="pose"), "unknown head task 'pose'"),
    ],
)
def test_space_validation_errors(mutate, match):
    data = json.loads(small_space().to_json())
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        SupernetSpace.from_json(json.dumps(data))


def test_space_sampling_and_membership():
    space = small_space()
    a = [space.sample(random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    g = np.random.default_rng(0)
    specs = [space.sample(g) for _ in range(30)] + [space.sample(random.Random(i)) for i in range(30)]
    assert all(space.contains(s) for s in specs) and len(set(specs)) > 20
    for s in specs:
        assert all(len(set(st.expand)) == 1 for st in s.stages)
        assert space.from_params(space.to_params(s)) == s
    outside = dataclasses.replace(specs[0], resolution=128)
    assert not space.contains(outside)
    with pytest.raises(ConfigError, match=r"resolution 128 is not among \(64, 96\)"):
        space.check(outside)
    with pytest.raises(ConfigError, match="rng must be a random.Random"):
        space.sample(42)


def test_space_sample_with_optuna_trial():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = small_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    spec = space.sample(trial)
    assert space.contains(spec)
    assert {"resolution", "s2.kernel", "head.detection.branch"} <= set(trial.params)
    assert space.from_params(trial.params) == spec
