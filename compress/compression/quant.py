"""Quantization schemes, simulated in torch with exactly the math of the shipped Core ML artifact.

``simulate(model, scheme)`` returns a copy of the model whose weights are what the exported ML Program holds
(scheme names: ``profiles.QuantScheme``):

1. BatchNorm folded into the preceding conv (coremltools fuses conv + BN during conversion too).
2. Every float parameter and buffer rounded to float16 (the ML Program stores fp16); ``fp32`` skips this.
3. Every Conv2d / Linear weight with more than ``WEIGHT_THRESHOLD`` elements compressed: ``int8``/``w8a8``
   by coremltools' ``linear_symmetric`` rule in fp16 arithmetic (``quantize_int8``); ``palN[-gK]`` by the
   k-means of ``compress.compression.kmeans``.
4. ``w8a8`` also quantizes activations (``compress.compression.activations``: NNCF-calibrated ranges).

Activations of the other schemes are simulated in float32 (the device computes in fp16; the difference is
the usual fp16 rounding noise and is not modelled).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from compress.compression.activations import ActQuant, calibrate_activations
from compress.compression.kmeans import (
    COREML_KMEANS_MAX_BITS,
    coreml_kmeans_lut,
    kmeans_lut,
    lloyd_lut,
    palettize,
)
from profiles import WEIGHT_THRESHOLD, QuantScheme

__all__ = [
    "COREML_KMEANS_MAX_BITS",
    "WEIGHT_THRESHOLD",
    "ActQuant",
    "QuantScheme",
    "compressed_layers",
    "fold_batchnorm",
    "coreml_kmeans_lut",
    "kmeans_lut",
    "lloyd_lut",
    "quantize_int8",
    "simulate",
]


# -- BN folding and fp16 -------------------------------------------------------------------------------------
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an ``nn.Sequential`` (in place).

    The BN is replaced by ``nn.Identity`` and the conv gains the folded bias; returns ``model``.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq._modules[b] = nn.Identity()
    return model


def _round_fp16(model: nn.Module) -> None:
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


# -- which layers ------------------------------------------------------------------------------------------
def compressed_layers(model: nn.Module, scheme: str | QuantScheme) -> list[str]:
    """Names of the Conv2d/Linear modules whose weights ``scheme`` compresses (the exporter's rule too)."""
    qs = QuantScheme.parse(scheme)
    if not qs.compresses_weights:
        return []
    out = []
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.Conv2d | nn.Linear)
            and m.weight.dim() > 1
            and m.weight.numel() > WEIGHT_THRESHOLD
        ):
            if qs.group_size is not None and m.weight.shape[0] % qs.group_size:
                continue
            out.append(name)
    return out


# -- weight math -------------------------------------------------------------------------------------------
def quantize_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """coremltools' per-output-channel ``linear_symmetric`` int8 rule on float16 weights.

    Returns ``(q int8 [same shape], scale float16 [C_out])``; the dequantized weight is ``fp16(q * scale)``.
    """
    w = np.asarray(weight, dtype=np.float16)
    axes = tuple(range(1, w.ndim))
    max_abs = np.maximum(
        np.abs(np.amin(w, axis=axes, keepdims=True)), np.abs(np.amax(w, axis=axes, keepdims=True))
    )
    scale = (max_abs - (-max_abs)) / np.float16(254)
    scale = np.where(scale == 0, np.float16(1), scale).astype(np.float16)  # all-zero channel: q = 0 anyway
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.reshape(-1)


def _dequant_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    shape = (-1,) + (1,) * (q.ndim - 1)
    return (q.astype(np.float32) * scale.astype(np.float32).reshape(shape)).astype(np.float16)


def _compress_weights(model: nn.Module, qs: QuantScheme) -> None:
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in compressed_layers(model, qs):
            weight = modules[name].weight
            w16 = weight.detach().cpu().numpy().astype(np.float16)
            if qs.kind == "palette":
                new = palettize(w16, qs.weight_bits, qs.group_size)
            else:
                new = _dequant_int8(*quantize_int8(w16))
            weight.copy_(torch.from_numpy(new.astype(np.float32)).reshape(weight.shape))


# -- public entry point ------------------------------------------------------------------------------------
def simulate(
    model: nn.Module,
    scheme: str | QuantScheme,
    *,
    calibration: object = None,
    compress_weights: bool = True,
) -> nn.Module:
    """A copy of ``model`` (eval mode) whose weights are what the Core ML artifact for ``scheme`` holds.

    ``calibration`` (images [N, 3, R, R] in [0, 1] or uint8, a batch dict, or an iterable of image batches)
    is required for ``w8a8``. ``compress_weights=False`` returns the fp16 weights instead of the compressed
    ones (what the exporter hands to coremltools for ``int8``/``w8a8``; ``w8a8`` activation ranges are
    calibrated on the fp16 weights before compression either way, so both sides get the same scales). The
    copy keeps ``spec``.
    """
    qs = QuantScheme.parse(scheme)
    sim = fold_batchnorm(copy.deepcopy(model).eval())
    if qs.name != "fp32":
        _round_fp16(sim)
    uncompressed = copy.deepcopy(sim.state_dict()) if not compress_weights else None
    if qs.kind == "w8a8":  # NNCF calibrates the float (fp16-rounded) model, before weight compression
        calibrate_activations(sim, calibration)
    if qs.compresses_weights:
        _compress_weights(sim, qs)
    if uncompressed is not None:
        result = sim.load_state_dict(_rename_for_act_quant(uncompressed, sim), strict=False)
        if result.unexpected_keys:  # pragma: no cover - a module layout simulate does not know
            raise RuntimeError(f"cannot restore fp16 weights for {result.unexpected_keys[:3]}")
    return sim.eval()


def _rename_for_act_quant(state: dict[str, torch.Tensor], sim: nn.Module) -> dict[str, torch.Tensor]:
    """Map pre-insertion weight names (``a.conv.weight``) to their place after ``ActQuant`` wrapping."""
    names = set(sim.state_dict())
    out = {}
    for key, value in state.items():
        if key in names:
            out[key] = value
        else:
            head, _, leaf = key.rpartition(".")
            out[f"{head}.1.{leaf}"] = value
    return out
