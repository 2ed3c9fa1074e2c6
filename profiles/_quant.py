"""Quantization scheme names: the one parser every room uses (the cost model, the compressor, the exporter).

``fp32``, ``fp16``, ``int8`` (weight-only, per-output-channel symmetric), ``pal2`` / ``pal4`` / ``pal6`` /
``pal8`` (k-means palettization, one LUT per tensor), ``palN-gK`` (one LUT per group of K output channels,
iOS 18) and ``w8a8`` (int8 weights and int8 per-tensor activations, iOS 17). Only tensors with more than
:data:`WEIGHT_THRESHOLD` elements are compressed, on both sides (coremltools' default, made explicit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from profiles._errors import ConfigError

__all__ = ["FORMS", "PALETTE_BITS", "SCHEMES", "WEIGHT_THRESHOLD", "QuantScheme", "parse_quant"]

SCHEMES = ("fp32", "fp16", "int8", "pal2", "pal4", "pal6", "pal8", "palN-gK", "w8a8")
FORMS = "fp32, fp16, int8, pal2, pal4, pal6, pal8, palN-gK (e.g. pal4-g16), w8a8"
PALETTE_BITS = (2, 4, 6, 8)
WEIGHT_THRESHOLD = 2048
"""A weight tensor is compressed only when it has more elements than this (coremltools' default; the
exporter passes it to coremltools, the simulation and the cost model apply the same rule)."""

_PATTERN = re.compile(r"^(fp32|fp16|int8|w8a8|pal(\d+)(?:-g(\d+))?)$")


@dataclass(frozen=True)
class QuantScheme:
    """A parsed scheme; build one with ``QuantScheme.parse("pal4-g16")`` (or ``parse_quant``)."""

    name: str
    kind: str
    """``"float"`` (fp32/fp16), ``"linear"`` (int8), ``"palette"`` (palN[-gK]) or ``"w8a8"``."""
    weight_bits: int
    """Bits per stored weight element of a compressed tensor (the float width for float schemes)."""
    group_size: int | None = None
    """Output channels per LUT (grouped palettes); None = one LUT per tensor."""
    activation_bits: int | None = None
    """8 for w8a8 (int8 activations); None = float activations."""

    @classmethod
    def parse(cls, name: str | QuantScheme) -> QuantScheme:
        """Parse a scheme name; a bad one raises ConfigError listing the valid forms."""
        if isinstance(name, QuantScheme):
            return name
        return _parse(str(name))

    @property
    def act(self) -> str:
        """Activation precision on the device: ``int8``, ``fp32`` or ``fp16``."""
        if self.activation_bits == 8:
            return "int8"
        return "fp32" if self.name == "fp32" else "fp16"

    @property
    def float_bits(self) -> int:
        """Bits of tensors left uncompressed (small tensors, biases): 32 for fp32, else 16."""
        return 32 if self.name == "fp32" else 16

    @property
    def compresses_weights(self) -> bool:
        return self.kind in ("linear", "palette", "w8a8")

    @property
    def min_ios(self) -> int:
        """Minimum iOS deployment target of the artifact: 16; 17 for w8a8; 18 for grouped palettes."""
        if self.kind == "w8a8":
            return 17
        if self.kind == "palette" and self.group_size is not None:
            return 18
        return 16

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=64)
def _parse(raw: str) -> QuantScheme:
    text = raw.strip().lower()
    m = _PATTERN.match(text)
    if m is None:
        raise ConfigError(f"unknown quantization scheme {raw!r}; valid: {FORMS}")
    if text in ("fp32", "fp16"):
        return QuantScheme(text, "float", int(text[2:]))
    if text == "int8":
        return QuantScheme(text, "linear", 8)
    if text == "w8a8":
        return QuantScheme(text, "w8a8", 8, activation_bits=8)
    bits, group = int(m.group(2)), m.group(3)
    if bits not in PALETTE_BITS:
        raise ConfigError(f"palettization width in {raw!r} must be one of {PALETTE_BITS}; valid: {FORMS}")
    if group is not None and not 1 <= int(group) <= 4096:
        raise ConfigError(f"group size in {raw!r} must lie in [1, 4096], but got {group}")
    return QuantScheme(text, "palette", bits, None if group is None else int(group))


def parse_quant(name: str | QuantScheme | None, *, default: str = "fp16") -> QuantScheme:
    """:meth:`QuantScheme.parse` with ``None`` meaning ``default``."""
    return QuantScheme.parse(default if name is None else name)
