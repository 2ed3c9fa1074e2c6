"""Quantization scheme names shared by all rooms, parsed into what the cost model needs.

``fp32``, ``fp16``, ``int8`` (weight-only, per-channel symmetric), ``pal2`` / ``pal4`` / ``pal6`` / ``pal8``
(k-means palettization, one LUT per tensor), ``palN-gK`` (one LUT per group of K output channels, iOS 18),
``w8a8`` (int8 weights and activations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from profiles._errors import ProfileError

__all__ = ["SCHEMES", "QuantScheme", "parse_quant"]

SCHEMES = ("fp32", "fp16", "int8", "pal2", "pal4", "pal6", "pal8", "palN-gK", "w8a8")
_PAL = re.compile(r"^pal([1-8])(?:-g(\d+))?$")


@dataclass(frozen=True)
class QuantScheme:
    """A parsed scheme: stored weight bits, LUT layout, activation precision."""

    name: str
    weight_bits: int  # bits per stored weight element (compressed tensors)
    act: str  # activation precision: fp32 | fp16 | int8
    kind: str  # float | linear | palette
    group: int = 0  # output channels per LUT (palette with groups); 0 = one LUT per tensor

    @property
    def float_bits(self) -> int:
        """Bits of tensors left uncompressed (small tensors, biases): 32 for fp32, else 16."""
        return 32 if self.name == "fp32" else 16

    @property
    def compresses(self) -> bool:
        return self.kind != "float"


@lru_cache(maxsize=64)
def parse_quant(name: str | None, *, default: str = "fp16") -> QuantScheme:
    """Parse a scheme name (``None`` means ``default``); unknown names raise :class:`ProfileError`."""
    raw = default if name is None else name
    key = str(raw).strip().lower()
    if key == "fp32":
        return QuantScheme("fp32", 32, "fp32", "float")
    if key == "fp16":
        return QuantScheme("fp16", 16, "fp16", "float")
    if key == "int8":
        return QuantScheme("int8", 8, "fp16", "linear")
    if key == "w8a8":
        return QuantScheme("w8a8", 8, "int8", "linear")
    m = _PAL.match(key)
    if m:
        bits, group = int(m.group(1)), int(m.group(2) or 0)
        if group < 0 or (m.group(2) is not None and group < 1):
            raise ProfileError(f"quant {raw!r}: group size must be >= 1")
        return QuantScheme(key, bits, "fp16", "palette", group)
    raise ProfileError(
        f"unknown quant scheme {raw!r}; known: fp32, fp16, int8, pal2, pal4, pal6, pal8, palN-gK "
        "(e.g. pal4-g16), w8a8"
    )
