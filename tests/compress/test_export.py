"""Core ML and ONNX export: simulated weights are what ships, outputs, metadata, sizes, errors."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from tinynets import tiny_model
from torch import nn

from compress import __version__
from compress.compression import WEIGHT_THRESHOLD, ActQuant, QuantScheme, compressed_layers, simulate
from compress.errors import ConfigError
from compress.export import export_coreml, export_onnx, output_keys, package_size_mb, read_coreml_weights
from compress.model import ArchSpec, MultiTaskNet

torch.set_num_threads(1)

SCHEMES = ["int8", "pal2", "pal4", "pal6", "pal8", "pal4-g16"]


@pytest.fixture(scope="module")
def model() -> MultiTaskNet:
    return tiny_model()


@pytest.fixture(scope="module")
def packages(model: MultiTaskNet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One export per scheme, shared by the tests of this module (conversion takes seconds)."""
    out = tmp_path_factory.mktemp("coreml")
    meta = {"latency_ms": {"a11": 3.25, "m1": 0.9}, "note": "test", "classes": [f"c{i}" for i in range(12)]}
    return {s: export_coreml(model, out / s, scheme=s, metadata=meta) for s in SCHEMES}


def _torch_weights(sim: nn.Module) -> dict[str, np.ndarray]:
    """Simulated weights keyed the way Core ML names the traced consts (``model_<path>_weight_to_fp16``)."""
    return {
        "model_" + name.replace(".", "_") + "_to_fp16": p.detach().numpy()
        for name, p in sim.named_parameters()
        if name.endswith("weight") and p.dim() > 1
    }


@pytest.mark.parametrize("scheme", SCHEMES)
def test_coreml_weights_equal_simulated_weights(
    model: MultiTaskNet, packages: dict[str, Path], scheme: str
) -> None:
    """What ships is what was scored: every weight read back from the ML Program equals the simulation."""
    qs = QuantScheme.parse(scheme)
    sim = simulate(model, qs)
    expected = _torch_weights(sim)
    stored = read_coreml_weights(packages[scheme])
    assert set(stored) == set(expected)  # every conv / linear weight, nothing else
    compressed = {"model_" + n.replace(".", "_") + "_weight_to_fp16" for n in compressed_layers(sim, qs)}
    assert compressed and compressed == {n for n, w in stored.items() if w.storage != "const"}
    for name, weight in stored.items():
        np.testing.assert_allclose(weight.value.astype(np.float32), expected[name], rtol=1e-3, atol=1e-6)
        if name in compressed:
            assert weight.storage == ("lut" if qs.kind == "palette" else "affine")
            assert weight.nbits == qs.weight_bits
        else:
            assert weight.storage == "const" and weight.nbits == 16


@pytest.mark.parametrize("scheme", ["pal2", "pal4"])
def test_coremltools_kmeans_palettization_equals_simulation(
    model: MultiTaskNet, tmp_path: Path, scheme: str
) -> None:
    """coremltools' own palettize_weights(mode="kmeans") on the fp16 package gives the simulated weights."""
    import coremltools as ct
    from coremltools.optimize import coreml as cto

    qs = QuantScheme.parse(scheme)
    fp16 = ct.models.MLModel(
        str(export_coreml(model, tmp_path / "fp16", scheme="fp16")), skip_model_load=True
    )
    op = cto.OpPalettizerConfig(mode="kmeans", nbits=qs.weight_bits, weight_threshold=WEIGHT_THRESHOLD)
    stored = read_coreml_weights(cto.palettize_weights(fp16, cto.OptimizationConfig(global_config=op)))
    sim = simulate(model, qs)
    expected = _torch_weights(sim)
    compressed = {"model_" + n.replace(".", "_") + "_weight_to_fp16" for n in compressed_layers(sim, qs)}
    assert compressed == {n for n, w in stored.items() if w.storage == "lut"}
    for name in compressed:
        np.testing.assert_allclose(
            stored[name].value.astype(np.float32), expected[name], rtol=1e-3, atol=1e-6
        )


def test_package_interface_and_metadata(model: MultiTaskNet, packages: dict[str, Path]) -> None:
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(packages["int8"]), skip_model_load=True)
    spec = mlmodel.get_spec()
    assert spec.specificationVersion == 7  # iOS 16
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType"
    assert (inp.type.imageType.width, inp.type.imageType.height) == (64, 64)
    assert [o.name for o in spec.description.output] == ["tags", "det_heatmap", "det_box", "saliency"]
    meta = mlmodel.user_defined_metadata
    assert ArchSpec.from_json(meta["compress.arch_spec"]) == model.spec
    assert meta["compress.scheme"] == "int8"
    assert json.loads(meta["latency_ms"]) == {"a11": 3.25, "m1": 0.9} and meta["note"] == "test"
    assert mlmodel.author == "compress-toolkit" and "Apache-2.0" in mlmodel.license
    assert mlmodel.version == __version__
    described = {o.name: o.shortDescription for o in spec.description.output}
    assert all(described.values()), described
    assert "in class order: c0, c1" in described["tags"] and json.loads(meta["classes"])[11] == "c11"
    preprocessing = [op for op in _program_ops(mlmodel) if op.op_type == "mul"][0]  # the 1/255 image scale
    assert float(preprocessing.inputs["y"].val) == pytest.approx(1 / 255, rel=1e-3)


def _program_ops(mlmodel: object) -> list:
    from compress.export import _mil_program, _ops

    return _ops(_mil_program(mlmodel))


def test_deployment_targets(packages: dict[str, Path]) -> None:
    import coremltools as ct

    versions = {
        s: ct.models.MLModel(str(p), skip_model_load=True).get_spec().specificationVersion
        for s, p in packages.items()
    }
    assert versions["int8"] == versions["pal2"] == versions["pal4"] == versions["pal8"] == 7  # iOS 16
    assert versions["pal4-g16"] == 9  # grouped palettes need iOS 18


def test_w8a8_quantizes_activations_in_the_artifact(model: MultiTaskNet, tmp_path: Path) -> None:
    import coremltools as ct

    calib = torch.rand(8, 3, 64, 64)
    path = export_coreml(model, tmp_path / "w8a8", scheme="w8a8", calibration=calib)
    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    assert mlmodel.get_spec().specificationVersion == 8  # iOS 17
    ops = _program_ops(mlmodel)
    compute = [op for op in ops if op.op_type in ("conv", "linear")]
    assert compute and all(op.inputs["x"].op.op_type == "dequantize" for op in compute)  # int8 activations
    assert sum(op.op_type == "quantize" for op in ops) == sum(op.op_type == "dequantize" for op in ops)
    stored = read_coreml_weights(path)
    sim = simulate(model, "w8a8", calibration=calib)
    scales = sorted({float(q.scale) for q in sim.modules() if isinstance(q, ActQuant)})
    shipped = sorted({float(op.inputs["scale"].val) for op in ops if op.op_type == "quantize"})
    np.testing.assert_allclose(shipped, scales, rtol=1e-3)  # the activation ranges that were scored
    expected = _torch_weights(sim)
    # ActQuant wrappers shift module paths by ".1"; compare the weights themselves in order
    assert [w.value.shape for w in stored.values()] == [v.shape for v in expected.values()]
    for w, ref in zip(stored.values(), expected.values(), strict=True):
        np.testing.assert_allclose(w.value.astype(np.float32), ref, rtol=1e-3, atol=1e-6)


def test_package_sizes(packages: dict[str, Path]) -> None:
    sizes = {s: package_size_mb(p) for s, p in packages.items()}
    for s, p in packages.items():
        assert sizes[s] == sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
    assert sizes["pal2"] < sizes["pal4"] < sizes["pal6"] < sizes["pal8"] <= sizes["int8"] + 0.01


def test_export_replaces_an_existing_package(
    model: MultiTaskNet, packages: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    target = tmp_path / "again.mlpackage"
    shutil.copytree(packages["pal2"], target)
    (target / "stale.txt").write_text("left over")
    path = export_coreml(model, tmp_path / "again", scheme="fp16")  # the suffix is added
    assert path == target and not (target / "stale.txt").exists()
    assert read_coreml_weights(path)["model_heads_tagging_fc1_weight_to_fp16"].storage == "const"  # was lut
    assert package_size_mb(path) > package_size_mb(packages["int8"])  # fp16 weights are bigger


def test_onnx_runtime_matches_torch(model: MultiTaskNet, tmp_path: Path) -> None:
    import onnxruntime as ort

    path = export_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["tags", "det_heatmap", "det_box", "saliency"]
    x = torch.rand(3, 3, 64, 64)  # the batch dimension is dynamic
    got = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"image": x.numpy()}), strict=True)
    )
    with torch.no_grad():
        ref = model(x)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value.numpy(), rtol=1e-3, atol=1e-3)


def test_onnx_of_a_simulated_model(model: MultiTaskNet, tmp_path: Path) -> None:
    import onnxruntime as ort

    sim = simulate(model, "pal4")
    path = export_onnx(sim, tmp_path / "pal4.onnx", opset=18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 64, 64)
    out = session.run(["tags"], {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, sim(x)["tags"].numpy(), rtol=1e-3, atol=1e-3)


class _TensorOut(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class _WrongKeys(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x.mean((2, 3))}


def test_export_errors(model: MultiTaskNet, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown quantization scheme 'int3'"):
        export_coreml(model, tmp_path / "x", scheme="int3")
    with pytest.raises(ConfigError, match="scheme 'w8a8' needs calibration images"):
        export_coreml(model, tmp_path / "x", scheme="w8a8")
    with pytest.raises(ConfigError, match="forward returns a dict of head outputs .* but it returned Tensor"):
        export_coreml(_TensorOut(), tmp_path / "x", resolution=64)
    with pytest.raises(ConfigError, match=r"model outputs \['logits'\]; expected head outputs among tags"):
        export_onnx(_WrongKeys(), tmp_path / "x.onnx", resolution=64)
    with pytest.raises(ConfigError, match="the model has no ArchSpec .spec; pass resolution="):
        output_keys(_WrongKeys())
    with pytest.raises(ConfigError, match="ONNX opset must be an int >= 17, but got 13"):
        export_onnx(model, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ConfigError, match="no file or package at"):
        package_size_mb(tmp_path / "missing.mlpackage")


def test_model_without_the_heads_its_spec_promises(model: MultiTaskNet) -> None:
    import copy

    broken = copy.deepcopy(model)
    del broken.heads["detection"]
    with pytest.raises(ConfigError, match=r"spec's heads \(tagging, detection, saliency\) need"):
        output_keys(broken)


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML prediction needs macOS (MLModel.predict)")
def test_coreml_prediction_matches_simulation(model: MultiTaskNet, packages: dict[str, Path]) -> None:
    import coremltools as ct
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    for scheme in ("pal4", "int8"):
        mlmodel = ct.models.MLModel(str(packages[scheme]))
        got = mlmodel.predict({"image": Image.fromarray(pixels)})
        with torch.no_grad():
            ref = simulate(model, scheme)(x)
        for key, value in ref.items():
            np.testing.assert_allclose(got[key], value.numpy(), rtol=5e-2, atol=5e-2)


def test_cli_export(model: MultiTaskNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import main
    from compress.model import save_model

    ckpt = save_model(model, tmp_path / "model.pt")
    code = main(["export", str(ckpt), "--scheme", "pal4", "--out", str(tmp_path / "out"), "--onnx"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "model.mlpackage").is_dir() and (tmp_path / "out" / "model.onnx").is_file()
    assert "MB  (pal4)" in capsys.readouterr().out
    weights = read_coreml_weights(tmp_path / "out" / "model.mlpackage")
    assert {w.storage for w in weights.values()} == {"const", "lut"}


def test_cli_export_errors(model: MultiTaskNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import main
    from compress.model import save_model

    ckpt = save_model(model, tmp_path / "model.pt")
    assert main(["export", str(ckpt), "--scheme", "pal5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("compress: error: palettization width in 'pal5' must be one of")
        and err.count("\n") == 1
    )
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "bad.pt"), "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("compress: error:") and err.count("\n") == 1


def test_onnx_metadata_props(model: MultiTaskNet, tmp_path: Path) -> None:
    import onnx

    path = export_onnx(model, tmp_path / "m.onnx", metadata={"classes": ["cat", "dog"], "trial": "7"})
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["author"] == "compress-toolkit" and props["version"] == __version__
    assert "Apache-2.0" in props["license"] and json.loads(props["classes"]) == ["cat", "dog"]
    assert ArchSpec.from_json(props["compress.arch_spec"]) == model.spec and props["trial"] == "7"
    assert set(json.loads(props["outputs"])) == {o.name for o in proto.graph.output}
    assert proto.producer_name == "compress-toolkit"


@pytest.mark.slow
def test_dynamo_onnx_exporter_matches_torch_with_a_dynamic_batch(model: MultiTaskNet, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    path = export_onnx(model, tmp_path / "dynamo.onnx", exporter="dynamo", metadata={"trial": "3"})
    proto = onnx.load(str(path))
    assert {p.key: p.value for p in proto.metadata_props}["trial"] == "3"
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert names == ["tags", "det_heatmap", "det_box", "saliency"]
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 64)
        got = dict(zip(names, session.run(None, {"image": x.numpy()}), strict=True))
        with torch.no_grad():
            ref = model(x)
        for key, value in ref.items():
            np.testing.assert_allclose(got[key], value.numpy(), rtol=1e-3, atol=1e-3)


def test_unknown_onnx_exporter_is_a_config_error(model: MultiTaskNet, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ONNX exporter 'jit'; choose one of: torchscript, dynamo"):
        export_onnx(model, tmp_path / "m.onnx", exporter="jit")


def test_unknown_onnx_exporter_fails_before_any_conversion(model: MultiTaskNet, tmp_path: Path) -> None:
    from compress.export import export_model

    with pytest.raises(ConfigError, match="unknown ONNX exporter 'jit'"):
        export_model(model, tmp_path / "out", onnx=True, onnx_exporter="jit")
    assert not (tmp_path / "out" / "model.mlpackage").exists()
