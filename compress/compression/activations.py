"""Activation quantization of ``w8a8``: int8 per-tensor affine ``ActQuant`` in front of every Conv2d and
Linear, with ranges from NNCF post-training quantization.

``nncf.quantize`` (preset MIXED, activations forced to 8-bit asymmetric per-tensor, MEAN_MINMAX ranges over
all calibration batches, bias correction off) runs on the BN-folded, fp16-rounded float model before weight
compression; each ``ActQuant`` takes the range NNCF calibrated for its layer's input (a pre-hook on the input
port, or the post-hook of the op that feeds it, looking through flatten / reshape / dropout). Layers NNCF
leaves unquantized (squeeze-and-excitation convs) take ``ActQuant``'s own statistic on the same batches.
Range to int8: ``scale = fp16((high - low) / 255)``, zero point ``round(-128 - low / scale)``; ``ActQuant``
traces to ``quantize`` / ``dequantize`` ops, which the Core ML ML Program (iOS 17+) keeps.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from compress.errors import ConfigError

__all__ = ["ActQuant", "calibrate_activations"]


class ActQuant(nn.Module):
    """Per-tensor affine int8 fake quantization of an activation (``quantize`` then ``dequantize``).

    Before calibration (``observing`` true) it records each batch's min / max and passes data through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int64))
        self.observing = True
        self._mins: list[float] = []
        self._maxs: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._mins.append(float(x.detach().min()))
            self._maxs.append(float(x.detach().max()))
            return x
        scale, zero_point = float(self.scale), int(self.zero_point)
        if (
            torch.jit.is_tracing()
        ):  # traces to aten::quantize_per_tensor + dequantize, which coremltools keeps
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated in eager mode
                return torch.quantize_per_tensor(x, scale, zero_point, torch.qint8).dequantize()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)

    def finish(self, value_range: tuple[float, float] | None = None) -> None:
        """Fix scale and zero point from ``value_range`` (low, high), e.g. NNCF's calibrated range.

        Without one, the recorded ranges are used: the mean over batches of each batch's min / max (NNCF's
        MEAN_MINMAX statistic for per-tensor activations). Zero is always included.
        """
        if value_range is None:
            if not self._mins:
                raise ConfigError("w8a8 calibration saw no data for an activation; give calibration images")
            value_range = (float(np.mean(self._mins)), float(np.mean(self._maxs)))
        lo, hi = min(0.0, value_range[0]), max(0.0, value_range[1])
        scale = max(hi - lo, 1e-8) / 255.0
        scale = float(np.float32(np.float16(scale))) or scale  # the ML Program stores the scale in fp16
        zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
        self.scale.fill_(scale)
        self.zero_point.fill_(zp)
        self.observing = False
        self._mins, self._maxs = [], []

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):.3g}, zero_point={int(self.zero_point)}"


def _insert_act_quant(model: nn.Module) -> list[tuple[str, ActQuant]]:
    """Wrap every Conv2d / Linear as ``Sequential(ActQuant, layer)``; returns (original layer name, ActQuant)."""
    inserted = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d | nn.Linear):
                aq = ActQuant()
                setattr(parent, name, nn.Sequential(aq, child))
                inserted.append((f"{parent_name}.{name}" if parent_name else name, aq))
    return inserted


def _calibration_batches(calibration: object, batch_size: int = 32) -> Iterable[torch.Tensor]:
    if calibration is None:
        raise ConfigError("scheme 'w8a8' needs calibration images to set activation ranges (calibration=...)")
    images = calibration["images"] if isinstance(calibration, Mapping) else calibration
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ConfigError(
                f"calibration images must be a tensor [N, 3, R, R], but got {tuple(images.shape)}"
            )
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return [b["images"] if isinstance(b, Mapping) else b for b in images]  # an iterable of batches


def _observe(model: nn.Module, batches: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for batch in batches:
            model(batch)


def _nncf_activation_ranges(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """NNCF post-training quantization of ``model``; returns ``{layer name: (low, high)}`` of its input quantizer.

    ``nncf.quantize`` (preset MIXED: symmetric weights, asymmetric activations; default MinMax range
    estimation over all calibration batches; bias correction off because only the ranges are used) runs on a
    copy. Its activation quantizers are hooks keyed by the operation whose output (post-hook) or input
    (pre-hook) they quantize; a Conv2d / Linear gets the range of the quantizer on its input port, or of the
    quantizer on the output of the op that feeds it, looking through ops that do not change values
    (``_TRANSPARENT``). Layers without one (NNCF leaves squeeze-and-excitation convs unquantized, its SE_BLOCK
    ignored pattern) are absent from the result.
    """
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import get_hook_storage

    graph = build_nncf_graph(model, batches[0])
    quantized = nncf.quantize(
        copy.deepcopy(model),
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_quantization_params=QuantizationParameters(
                num_bits=8, mode=QuantizationScheme.ASYMMETRIC, per_channel=False
            ),
            disable_bias_correction=True,
        ),
    )
    hooks = get_hook_storage(quantized)
    ranges = {}
    for node in graph.get_all_nodes():
        if node.node_type not in ("conv2d", "linear"):
            continue
        edges = {e.input_port_id: e for e in graph.get_input_edges(node)}
        weight = _const_source(graph, edges[1].from_node)
        quantizer = _hook(hooks.pre_hooks, node.node_name, 0)
        edge = edges[0]
        while quantizer is None:
            quantizer = _hook(hooks.post_hooks, edge.from_node.node_name, edge.output_port_id)
            ins = graph.get_input_edges(edge.from_node)
            if quantizer is not None or edge.from_node.node_type not in _TRANSPARENT or len(ins) != 1:
                break
            edge = ins[0]
        if quantizer is not None and weight is not None:
            with torch.no_grad():
                low, high = quantizer.get_input_low_input_high()
            if low.numel() != 1:  # pragma: no cover - per-tensor activations were asked for
                raise RuntimeError(f"NNCF gave {weight} a per-channel input quantizer {tuple(low.shape)}")
            ranges[weight.rpartition(".")[0]] = (float(low), float(high))
    return ranges


_TRANSPARENT = frozenset({"flatten", "reshape", "view", "dropout", "contiguous", "squeeze", "unsqueeze"})
"""Graph ops a quantized activation passes through unchanged on its way to a Conv2d / Linear."""


def _hook(storage: nn.ModuleDict, op_name: str, port: int) -> nn.Module | None:
    """The NNCF quantizer hooked on ``op_name``'s port (NNCF's key: dots as colons, ``__port``)."""
    key = f"{op_name.replace('.', ':')}__{port}"
    return next(iter(storage[key].values()), None) if key in storage else None


def _const_source(graph: object, node: object) -> str | None:
    """The parameter name behind a layer's weight input (through NNCF's weight-quantizer hook nodes)."""
    while node.node_type != "nncf_model_const":
        ins = graph.get_input_edges(node)
        if len(ins) != 1:
            return None
        node = ins[0].from_node
    return node.node_name


def calibrate_activations(model: nn.Module, calibration: object) -> list[ActQuant]:
    """Insert ``ActQuant`` before every Conv2d / Linear and set its range from NNCF's calibration.

    Layers NNCF does not quantize keep a range from ``ActQuant``'s own observation: the mean over
    calibration batches of each batch's min / max, NNCF's default statistic for activations (MEAN_MINMAX),
    on the same model and batches.
    """
    batches = list(_calibration_batches(calibration))
    ranges = _nncf_activation_ranges(model, batches)
    quants = _insert_act_quant(model)
    _observe(model, batches)
    for name, aq in quants:
        aq.finish(ranges.get(name))
    return [aq for _, aq in quants]
