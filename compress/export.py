"""Deployable artifacts: Core ML ML Program packages and ONNX files (the only module importing coremltools).

``export_coreml`` writes what ``compress.compression.simulate`` scored: the model is first turned into its
simulated form (BN folded, fp16 weights, palettized weights, activation quantizers for ``w8a8``), then traced
and converted, and the weight compression is applied by coremltools with the same rules:

- ``int8`` / ``w8a8``: coremltools' ``linear_symmetric`` per-channel int8 quantizer on the same fp16 weights
  (the simulation reproduces its arithmetic) -> ``constexpr_affine_dequantize`` ops;
- ``palN`` / ``palN-gK``: the already-palettized weights are stored as a look-up table of exactly their
  distinct values (``N`` bits, one LUT per tensor or per group of K output channels) ->
  ``constexpr_lut_to_dense`` ops; equality with the simulation is exact by construction;
- both as the last pass of the conversion pipeline, with ``weight_threshold=WEIGHT_THRESHOLD``, the rule
  ``simulate`` applies; the exporter then checks that coremltools compressed exactly the tensors the
  simulation did (``RunError`` if not).

The package has one image input ``image`` (RGB, pixel values scaled by 1/255 so the model's own
normalisation applies), one output per head output (``tags``, ``det_heatmap``, ``det_box``, ``saliency``),
``image_embedding`` [1, D] when the model has one (``MultiTaskNet.attach_embedding``: the unit-norm image
embedding of an image-text pretrained backbone, for search by text and zero-shot tagging on device), and
metadata: ``compress.arch_spec`` (ArchSpec JSON), ``compress.scheme`` and anything passed in ``metadata``
(e.g. predicted per-device latency), JSON-encoded unless it is a string. Running the package needs macOS;
on Linux conversion and compression work and the model is not loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.compression.quant import WEIGHT_THRESHOLD, QuantScheme, compressed_layers, simulate
from compress.errors import ConfigError, RunError

__all__ = [
    "OUTPUT_KEYS",
    "CoreMLWeight",
    "ExportResult",
    "export_coreml",
    "export_model",
    "export_onnx",
    "output_keys",
    "package_size_mb",
    "read_coreml_weights",
]

OUTPUT_KEYS = ("tags", "det_heatmap", "det_box", "saliency")
EMBEDDING_KEY = "image_embedding"
"""The optional image-embedding output; always exported after the head outputs."""
INPUT_NAME = "image"
ONNX_EXPORTERS = ("torchscript", "dynamo")  # see export_onnx
_WRAPPED = "model"
"""Attribute name of the wrapped model: Core ML const names start with ``model_``."""


class _TupleOutputs(nn.Module):
    """Wraps a dict-returning model so that it returns a tuple in a fixed key order (tracing needs it)."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        setattr(self, _WRAPPED, model)
        self.keys = keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = getattr(self, _WRAPPED)(x)
        return tuple(out[k] for k in self.keys)


def _resolution(model: nn.Module, resolution: int | None) -> int:
    if resolution is not None:
        return int(resolution)
    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(spec, "resolution"):
        raise ConfigError("the model has no ArchSpec .spec; pass resolution=... to export it")
    return int(spec.resolution)


def output_keys(model: nn.Module, *, resolution: int | None = None) -> tuple[str, ...]:
    """The model's output keys in export order (heads, then ``image_embedding`` if the model has it);
    ConfigError for a model without the expected heads."""
    res = _resolution(model, resolution)
    was_training = model.training
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, res, res))
    model.train(was_training)
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"export needs a model whose forward returns a dict of head outputs ({', '.join(OUTPUT_KEYS)}), "
            f"but it returned {type(out).__name__}"
        )
    embedding = EMBEDDING_KEY in out
    out = {k: v for k, v in out.items() if k != EMBEDDING_KEY}
    unknown = sorted(set(out) - set(OUTPUT_KEYS))
    if unknown or not out:
        raise ConfigError(
            f"model outputs {sorted(out)}; expected head outputs among {', '.join(OUTPUT_KEYS)}"
        )
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "heads"):
        from compress.model.heads import HEAD_OUTPUTS

        want = {k for h in spec.heads for k in HEAD_OUTPUTS[h.task]}
        if want != set(out):
            raise ConfigError(
                f"model outputs {sorted(out)} but its spec's heads "
                f"({', '.join(h.task for h in spec.heads)}) need {sorted(want)}"
            )
    return tuple(k for k in OUTPUT_KEYS if k in out) + ((EMBEDDING_KEY,) if embedding else ())


def _quiet_coremltools() -> None:
    logging.getLogger("coremltools").setLevel(logging.ERROR)


def _convert(model: nn.Module, keys: tuple[str, ...], res: int, qs: QuantScheme) -> Any:
    import coremltools as ct

    _quiet_coremltools()
    wrapped = _TupleOutputs(model, keys).eval()
    example = torch.rand(1, 3, res, res)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", torch.jit.TracerWarning
        )  # ActQuant's scales become constants: intended
        traced = torch.jit.trace(wrapped, example, strict=False)
    target = {16: ct.target.iOS16, 17: ct.target.iOS17, 18: ct.target.iOS18}[qs.min_ios]
    precision = ct.precision.FLOAT32 if qs.name == "fp32" else ct.precision.FLOAT16
    pipeline = ct.PassPipeline.DEFAULT
    if qs.compresses_weights:  # compress as the last pass of the conversion (no second pipeline run)
        name = "compression::" + ("palettize_weights" if qs.kind == "palette" else "linear_quantize_weights")
        pipeline.append_pass(name)
        pipeline.set_options(name, {"config": _compression_config(qs)})
    return ct.convert(
        traced,
        inputs=[
            ct.ImageType(
                name=INPUT_NAME, shape=(1, 3, res, res), scale=1 / 255.0, color_layout=ct.colorlayout.RGB
            )
        ],
        outputs=[ct.TensorType(name=k) for k in keys],
        convert_to="mlprogram",
        minimum_deployment_target=target,
        compute_precision=precision,
        pass_pipeline=pipeline,
        skip_model_load=True,
    )


def _unique_lut(nbits: int) -> Any:
    """A coremltools ``lut_function`` storing a tensor's (already palettized) distinct values as its LUT."""

    def lut_function(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, indices = np.unique(weight.reshape(-1), return_inverse=True)
        if len(values) > 1 << nbits:
            raise RunError(
                f"a weight to palettize at {nbits} bits has {len(values)} distinct values; the simulated "
                "weights did not reach the exporter unchanged"
            )
        lut = np.concatenate([values, np.full((1 << nbits) - len(values), values[-1], values.dtype)])
        return lut.astype(weight.dtype), indices.astype(np.uint8)

    return lut_function


def _compression_config(qs: QuantScheme) -> Any:
    from coremltools.optimize import coreml as cto

    if qs.kind in ("linear", "w8a8"):
        op: Any = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype="int8",
            granularity="per_channel",
            weight_threshold=WEIGHT_THRESHOLD,
        )
    else:
        op = cto.OpPalettizerConfig(
            mode="custom",
            lut_function=_unique_lut(qs.weight_bits),
            granularity="per_tensor" if qs.group_size is None else "per_grouped_channel",
            group_size=qs.group_size or 32,
            weight_threshold=WEIGHT_THRESHOLD,
        )
    return cto.OptimizationConfig(global_config=op)


OUTPUT_DESCRIPTIONS = {
    "tags": "multi-label tag probabilities in [0, 1], one per class (classes: user metadata 'classes')",
    "det_heatmap": "detection centre heatmap per class (probabilities in [0, 1]) on the output grid",
    "det_box": "detection box size and offset at each grid cell (left, top, right, bottom distances)",
    "saliency": "saliency mask probabilities in [0, 1] at the output grid",
    EMBEDDING_KEY: "unit-norm image embedding [B, D] from the image-text pretrained backbone; zero-shot tag "
    "scores are image_embedding @ text.T with the prompt embeddings of text_embeddings.safetensors "
    "(rows named in text_embeddings.json)",
}
"""What each head output holds, written into the Core ML and ONNX files for app developers."""

DEFAULT_AUTHOR = "compress-toolkit"
DEFAULT_LICENSE = (
    "Apache-2.0 (compress-toolkit); the weights carry the terms of the data they were trained on"
)


def describe_artifact(
    model: nn.Module, scheme: str, keys: tuple[str, ...], metadata: Mapping[str, Any] | None
) -> dict[str, str]:
    """The metadata written into every exported file: author, license, version, arch, scheme, classes, outputs.

    ``metadata`` may override ``author``, ``license`` and ``version`` and add keys (values that are not strings
    are stored as JSON); ``classes`` (a list of category names) labels the ``tags`` output.
    """
    from compress import __version__

    meta: dict[str, str] = {
        "author": DEFAULT_AUTHOR,
        "license": DEFAULT_LICENSE,
        "version": __version__,
        "compress.version": __version__,
        "compress.scheme": scheme,
        "outputs": json.dumps({k: OUTPUT_DESCRIPTIONS.get(k, k) for k in keys}),
    }
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "to_json"):
        meta["compress.arch_spec"] = spec.to_json()
    embedding = getattr(model, "embedding", None)
    if EMBEDDING_KEY in keys and embedding is not None:
        meta["compress.image_embedding"] = json.dumps(
            {
                "output": EMBEDDING_KEY,
                "stage": embedding.stage,
                "dim": embedding.dim,
                "text": "text_embeddings.safetensors",
                "names": "text_embeddings.json",
            }  # fmt: skip
        )
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return meta


def _metadata(
    mlmodel: Any, model: nn.Module, qs: QuantScheme, keys: tuple[str, ...], metadata: Mapping[str, Any] | None
) -> None:
    meta = describe_artifact(model, qs.name, keys, metadata)
    mlmodel.author = meta.pop("author")
    mlmodel.license = meta.pop("license")
    mlmodel.version = meta.pop("version")
    classes = json.loads(meta["classes"]) if "classes" in meta else None
    for key, value in meta.items():
        mlmodel.user_defined_metadata[key] = value
    mlmodel.short_description = f"Multi-task MobileNetV3 ({', '.join(keys)}), weights {qs.name}"
    mlmodel.input_description[INPUT_NAME] = "RGB image; pixel values 0-255 (scaled by 1/255 inside)"
    for key in keys:
        text = OUTPUT_DESCRIPTIONS.get(key, key)
        if key == "tags" and classes:
            text = f"multi-label tag probabilities in [0, 1], in class order: {', '.join(map(str, classes))}"
        mlmodel.output_description[key] = text


def _package_path(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    return out if out.suffix == ".mlpackage" else out.with_name(out.name + ".mlpackage")


def export_coreml(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    scheme: str | QuantScheme = "fp16",
    metadata: Mapping[str, Any] | None = None,
    calibration: Any = None,
    resolution: int | None = None,
) -> Path:
    """Write ``model`` as a Core ML ML Program package compressed with ``scheme``; return its path.

    ``path`` gets a ``.mlpackage`` suffix if it has none; an existing package there is replaced.
    ``calibration`` images are needed for ``w8a8`` (activation ranges). ``resolution`` defaults to the
    model's ``spec.resolution``. Minimum deployment target: iOS 16; iOS 17 for ``w8a8`` (activation
    quantization); iOS 18 for grouped palettization (``palN-gK``).
    """
    qs = QuantScheme.parse(scheme)
    res = _resolution(model, resolution)
    keys = output_keys(model, resolution=res)
    base = simulate(model, qs, calibration=calibration, compress_weights=qs.kind == "palette")
    expected = len(compressed_layers(simulate(model, "fp16"), qs))
    mlmodel = _convert(base, keys, res, qs)
    got = _count_compressed(mlmodel)
    if got != expected:
        raise RunError(
            f"coremltools compressed {got} weight tensors but the {qs.name} simulation "
            f"compressed {expected}; "
            "the artifact would not match the scored model"
        )
    _metadata(mlmodel, model, qs, keys, metadata)
    out = _package_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    mlmodel.save(str(out))
    return out


def _count_compressed(mlmodel: Any) -> int:
    prog = mlmodel._mil_program if mlmodel._mil_program is not None else _mil_program(mlmodel)
    return sum(1 for op in _ops(prog) if op.op_type.startswith("constexpr_"))


# -- reading an artifact back -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CoreMLWeight:
    """A weight as stored in an ML Program: its dense value and how it is stored."""

    name: str
    value: np.ndarray
    storage: str
    """``"const"`` (plain fp16/fp32), ``"lut"`` (palettized) or ``"affine"`` (linear quantized)."""
    nbits: int
    consumer: str
    """Op type that reads it (``conv``, ``linear``, ...)."""


def _mil_program(mlmodel: Any) -> Any:
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
    from coremltools.models import utils as model_utils

    spec = mlmodel.get_spec()
    return model_utils._convert_model_spec_to_pymil_prog(mlmodel, spec.specificationVersion, milproto_load)


def _ops(prog: Any) -> list[Any]:
    return [op for f in prog.functions.values() for op in f.operations]


def _stored_name(op: Any) -> str:
    for suffix in ("_palettized", "_quantized"):
        if op.name.endswith(suffix):
            return op.name[: -len(suffix)]
    return op.name


def read_coreml_weights(
    path_or_model: str | os.PathLike[str] | Any, *, min_size: int = 10
) -> dict[str, CoreMLWeight]:
    """The weights an ML Program stores, decompressed, keyed by their Core ML const name.

    Only tensors of rank >= 2 with at least ``min_size`` elements that feed a compute op (conv, linear,
    matmul) are returned. Names follow the traced module paths (``model_stem_0_weight_to_fp16``).
    """
    import coremltools as ct

    _quiet_coremltools()
    mlmodel = path_or_model
    if isinstance(path_or_model, str | os.PathLike):
        mlmodel = ct.models.MLModel(str(path_or_model), skip_model_load=True)
    out: dict[str, CoreMLWeight] = {}
    for op in _ops(_mil_program(mlmodel)):
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            consumers = [c for c in op.outputs[0].child_ops if not c.op_type.startswith("constexpr_")]
            if not consumers or consumers[0].op_type not in ("conv", "linear", "matmul"):
                continue
            value = op.outputs[0].val if op.op_type == "const" else op.materialized_val_inference()
            value = np.asarray(value)
            if value.ndim < 2 or value.size < min_size:
                continue
            storage, nbits = _storage(op, value)
            name = _stored_name(op)
            out[name] = CoreMLWeight(name, value, storage, nbits, consumers[0].op_type)
    return out


def _storage(op: Any, value: np.ndarray) -> tuple[str, int]:
    if op.op_type == "const":
        return "const", value.dtype.itemsize * 8
    if "lut" in op.op_type:
        lut = op.lut.val
        entries = lut.shape[-1] if op.op_type == "constexpr_lut_to_dense" and lut.ndim == 1 else lut.shape[-2]
        return "lut", int(np.log2(entries))
    return "affine", 8


# -- ONNX and sizes ---------------------------------------------------------------------------------------
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = 17,
    resolution: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    exporter: str = "torchscript",
) -> Path:
    """Write ``model`` as ONNX (input ``image`` float [B, 3, R, R] in [0, 1], one named output per head, and
    ``image_embedding`` [B, D] when the model has one).

    The batch dimension is dynamic; the file is checked with ``onnx.checker``. ``opset`` must be >= 17.
    ``metadata_props`` hold :func:`describe_artifact` (author, license, version, arch, classes, outputs).

    ``exporter``: ``"torchscript"`` (default) or ``"dynamo"`` (torch.export + onnxscript: ``pip install
    'compress-toolkit[onnx-dynamo]'``; opset >= 18). Both give the same outputs on these models (tested with
    onnxruntime), but the dynamo exporter took 17x as long here (27.2 s against 1.6 s for the largest subnet
    of the default space, side by side: ``benchmarks/onnx_export.py``), which a 10-minute search cannot
    spend; torch deprecated the TorchScript exporter, so the dynamo one is ready for when torch removes it.
    """
    import onnx

    if not isinstance(opset, int) or opset < 17:
        raise ConfigError(f"ONNX opset must be an int >= 17, but got {opset!r}")
    _check_exporter(exporter)
    res = _resolution(model, resolution)
    keys = output_keys(model, resolution=res)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _TupleOutputs(model, keys).eval()
    if exporter == "dynamo":  # torch.export's graph, translated by onnxscript
        how = _dynamo_options(opset)
    else:
        dynamic = {INPUT_NAME: {0: "batch"}, **{k: {0: "batch"} for k in keys}}
        how = {"opset_version": opset, "dynamic_axes": dynamic, "dynamo": False}
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            (torch.rand(2, 3, res, res),),
            str(out),
            input_names=[INPUT_NAME],
            output_names=list(keys),
            **how,
        )
    proto = onnx.load(str(out))
    meta = describe_artifact(model, "float", keys, metadata)
    proto.producer_name, proto.producer_version = DEFAULT_AUTHOR, meta["version"]
    proto.doc_string = f"Multi-task MobileNetV3 ({', '.join(keys)})"
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out))
    return out


def _check_exporter(exporter: str) -> None:
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; choose one of: {', '.join(ONNX_EXPORTERS)}")


def _dynamo_options(opset: int) -> dict[str, Any]:
    """``torch.onnx.export`` options of the dynamo exporter (opset >= 18, a dynamic batch dimension)."""
    import importlib.util

    if importlib.util.find_spec("onnxscript") is None:
        raise ConfigError(
            "the dynamo ONNX exporter needs onnxscript: pip install 'compress-toolkit[onnx-dynamo]' "
            "(or use the default exporter)"
        )
    batch = torch.export.Dim("batch", min=1, max=4096)
    return {
        "opset_version": max(opset, 18),
        "dynamic_shapes": ({0: batch},),
        "dynamo": True,
        "external_data": False,
        "verbose": False,
    }


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote."""

    coreml: Path
    size_mb: float
    onnx: Path | None = None


CALIBRATION_IMAGES = 64
"""Validation images used to calibrate w8a8 activation ranges when a data spec is given."""


def export_model(
    model: nn.Module | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    scheme: str | QuantScheme = "fp16",
    onnx: bool = False,
    metadata: Mapping[str, Any] | None = None,
    calibration: Any = "builtin",
    onnx_exporter: str = "torchscript",
) -> ExportResult:
    """Write ``out_dir/model.mlpackage`` (and ``out_dir/model.onnx`` with ``onnx``) for a model or checkpoint.

    ``model`` is a ``MultiTaskNet`` or the path of a checkpoint written by ``compress.model.save_model``
    (loaded as ArchSpec JSON + safetensors, never unpickled). ``calibration`` is only used for ``w8a8``:
    images (as ``export_coreml`` takes them) or a data spec string (``"builtin"``, ``"coco:PATH"``), whose
    first 64 validation images at the model's resolution are used. The ONNX file holds the float model.
    """
    from compress.model import load_model

    qs = QuantScheme.parse(scheme)  # fail on a bad name before loading anything
    if onnx:
        _check_exporter(onnx_exporter)  # before converting anything
    net = load_model(model) if isinstance(model, str | os.PathLike) else model
    if qs.kind == "w8a8" and isinstance(calibration, str):
        from compress.data import load_data

        _, val = load_data(calibration, resolution=_resolution(net, None), progress=False)
        calibration = val.images[:CALIBRATION_IMAGES]
    out = Path(out_dir)
    package = export_coreml(
        net, out / "model.mlpackage", scheme=qs, metadata=metadata, calibration=calibration
    )
    onnx_path = export_onnx(net, out / "model.onnx", exporter=onnx_exporter) if onnx else None
    return ExportResult(package, package_size_mb(package), onnx_path)


def package_size_mb(path: str | os.PathLike[str]) -> float:
    """On-disk size of a package directory (all files in it) or a single file, in MB (10^6 bytes)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no file or package at {str(p)!r}")
    if p.is_file():
        return p.stat().st_size / 1e6
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
