"""Quantization schemes: parsing, BN folding, fp16, int8 and palettization math, layer selection, w8a8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinynets import tiny_model
from torch import nn

from compress.compression import (
    WEIGHT_THRESHOLD,
    ActQuant,
    QuantScheme,
    compressed_layers,
    fold_batchnorm,
    kmeans_lut,
    quantize_int8,
    simulate,
)
from compress.errors import ConfigError
from compress.model import MultiTaskNet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> MultiTaskNet:
    return tiny_model()


def _out(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize(
    ("name", "kind", "bits", "group", "ios"),
    [
        ("fp32", "float", 32, None, 16),
        ("fp16", "float", 16, None, 16),
        ("int8", "linear", 8, None, 16),
        ("pal2", "palette", 2, None, 16),
        ("pal4", "palette", 4, None, 16),
        ("pal6", "palette", 6, None, 16),
        ("PAL8", "palette", 8, None, 16),
        ("pal4-g16", "palette", 4, 16, 18),
        ("w8a8", "w8a8", 8, None, 17),
    ],
)
def test_parse(name: str, kind: str, bits: int, group: int | None, ios: int) -> None:
    qs = QuantScheme.parse(name)
    assert (qs.kind, qs.weight_bits, qs.group_size, qs.min_ios) == (kind, bits, group, ios)
    assert QuantScheme.parse(qs) is qs and str(qs) == name.lower()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("int4", r"unknown quantization scheme 'int4'; valid: fp32, fp16, int8, pal2, .*palN-gK"),
        ("pal3", r"palettization width in 'pal3' must be one of \(2, 4, 6, 8\)"),
        ("pal4-g0", r"group size in 'pal4-g0' must lie in \[1, 4096\], but got 0"),
        ("pal4-", "unknown quantization scheme"),
        ("", "unknown quantization scheme ''"),
    ],
)
def test_parse_errors(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QuantScheme.parse(name)


def test_fold_batchnorm_keeps_outputs(model: MultiTaskNet) -> None:
    import copy

    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 64, 64)
    for key, value in _out(model, x).items():
        torch.testing.assert_close(_out(folded, x)[key], value, rtol=1e-4, atol=1e-4)


def test_fp32_and_fp16(model: MultiTaskNet) -> None:
    x = torch.rand(2, 3, 64, 64)
    ref = _out(model, x)
    fp32, fp16 = simulate(model, "fp32"), simulate(model, "fp16")
    for p in fp16.parameters():
        torch.testing.assert_close(p, p.half().float(), rtol=0, atol=0)  # fp16-representable
    for key, value in ref.items():
        torch.testing.assert_close(_out(fp32, x)[key], value, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(_out(fp16, x)[key], value, rtol=2e-2, atol=2e-2)
    assert fp16.spec == model.spec and model.stem.bn is not None  # the input model is not modified


def test_quantize_int8_follows_the_coremltools_rule() -> None:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 4, 3, 3)) * np.arange(1, 9).reshape(8, 1, 1, 1)).astype(np.float16)
    w[3] = 0  # an all-zero channel
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and scale.dtype == np.float16 and scale.shape == (8,)
    for c in (0, 1, 2, 4, 7):
        assert scale[c] == np.float16(np.float16(2) * np.abs(w[c]).max() / np.float16(254))
        assert np.abs(q[c]).max() == 127
    assert (q[3] == 0).all()
    deq = q.astype(np.float32) * scale.astype(np.float32).reshape(-1, 1, 1, 1)
    # half a step, plus the fp16 rounding of w / scale that coremltools' float16 arithmetic adds (<= 1/32)
    err = np.abs(deq - w.astype(np.float32)) / scale.astype(np.float32).reshape(-1, 1, 1, 1)
    assert err.max() <= 0.5 + 1 / 32


def test_kmeans_lut_finds_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([-1.0, -0.25, 0.3, 2.0])
    values = rng.choice(centres, 5000) + rng.standard_normal(5000) * 0.01
    lut, idx = kmeans_lut(values, 2)
    assert lut.dtype == np.float16 and lut.shape == (4,) and idx.dtype == np.uint8
    np.testing.assert_allclose(np.sort(lut.astype(np.float64)), centres, atol=0.01)
    recon = lut[idx].astype(np.float32)
    nearest = lut.astype(np.float32)[np.abs(values.astype(np.float16)[:, None] - lut[None]).argmin(1)]
    np.testing.assert_array_equal(recon, nearest)  # every value maps to its nearest entry
    lut2, idx2 = kmeans_lut(values, 2)
    np.testing.assert_array_equal(lut, lut2)  # deterministic
    np.testing.assert_array_equal(idx, idx2)


def test_kmeans_lut_with_few_distinct_values_is_exact() -> None:
    values = np.array([0.5, -0.5, 0.5, 0.25, 0.25], dtype=np.float32)
    lut, idx = kmeans_lut(values, 4)
    assert lut.shape == (16,)
    np.testing.assert_array_equal(lut[idx], values.astype(np.float16))


def _heavy_tailed(size: int) -> np.ndarray:
    """fp16 values shaped like trained weights (Laplace: peaked, long tails, many distinct fp16 values)."""
    return (np.random.default_rng(1).laplace(size=size) * 0.05).astype(np.float16)


def _optimum(values: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """kmeans1d over the distinct values weighted by their counts (exact 1-D k-means): (lut fp16, labels)."""
    from coremltools._deps import _kmeans1d

    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    res = _kmeans1d.cluster(distinct, 1 << nbits, weights=counts)
    return np.asarray(res.centroids).astype(np.float16), np.asarray(res.clusters)[inverse.reshape(-1)]


@pytest.mark.parametrize("nbits", [2, 4])
@pytest.mark.parametrize("size", [12_000, 3_000])
def test_kmeans_lut_is_coremltools_kmeans(size: int, nbits: int) -> None:
    """pal2/pal4 cluster as coremltools' palettize_weights(mode="kmeans") does: kmeans1d's optimum for an
    fp16 tensor of >= 10,000 elements, scikit-learn's seeded k-means++ on the raw values below that."""
    values = _heavy_tailed(size)
    lut, idx = kmeans_lut(values, nbits)
    if size >= 10_000:
        ref_lut, labels = _optimum(values, nbits)
    else:
        import warnings

        from sklearn.cluster import KMeans

        km = KMeans(1 << nbits, init="k-means++", tol=1e-2, n_init=1, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(values.reshape(-1, 1))
        ref_lut, labels = km.cluster_centers_[:, 0].astype(np.float16), km.labels_
    np.testing.assert_allclose(
        np.sort(lut.astype(np.float64)), np.sort(ref_lut.astype(np.float64)), rtol=1e-3
    )
    np.testing.assert_array_equal(lut[idx], ref_lut[labels])  # the same dequantized weights


@pytest.mark.parametrize(("nbits", "gap"), [(6, 0.05), (8, 0.25)])
def test_lloyd_lut_is_close_to_the_optimum(nbits: int, gap: float) -> None:
    """pal6/pal8 use our Lloyd k-means: within the documented gap of kmeans1d's optimum (coremltools')."""
    values = _heavy_tailed(12_000)
    w = values.astype(np.float64)
    lut, idx = kmeans_lut(values, nbits)
    ref_lut, labels = _optimum(values, nbits)
    ours, best = (
        ((w - lut.astype(np.float64)[idx]) ** 2).sum(),
        ((w - ref_lut.astype(np.float64)[labels]) ** 2).sum(),
    )
    assert best <= ours <= (1 + gap) * best
    assert len(np.unique(lut)) == 1 << nbits


def test_compressed_layers_rule(model: MultiTaskNet) -> None:
    folded = simulate(model, "fp16")
    modules = dict(folded.named_modules())
    names = compressed_layers(folded, "pal4")
    assert names and compressed_layers(folded, "fp16") == []
    for name, m in modules.items():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert (name in names) == (m.weight.numel() > WEIGHT_THRESHOLD)
    grouped = compressed_layers(folded, "pal4-g32")
    assert set(grouped) < set(names)
    assert all(modules[n].weight.shape[0] % 32 == 0 for n in grouped)


@pytest.mark.parametrize("scheme", ["pal2", "pal4", "pal6", "pal8", "pal4-g16", "int8"])
def test_weight_levels(model: MultiTaskNet, scheme: str) -> None:
    qs = QuantScheme.parse(scheme)
    fp16 = dict(simulate(model, "fp16").named_modules())
    sim = simulate(model, scheme)
    names = set(compressed_layers(sim, qs))
    for name, m in sim.named_modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        w = m.weight.detach().numpy()
        if name not in names:  # small tensors stay fp16, unchanged
            np.testing.assert_array_equal(w, fp16[name].weight.detach().numpy())
            continue
        if qs.kind == "palette":
            groups = [w] if qs.group_size is None else np.split(w, w.shape[0] // qs.group_size)
            assert all(len(np.unique(g)) <= 1 << qs.weight_bits for g in groups)
            assert len(np.unique(w)) > 1
        else:
            for row in w.reshape(w.shape[0], -1):
                assert len(np.unique(row)) <= 255
        ref = fp16[name].weight.detach().numpy()
        rel = np.sqrt(((w - ref) ** 2).mean() / (ref**2).mean())
        assert rel < (0.01 if qs.kind == "linear" else 2.0**-qs.weight_bits * 2), (name, rel)
        if qs.kind == "palette" and qs.group_size is None:
            # within 25% of scikit-learn k-means (coremltools' fallback clustering)
            from sklearn.cluster import KMeans

            km = KMeans(1 << qs.weight_bits, init="k-means++", tol=1e-2, n_init=1, random_state=0)
            km.fit(ref.reshape(-1, 1).astype(np.float64))
            sk = km.cluster_centers_[km.labels_, 0].reshape(ref.shape)
            assert rel < 1.25 * np.sqrt(((sk - ref) ** 2).mean() / (ref**2).mean()), name


def test_w8a8_needs_calibration(model: MultiTaskNet) -> None:
    with pytest.raises(ConfigError, match="scheme 'w8a8' needs calibration images"):
        simulate(model, "w8a8")
    with pytest.raises(ConfigError, match=r"calibration images must be a tensor \[N, 3, R, R\]"):
        simulate(model, "w8a8", calibration=torch.rand(4, 1, 64, 64))


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def w8a8(model: MultiTaskNet, calib: torch.Tensor) -> nn.Module:
    return simulate(model, "w8a8", calibration=calib)


def test_w8a8_quantizes_activations(model: MultiTaskNet, calib: torch.Tensor, w8a8: nn.Module) -> None:
    sim = w8a8
    quants = [m for m in sim.modules() if isinstance(m, ActQuant)]
    convs = [m for m in sim.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(quants) == len(convs) and all(not q.observing for q in quants)
    assert all(float(q.scale) > 0 and -128 <= int(q.zero_point) <= 127 for q in quants)
    x = calib[:4]
    ref, got = _out(simulate(model, "int8"), x), _out(sim, x)
    for key in ref:
        err = (got[key] - ref[key]).abs().max() / ref[key].abs().max()
        assert 0 < err < 0.25, (key, err)  # activations really are quantized, and not destroyed
    uint8 = simulate(model, "w8a8", calibration=(calib * 255).round().to(torch.uint8))
    assert len([m for m in uint8.modules() if isinstance(m, ActQuant)]) == len(quants)


def _int8(low: float, high: float) -> tuple[float, int]:
    scale = float(np.float16((high - low) / 255))
    return scale, int(np.clip(np.round(-128 - low / scale), -128, 127))


def test_w8a8_ranges_are_nncf_post_training_quantization(
    model: MultiTaskNet, calib: torch.Tensor, w8a8: nn.Module
) -> None:
    """Independently run NNCF PTQ and check the ActQuants carry its activation ranges."""
    import copy

    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    from nncf.torch.function_hook.wrapper import get_hook_storage

    float16 = fold_batchnorm(copy.deepcopy(model))
    with torch.no_grad():
        for p in float16.parameters():
            p.copy_(p.half().float())
    params = QuantizationParameters(num_bits=8, mode=QuantizationScheme.ASYMMETRIC, per_channel=False)
    quantized = nncf.quantize(
        copy.deepcopy(float16),
        nncf.Dataset([calib]),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=1,
        advanced_parameters=AdvancedQuantizationParameters(
            activations_quantization_params=params, disable_bias_correction=True
        ),
    )
    post = get_hook_storage(quantized).post_hooks
    nncf_ranges = {}
    for key in post:
        with torch.no_grad():
            low, high = post[key]["0"].get_input_low_input_high()
        nncf_ranges[key] = _int8(float(low), float(high))

    def aq(path: str) -> tuple[float, int]:
        q = w8a8.get_submodule(path)[0]
        return float(q.scale), int(q.zero_point)

    assert aq("stem.conv") == nncf_ranges["/div/0__0"]  # NNCF's quantizer on the normalised image
    assert aq("heads.tagging.fc2") == nncf_ranges["act/hardswish/0__0"]  # found through dropout
    assert aq("heads.tagging.fc1") == nncf_ranges["pool/adaptive_avg_pool2d/0__0"]  # through flatten
    assert aq("heads.detection.heatmap") == aq("heads.detection.box")  # one shared NNCF quantizer
    matched = {
        name
        for name, m in w8a8.named_modules()
        if isinstance(m, nn.Sequential) and m and isinstance(m[0], ActQuant) and ".se." not in name
    }
    assert matched and all(aq(name) in nncf_ranges.values() for name in matched)
    # NNCF leaves SE convs float (SE_BLOCK ignored pattern): those take the mean per-batch min / max
    seen = []
    fc1 = float16.get_submodule("stages.1.0.se.fc1")
    handle = fc1.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        float16(calib)
    handle.remove()
    assert aq("stages.1.0.se.fc1") == _int8(min(0.0, float(seen[0].min())), max(0.0, float(seen[0].max())))
