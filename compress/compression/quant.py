"""Quantization schemes, simulated in torch with exactly the math of the shipped Core ML artifact.

Scheme names (shared by every room): ``fp32``, ``fp16``, ``int8`` (weight-only, per-output-channel
symmetric), ``pal2``/``pal4``/``pal6``/``pal8`` (k-means palettization, one LUT per tensor), ``palN-gK``
(one LUT per group of K output channels) and ``w8a8`` (int8 weights and int8 per-tensor activations).

``simulate(model, scheme)`` returns a copy of the model whose weights are what the exported ML Program holds:

1. BatchNorm is folded into the preceding conv (coremltools fuses conv + BN during conversion too; folding
   first means the weights that get compressed are the same tensors on both sides).
2. Every float parameter and buffer is rounded to float16 (the ML Program stores fp16 weights); ``fp32``
   skips this step.
3. Weight compression of every Conv2d / Linear weight with more than ``WEIGHT_THRESHOLD`` elements (the
   exporter passes the same threshold to coremltools explicitly; smaller tensors stay fp16 on both sides):
   - ``int8``/``w8a8``: coremltools' ``linear_symmetric`` rule, reproduced in numpy float16 arithmetic:
     ``scale = fp16(2 * max|w| / 254)`` per output channel, ``q = clip(round(fp16(w / scale)), -127, 127)``,
     weight ``fp16(q * scale)``. The exporter lets coremltools quantize the same fp16 weights.
   - ``palN``/``palN-gK``: k-means (``kmeans_lut``) of the tensor's fp16 values (or of each group of K
     output channels) to a fp16 LUT. For N <= 4 this is coremltools' own clustering, the one
     ``palettize_weights(mode="kmeans")`` runs (exact 1-D k-means for >= 10,000 elements, scikit-learn's
     seeded k-means++ below), so LUT and indices equal coremltools'; for pal6/pal8 it is our faster
     weighted Lloyd k-means (within a few percent of the optimum; ``kmeans_lut`` gives the measured gap).
     The exporter stores exactly these values and indices as a ``constexpr_lut_to_dense`` LUT, so
     simulation and artifact agree bit for bit. Grouped palettization skips a tensor whose output channels
     are not a multiple of K (as coremltools does).
4. ``w8a8`` also quantizes activations: an ``ActQuant`` (int8, per-tensor affine) in front of every Conv2d
   and Linear. The ranges come from NNCF post-training quantization: ``nncf.quantize`` (preset MIXED,
   activations forced to 8-bit asymmetric per-tensor, since NNCF would otherwise give depthwise-conv inputs
   per-channel ranges; default MEAN_MINMAX ranges over all calibration batches, with NNCF's zero-point
   range tuning and its widening of ranges under 8e-4; bias correction off) runs on the BN-folded,
   fp16-rounded float model (before weight compression), and each ActQuant takes the calibrated
   range (``get_input_low_input_high``) of the NNCF quantizer on its layer's input: a pre-hook on the
   layer's input port, or the post-hook of the op that feeds it (looking through flatten / reshape /
   dropout). A quantizer NNCF shares between layers (e.g. a residual add feeding two heads) gives them the
   same range. NNCF leaves squeeze-and-excitation convs unquantized (its SE_BLOCK ignored pattern), but
   the shipped artifact quantizes every Conv2d / Linear input; those ActQuants take NNCF's default
   statistic computed by ``ActQuant`` itself on the same model and batches (mean over batches of each
   batch's min / max). NNCF's other quantizers (e.g. on residual-add or SE-gate inputs) have no ActQuant
   and are not simulated. Range to int8: ``scale = fp16((high - low) / 255)``, zero point
   ``round(-128 - low / scale)``. ``ActQuant`` traces to ``quantize`` / ``dequantize`` ops, which the Core
   ML ML Program (iOS 17+) keeps, with exactly these scales. The weights NNCF quantizes its own way are
   not used: weights follow step 3.

Activations of the other schemes are simulated in float32 (the device computes in fp16; the difference is
the usual fp16 rounding noise and is not modelled).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from compress.errors import ConfigError
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


COREML_KMEANS_MAX_BITS = 4
"""Palettes of at most this many bits are clustered by coremltools' own k-means (``coreml_kmeans_lut``);
wider ones (pal6, pal8) by ``lloyd_lut``, which costs 3-5x less there (see ``kmeans_lut``)."""


def kmeans_lut(values: np.ndarray, nbits: int, *, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Palettize ``values`` to ``2**nbits`` levels: ``(lut float16 [2**nbits], indices uint8 [values.size])``.

    The dequantized values are ``lut[indices]``. Which clustering runs (timed on one thread over every
    palettized tensor of the subnet ``default_space(12).sample(random.Random(3))`` extracted from the
    trained ``runs/search-10ms/supernet.safetensors``: 37 tensors, 11 of >= 10,000 elements; re-measure with
    ``benchmarks/compression.py --kmeans``):

    - ``nbits <= COREML_KMEANS_MAX_BITS`` (pal2, pal4, palN-gK with N <= 4): ``coreml_kmeans_lut``,
      coremltools' own rule, so LUT and indices equal what ``palettize_weights(mode="kmeans")`` computes
      for the same fp16 tensor (or group): the exact weighted 1-D k-means ``kmeans1d`` (the global optimum)
      for >= 10,000 elements, scikit-learn's seeded k-means++ below that. It costs no more than
      ``lloyd_lut`` there: 0.8x for pal2, 0.7x for pal4, 0.6x for pal4-g16 (on randomly initialised
      weights, where Lloyd converges faster, 1.4x for pal4).
    - ``nbits > 4`` (pal6, pal8): ``lloyd_lut``, because coremltools' rule costs 3.1x (pal6) and 5.3x
      (pal8: 10.8 s instead of 2.1 s per model) as much, nearly all of it in ``kmeans1d`` on the large
      tensors (about 0.7 s per tensor at 256 levels; 45 s for the 58 large tensors of the space's
      largest model, randomly initialised). The result is not coremltools'. Squared error above the
      optimum: on tensors of >= 10,000 elements, where coremltools reaches it, +0.9% (pal6) and +3.6%
      (pal8) for these trained weights (+2.3% and +17% for a synthetic Laplace tensor of 12,000 values);
      on smaller tensors +6% and +21%, where coremltools' scikit-learn clustering is +12% and +18%.
    """
    if nbits <= COREML_KMEANS_MAX_BITS:
        return coreml_kmeans_lut(values, nbits)
    return lloyd_lut(values, nbits, iterations=iterations)


def coreml_kmeans_lut(values: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """coremltools' k-means palettization of ``values`` (as float16): ``(lut float16, indices uint8)``.

    Calls the function ``palettize_weights(mode="kmeans")`` uses
    (``quantization_utils._get_kmeans_lookup_table_and_weight``): ``kmeans1d.cluster`` over the distinct
    values weighted by their counts for >= 10,000 elements, else scikit-learn
    ``KMeans(2**nbits, init="k-means++", tol=1e-2, n_init=1, random_state=0)`` on the raw values. The LUT
    is cast to float16 and the indices are the cluster labels, as coremltools stores them (unused entries,
    when there are fewer distinct values than levels, are zero).
    """
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # before import: its version chatter
    from coremltools.models.neural_network.quantization_utils import (
        _get_kmeans_lookup_table_and_weight,
    )

    w = np.asarray(values, dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct points than clusters
        lut, labels = _get_kmeans_lookup_table_and_weight(nbits, w)
    return np.asarray(lut).reshape(-1).astype(np.float16), np.asarray(labels).reshape(-1).astype(np.uint8)


def lloyd_lut(values: np.ndarray, nbits: int, *, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Our fast palettization: ``(lut float16 [2**nbits], indices uint8 [values.size])``.

    Weighted 1-D Lloyd k-means over the distinct float16 values (at most 65,536, so the cost does not grow
    with the tensor size), from four initialisations (the quantiles of the values; the quantiles of the
    cube root of their density, the high-resolution optimum for squared error, with the density from a
    histogram and from each value's neighbours; seeded k-means++); the lowest-error result is kept. The
    LUT is rounded to float16 and each value mapped to its nearest entry. With no more distinct values
    than levels the LUT holds them exactly (padded with repeats of the last).
    """
    flat = np.asarray(values, dtype=np.float16).reshape(-1).astype(np.float32)
    k = 1 << nbits
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if len(uniq) <= k:
        lut = np.concatenate([uniq, np.full(k - len(uniq), uniq[-1], np.float32)]).astype(np.float16)
        return lut, inverse.astype(np.uint8)
    x, w = uniq.astype(np.float64), counts.astype(np.float64)
    best = min((_lloyd(x, w, init, iterations) for init in _inits(x, w, k)), key=lambda r: r[0])
    lut = np.sort(best[1].astype(np.float16))
    lut32 = lut.astype(np.float32)
    nearest = np.searchsorted((lut32[1:] + lut32[:-1]) / 2, uniq)
    return lut, nearest[inverse].astype(np.uint8)


def _inits(x: np.ndarray, w: np.ndarray, k: int) -> list[np.ndarray]:
    """Initial centres: mass quantiles, quantiles of density^(1/3) from a histogram and from the local
    density on the distinct values (which resolves peaked, heavy-tailed trained weights), k-means++."""
    targets = (np.arange(k) + 0.5) / k
    cum = np.cumsum(w)
    by_mass = x[np.searchsorted(cum, targets * cum[-1])]
    hist, edges = np.histogram(x, bins=max(4 * k, 64), weights=w)
    g = np.cbrt(hist / np.diff(edges)) * np.diff(edges)
    cum_g = np.concatenate([[0.0], np.cumsum(g)])
    by_cbrt = np.interp(targets * cum_g[-1], cum_g, edges)
    return [_fill(by_mass, x, k), _fill(by_cbrt, x, k), _local_cbrt(x, w, k, targets), _kmeans_pp(x, w, k)]


def _local_cbrt(x: np.ndarray, w: np.ndarray, k: int, targets: np.ndarray, reach: int = 8) -> np.ndarray:
    """Quantiles of density^(1/3), the density at each distinct value taken over ``reach`` neighbours."""
    n, i = len(x), np.arange(len(x))
    lo, hi = np.clip(i - reach, 0, n - 1), np.clip(i + reach, 0, n - 1)
    cum_w = np.concatenate([[0.0], np.cumsum(w)])
    density = (cum_w[hi + 1] - cum_w[lo]) / np.maximum(x[hi] - x[lo], 1e-12)
    edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1]]])
    cum_g = np.concatenate([[0.0], np.cumsum(np.cbrt(density) * np.diff(edges))])
    return _fill(np.interp(targets * cum_g[-1], cum_g, edges), x, k)


def _kmeans_pp(x: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Weighted k-means++ seeding with a fixed seed (deterministic), as scikit-learn seeds its k-means.

    Each draw is ``Generator.choice(len(x), p=...)`` done by hand (normalised cumulative sum, one uniform,
    ``searchsorted``): the same random stream and picks, 1.7x faster than ``choice`` with its checks of ``p``
    (measured at 256 centres).
    """
    rng = np.random.default_rng(0)

    def draw(p: np.ndarray) -> int:
        cdf = np.cumsum(p)
        return int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right"))

    centres = [x[draw(w)]]
    d2 = (x - centres[0]) ** 2
    for _ in range(k - 1):
        p = w * d2
        if p.sum() <= 0:
            break
        c = x[draw(p)]
        centres.append(c)
        d2 = np.minimum(d2, (x - c) ** 2)
    return _fill(np.asarray(centres), x, k)


def _fill(centres: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    centres = np.unique(centres)
    if len(centres) < k:  # heavy ties: spread the missing centres evenly over the range
        centres = np.sort(np.concatenate([centres, np.linspace(x[0], x[-1], k - len(centres) + 2)[1:-1]]))
    return centres


def _lloyd(x: np.ndarray, w: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[float, np.ndarray]:
    k, assign = len(centres), None
    for _ in range(iterations):
        new = np.searchsorted((centres[1:] + centres[:-1]) / 2, x)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        mass = np.bincount(assign, weights=w, minlength=k)
        sums = np.bincount(assign, weights=w * x, minlength=k)
        centres = np.sort(np.where(mass > 0, sums / np.maximum(mass, 1e-300), centres))
    assign = np.searchsorted((centres[1:] + centres[:-1]) / 2, x)
    return float((w * (x - centres[assign]) ** 2).sum()), centres


def _palettize(weight: np.ndarray, nbits: int, group_size: int | None) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float16)
    groups = [w] if group_size is None else np.split(w, w.shape[0] // group_size, axis=0)
    parts = []
    for g in groups:
        lut, idx = kmeans_lut(g, nbits)
        parts.append(lut[idx].reshape(g.shape))
    return np.concatenate(parts, axis=0)


def _compress_weights(model: nn.Module, qs: QuantScheme) -> None:
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in compressed_layers(model, qs):
            weight = modules[name].weight
            w16 = weight.detach().cpu().numpy().astype(np.float16)
            if qs.kind == "palette":
                new = _palettize(w16, qs.weight_bits, qs.group_size)
            else:
                new = _dequant_int8(*quantize_int8(w16))
            weight.copy_(torch.from_numpy(new.astype(np.float32)).reshape(weight.shape))


# -- activations (w8a8) ------------------------------------------------------------------------------------
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


def _calibrate(model: nn.Module, calibration: object) -> list[ActQuant]:
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
        _calibrate(sim, calibration)
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
