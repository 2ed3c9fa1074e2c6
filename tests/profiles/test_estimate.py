"""The cost model: every layer type, totals, sizes, scheduling rules, quantization effects."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiles import (
    ConfigError,
    Cost,
    ProfileError,
    disk_mb,
    estimate,
    estimate_graph,
    extract_graph,
    list_profiles,
    weights_mb,
)


class AllLayers(nn.Module):
    """One of every layer type the cost model must handle, with a multi-output dict."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 5, 1, 2, groups=16), nn.ReLU6())
        self.group = nn.Conv2d(16, 32, 3, 1, 1, groups=4)
        self.pw = nn.Conv2d(32, 32, 1)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 32, 1), nn.Hardsigmoid()
        )
        self.maxpool, self.avgpool = nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        x = x + self.dw(x)
        y = F.silu(self.group(x))
        y = y * self.se(y)
        z = torch.sigmoid(self.pw(y))
        pooled = torch.cat([self.maxpool(z), self.avgpool(z)], dim=1)
        up = F.interpolate(pooled, scale_factor=2.0, mode="nearest")
        tags = self.fc(torch.flatten(F.adaptive_max_pool2d(z, 1), 1))
        return {"tags": tags, "map": up.reshape(1, 64, -1).view(1, 64, 16, 16), "mean": z.mean((2, 3))}


@pytest.fixture(scope="module")
def graph():
    return extract_graph(AllLayers(), (1, 3, 32, 32))


def test_every_layer_type_is_recorded(graph):
    ops = {n.op for n in graph.nodes}
    classes = {n.cls for n in graph.nodes}
    for op in ("conv2d", "batch_norm", "hardswish", "hardtanh", "relu", "silu", "hardsigmoid", "sigmoid",
               "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool2d", "avg_pool2d", "interpolate",
               "add", "mul", "cat", "flatten", "reshape", "view", "linear", "mean"):  # fmt: skip
        assert op in ops, op
    assert {
        "conv",
        "dw",
        "gconv",
        "pw",
        "bn",
        "act",
        "pool",
        "gpool",
        "upsample",
        "eltwise",
        "cat",
        "reshape",
        "linear",
    } <= classes
    assert [name for name, _ in graph.outputs] == ["tags", "map", "mean"]


def test_flops_and_params_match_the_layers(graph):
    model = AllLayers()
    assert graph.params == sum(p.numel() for p in model.parameters())
    stem = graph.nodes[0]
    assert stem.cls == "conv" and stem.flops == 2 * 16 * 16 * 16 * 3 * 3 * 3
    dw = next(n for n in graph.nodes if n.cls == "dw")
    assert dw.flops == 2 * 16 * 16 * 16 * 25


def test_extraction_leaves_the_model_untouched():
    model = AllLayers().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    extract_graph(model, (1, 3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("device", list_profiles())
def test_layer_rows_sum_to_the_total(graph, device):
    cost = estimate_graph(graph, device)
    assert isinstance(cost, Cost) and cost.latency_ms > 0
    assert cost.layers["ms"].sum() == pytest.approx(cost.latency_ms, rel=1e-9)
    assert {"op", "name", "input_shapes", "output_shape", "flops", "bytes", "unit", "ms"} <= set(
        cost.layers.columns
    )
    assert cost.peak_memory_mb > 0 and cost.disk_mb > cost.weights_mb > 0
    assert cost.source in ("calibrated", "spec-derived")
    assert cost.as_dict()["latency_ms"] == cost.latency_ms and cost.as_dict()["device"] == device


def test_a11_never_uses_the_neural_engine(graph):
    for quant in ("fp16", "int8", "pal4", "w8a8", "fp32"):
        cost = estimate_graph(graph, "a11", quant=quant)
        assert "ane" not in cost.units
        assert not (cost.layers["unit"] == "ane").any()


def test_neural_engine_runs_fp16_and_fp32_bars_it(graph):
    assert "ane" in estimate_graph(graph, "a16").units
    fp32 = estimate_graph(graph, "a16", quant="fp32")
    assert "ane" not in fp32.units and not (fp32.layers["unit"] == "ane").any()


def test_the_unit_is_chosen_by_expected_latency_not_by_a_prediction_known_to_be_low():
    """A11's CPU runs 0.78x its predictions at the median of its held-out errors, its GPU 0.66x: MobileNetV2 at
    224 px, predicted a little faster on the CPU (16.0 against 17.9 ms), is expected faster on the GPU and
    scheduled there, and carries the GPU's interval."""
    from profiles._cost import interval_ratios, ratio_at, schedule
    from profiles._quant import parse_quant
    from profiles._registry import load_profile
    from profiles.reference_models import reference_model

    a11 = load_profile("a11")
    graph = extract_graph(reference_model("mobilenet_v2_1.0"), (1, 3, 224, 224))
    by_prediction = schedule(graph, a11, parse_quant("fp16"))
    cost = estimate_graph(graph, a11)
    median = {u: ratio_at(interval_ratios(a11, u), 0.5) for u in ("cpu", "gpu")}
    assert by_prediction.used == ("cpu",) and cost.units == ("gpu",)
    assert by_prediction.total_ms < cost.latency_ms
    assert cost.latency_ms * median["gpu"] < by_prediction.total_ms * median["cpu"]
    assert cost.latency_ms_p90 == pytest.approx(cost.latency_ms * ratio_at(interval_ratios(a11, "gpu"), 0.9))


def test_fallback_layers_leave_the_neural_engine():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    )
    cost = estimate(model, (1, 3, 64, 64), "a16")
    convs = cost.layers[cost.layers["op"] == "conv2d"]
    assert convs["unit"].iloc[0] in ("gpu", "cpu")  # dilated: off the Neural Engine
    assert convs["unit"].iloc[1] == "ane"


def test_w8a8_is_faster_than_fp16_on_a17pro():
    from profiles.reference_models import reference_model

    g = extract_graph(reference_model("mobilenet_v2_1.0"), (1, 3, 224, 224))
    fp16 = estimate_graph(g, "a17pro", quant="fp16").latency_ms
    assert estimate_graph(g, "a17pro", quant="w8a8").latency_ms < 0.8 * fp16
    for quant in ("int8", "pal4", "pal8"):  # weight-only schemes change latency little
        assert estimate_graph(g, "a17pro", quant=quant).latency_ms == pytest.approx(fp16, rel=0.15)


def test_weight_ratios_fp16_int8_4bit():
    convs = nn.Sequential(nn.Conv2d(64, 128, 3, bias=False), nn.Conv2d(128, 256, 3, bias=False))
    g = extract_graph(convs, (1, 64, 16, 16))
    fp16, int8, pal4 = (weights_mb(g, q) for q in ("fp16", "int8", "pal4"))
    assert fp16 / int8 == pytest.approx(2.0, rel=0.02)
    assert fp16 / pal4 == pytest.approx(4.0, rel=0.02)
    assert pal4 > fp16 / 4  # the LUTs cost a little
    assert weights_mb(g, "pal4-g16") > pal4  # one LUT per 16 output channels costs more
    assert weights_mb(g, "fp32") == pytest.approx(2 * fp16)
    assert weights_mb(g, "pal2") < pal4 < weights_mb(g, "pal6") < weights_mb(g, "pal8")


def test_disk_formula_matches_coremltools_layout():
    """weight.bin of a coremltools 9 package, measured: 409744 B fp16, 210448 B int8, 107408 B pal4."""
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 128, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1000),
    )  # fmt: skip
    g = extract_graph(model, (1, 3, 64, 64))
    from profiles._cost import _FILE_HEADER, _tensor_bytes

    def weight_bin(q: str) -> float:
        from profiles import parse_quant

        return (
            _FILE_HEADER
            + _tensor_bytes(g.arrays["w_numel"], g.arrays["w_outch"], parse_quant(q), blobs=True).sum()
        )

    for q, real in (("fp16", 409744), ("int8", 210448), ("pal4", 107408), ("pal4-g4", 116304)):
        assert weight_bin(q) == pytest.approx(real, abs=64 * 2), q
    assert disk_mb(g, "pal4") < disk_mb(g, "int8") < disk_mb(g, "fp16")
    assert disk_mb(model, "fp16", input_shape=(1, 3, 64, 64)) == pytest.approx(disk_mb(g, "fp16"))


def test_graph_is_picklable_and_recostable(graph):
    again = pickle.loads(pickle.dumps(graph))
    assert estimate_graph(again, "m2").latency_ms == pytest.approx(estimate_graph(graph, "m2").latency_ms)


def test_by_output_accounts_heads_separately(graph):
    table = estimate_graph(graph, "a15").by_output()
    assert table["ms"].sum() == pytest.approx(estimate_graph(graph, "a15").latency_ms)
    assert {"shared", "tags"} <= set(table.index)


def test_tuple_and_tensor_outputs():
    class Two(nn.Module):
        def forward(self, x):
            return x.relu(), x.sigmoid()

    assert [n for n, _ in extract_graph(Two(), (1, 3, 8, 8)).outputs] == ["0", "1"]
    assert estimate(nn.Conv2d(3, 8, 3), (3, 32, 32), "m4").latency_ms > 0


def test_latency_grows_with_resolution_and_devices_order():
    from profiles.reference_models import reference_model

    m = reference_model("mobilenet_v3_large_1.0")
    small, big = (estimate(m, (1, 3, r, r), "a14").latency_ms for r in (160, 320))
    assert big > small
    g = extract_graph(m, (1, 3, 224, 224))
    assert estimate_graph(g, "a11").latency_ms > 3 * estimate_graph(g, "a16").latency_ms


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown quantization scheme 'int4'"):
        estimate(nn.Conv2d(3, 8, 3), (1, 3, 8, 8), "a16", quant="int4")
    with pytest.raises(ProfileError, match="input_shape must be"):
        extract_graph(nn.Conv2d(3, 8, 3), "big")
    with pytest.raises(ProfileError, match="must be a torch.nn.Module"):
        extract_graph(lambda x: x, (1, 3, 8, 8))
    with pytest.raises(ProfileError, match="unknown device"):
        estimate(nn.Conv2d(3, 8, 3), (1, 3, 8, 8), "pixel")
    with pytest.raises(ProfileError, match="forward failed"):
        extract_graph(nn.Conv2d(3, 8, 3), (1, 5, 8, 8))


def test_memory_counts_activations_and_held_weights():
    from profiles.reference_models import reference_model

    g = extract_graph(reference_model("resnet50"), (1, 3, 224, 224))
    fp16, pal4 = estimate_graph(g, "a16", quant="fp16"), estimate_graph(g, "a16", quant="pal4")
    assert fp16.peak_memory_mb > fp16.weights_mb  # weights plus live activations
    assert pal4.peak_memory_mb < fp16.peak_memory_mb  # the Neural Engine holds palettized weights compressed
    assert np.isfinite(fp16.peak_memory_mb)


# Whole .mlpackage sizes in bytes/1e6, written by coremltools 9.0 here (ct.convert to an iOS 18 ML program,
# then linear_quantize_weights int8 per-channel / palettize_weights 4-bit, per tensor or group 16).
PACKAGES = {
    "mobilenet_v2_1.0": (7.038758, 3.623625, 1.863889, 3.820951),
    "resnet50": (51.095188, 25.658599, 12.855781, 15.972183),
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_disk_mb_matches_real_packages(name):
    from profiles.reference_models import reference_model

    g = extract_graph(reference_model(name), (1, 3, 224, 224))
    for q, real in zip(("fp16", "int8", "pal4", "pal4-g16"), PACKAGES[name], strict=True):
        assert disk_mb(g, q) == pytest.approx(real, rel=0.02), q


@pytest.mark.slow
def test_disk_mb_matches_a_fresh_coremltools_export(tmp_path):
    ct = pytest.importorskip("coremltools")
    import os

    from coremltools.optimize import coreml as cto

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1, groups=32),
        nn.Conv2d(32, 96, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 500),
    ).eval()  # fmt: skip
    x = torch.rand(1, 3, 64, 64)
    ml = ct.convert(torch.jit.trace(model, x), inputs=[ct.TensorType(shape=x.shape)], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS18)  # fmt: skip
    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="uniform", nbits=4))
    for q, m in (("fp16", ml), ("pal4", cto.palettize_weights(ml, config))):
        path = tmp_path / f"{q}.mlpackage"
        m.save(str(path))
        real = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 1e6
        assert disk_mb(model, q, input_shape=x.shape) == pytest.approx(real, rel=0.02, abs=0.005), q
