"""compress.compression: structured pruning (Torch-Pruning) and quantization / palettization schemes.

``prune(model, PruneSpec(...))`` shrinks a ``MultiTaskNet``'s expanded channels and returns a plain
``MultiTaskNet`` again; ``simulate(model, scheme)`` returns a copy whose weights are exactly what the Core ML
artifact written by ``compress.export.export_coreml`` holds for that scheme.
"""

from __future__ import annotations

from compress.compression.pruning import PruneSpec, kept_channels, prune, pruned_spec
from compress.compression.quant import (
    WEIGHT_THRESHOLD,
    ActQuant,
    QuantScheme,
    compressed_layers,
    fold_batchnorm,
    kmeans_lut,
    quantize_int8,
    simulate,
)

__all__ = [
    "WEIGHT_THRESHOLD",
    "ActQuant",
    "PruneSpec",
    "QuantScheme",
    "compressed_layers",
    "fold_batchnorm",
    "kept_channels",
    "kmeans_lut",
    "prune",
    "pruned_spec",
    "quantize_int8",
    "simulate",
]
