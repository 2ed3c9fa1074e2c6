"""The host-only terms of a unit's costs: weight bytes apart from activation bytes, and the slowdown of ops
whose channels are not a multiple of the CPU's SIMD block. Apple profiles leave both off."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from torch import nn

from profiles import ProfileError, estimate, extract_graph, list_profiles, load_profile
from profiles._graph import unaligned
from profiles._schema import dump_profile, parse_profile


def _cpu_profile(**costs):
    """a16 with its CPU unit alone and eager (no fusion) and costed as a host CPU is (additive terms, no
    overlap, on-chip or chip scale from the Apple fit), the given cost fields replaced."""
    p = load_profile("a16")
    cpu = p.units["cpu"]
    host_like = {"overlap": "none", "onchip_ratio": 1.0, "time_scale": 1.0}
    cpu = replace(cpu, fuses=False, costs=replace(cpu.costs, **{**host_like, **costs}))
    return replace(p, units={"cpu": cpu}, default_quant="fp32", path="")


def _dw(c: int):
    return nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), (1, c, 28, 28)


def test_unaligned_marks_feature_maps_whose_channels_leave_the_block():
    model = nn.Sequential(nn.Conv2d(3, 63, 1), nn.Conv2d(63, 64, 1), nn.Flatten(), nn.Linear(64 * 4, 5))
    g = extract_graph(model, (1, 3, 2, 2))
    assert [n.op for n in g.nodes] == ["conv2d", "conv2d", "flatten", "linear"]
    assert unaligned(g, 16).tolist() == [True, False, False, False]  # vectors are never marked
    assert unaligned(g, 1).tolist() == [False] * 4


def test_unaligned_slowdown_applies_to_its_class_where_channels_leave_the_block():
    base = _cpu_profile(inference_overhead_us=0.0)  # per-op costs only: the slowdown scales those
    slow = _cpu_profile(inference_overhead_us=0.0, channel_block=16, unaligned_slowdown={"dw": 0.25})
    for c, factor in ((63, 1.25), (64, 1.0), (65, 1.25), (96, 1.0)):
        assert estimate(*_dw(c), slow).latency_ms == pytest.approx(
            factor * estimate(*_dw(c), base).latency_ms, rel=1e-9
        )
    pw = (nn.Conv2d(63, 63, 1, bias=False), (1, 63, 28, 28))  # other classes keep their cost
    assert estimate(*pw, slow).latency_ms == pytest.approx(estimate(*pw, base).latency_ms, rel=1e-9)


def test_weight_bytes_cost_apart_from_activation_bytes():
    p = _cpu_profile(efficiency={"default": 1.0}, overhead_us={"default": 0.0}, inference_overhead_us=0.0)
    slower = replace(
        p,
        units={
            "cpu": replace(
                p.units["cpu"], costs=replace(p.units["cpu"].costs, weight_mem_efficiency={"pw": 0.05})
            )
        },
    )
    wide = (nn.Conv2d(1024, 1024, 1, bias=False), (1, 1024, 2, 2))  # 4 MB of weights, 32 KB of activations
    g = extract_graph(*wide)
    cpu = p.units["cpu"]
    bw = cpu.bandwidth_gbs.value * 1e6
    mem = cpu.costs.per_class("mem_efficiency")[1]
    weight_ms = g.arrays["params"].sum() * 4.0 / bw
    extra = weight_ms / 0.05 - weight_ms / mem  # read at 5% of the bandwidth instead of the class's own share
    assert estimate(*wide, slower).latency_ms == pytest.approx(
        estimate(*wide, p).latency_ms + extra, rel=1e-6
    )


def test_host_terms_round_trip_and_stay_out_of_profiles_that_do_not_use_them():
    p = _cpu_profile(channel_block=16, unaligned_slowdown={"dw": 0.2}, weight_mem_efficiency={"pw": 0.4})
    text = dump_profile(p)
    assert "channel_block = 16" in text and "unaligned_slowdown = { dw = 0.2 }" in text
    assert parse_profile(text, where="x") == replace(p, path="x")
    for name in list_profiles():  # Apple profiles: the terms are off and not written
        shipped = load_profile(name)
        assert "unaligned_slowdown" not in dump_profile(shipped)
        for unit, tab in shipped.tables.items():
            assert shipped.units[unit].costs.channel_block == 0
            assert np.array_equal(tab["wmem"], tab["mem"])


def test_host_terms_reject_bad_values():
    text = dump_profile(_cpu_profile(channel_block=16, unaligned_slowdown={"dw": 0.2}))
    with pytest.raises(ProfileError, match=r"unaligned_slowdown: unknown key\(s\) \['warp'\]"):
        parse_profile(text.replace("{ dw = 0.2 }", "{ warp = 0.2 }"), where="x")
    with pytest.raises(ProfileError, match=r"unaligned_slowdown.dw: must be >= 0"):
        parse_profile(text.replace("{ dw = 0.2 }", "{ dw = -0.2 }"), where="x")
    with pytest.raises(ProfileError, match=r"channel_block: must be >= 0"):
        parse_profile(text.replace("channel_block = 16", "channel_block = -16"), where="x")


def test_fit_host_recovers_the_unaligned_slowdown_and_the_weight_byte_cost():
    from profiles import _host
    from profiles._host import fit_host

    rng = np.random.default_rng(0)
    graphs = []
    for _ in range(24):
        c, r = int(rng.choice([8, 16, 24, 32, 48, 64])), int(rng.choice([8, 16, 24]))
        model = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1, groups=c), nn.ReLU()
        )
        graphs.append(extract_graph(model, (1, 3, r, r)))
    truth = np.zeros((14, 4))
    truth[:, 3] = 0.004
    truth[0, 0], truth[2, 0], truth[6, 1] = 2e-8, 5e-8, 1e-6
    truth[0, 2] = 3e-6  # conv weights: ms per byte
    slow = np.zeros(14)
    slow[2] = 0.3  # depthwise 30% slower off the 16-channel block
    node_ms = [
        (_host._node_rows(g) * truth[g.arrays["cls"]]).sum(axis=1)
        * (1 + slow[g.arrays["cls"]] * unaligned(g, 16))
        for g in graphs
    ]
    totals = np.array([t.sum() + 0.05 for t in node_ms])
    costs, fitted, loo = fit_host(
        graphs, node_ms, totals, peak_gflops=200.0, bandwidth_gbs=10.0, channel_block=16
    )
    assert costs.channel_block == 16
    assert costs.unaligned_slowdown["dw"] == pytest.approx(0.3, rel=0.02)
    assert costs.weight_mem_efficiency["conv"] == pytest.approx(1 / (3e-6 * 10.0 * 1e6), rel=0.05)
    assert np.allclose(fitted, totals, rtol=0.02)
    assert np.median(np.abs(loo / totals - 1)) < 0.02


def test_profile_description_lists_the_host_terms_only_where_used():
    from profiles._describe import describe_profile

    p = _cpu_profile(channel_block=16, unaligned_slowdown={"dw": 0.2}, weight_mem_efficiency={"pw": 0.4})
    rows = {key: value for key, value, _ in describe_profile(p)}
    assert rows["cpu: slowdown off 16-channel blocks"] == "dw 0.2"
    assert rows["cpu: weight bandwidth efficiency"] == "pw 0.4"
    assert not any("channel blocks" in key for key, _, _ in describe_profile(load_profile("a16")))
