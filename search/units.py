"""Parsing the units users type: latency budgets ("10ms", "9.7 ms", "0.01s") and sizes ("25MB", "0.5GB")."""

from __future__ import annotations

import math
import re

from compress.errors import ConfigError

__all__ = ["parse_duration_ms", "parse_size_mb"]

_NUMBER = r"(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[A-Za-zµ]*)\s*$")

_DURATION = {
    "ms": 1.0,
    "msec": 1.0,
    "s": 1000.0,
    "sec": 1000.0,
    "us": 1e-3,
    "µs": 1e-3,
    "min": 60e3,
    "h": 3600e3,
}
# Sizes in MB (10^6 bytes), the unit Core ML tools and Xcode report; MiB/GiB accepted too.
_SIZE = {
    "b": 1e-6,
    "kb": 1e-3,
    "mb": 1.0,
    "gb": 1e3,
    "kib": 1024 / 1e6,
    "mib": 1024**2 / 1e6,
    "gib": 1024**3 / 1e6,
}


def _parse(text: object, what: str, units: dict[str, float], example: str) -> float:
    if isinstance(text, int | float) and not isinstance(text, bool):
        raise ConfigError(f"{what} needs a unit, but got the bare number {text!r}; write e.g. {example}")
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be text like {example}, but got {text!r}")
    match = _PATTERN.match(text)
    if not match:
        raise ConfigError(f"cannot read {what} {text!r}; write a number and a unit, e.g. {example}")
    value = float(match["value"])
    unit = match["unit"]
    if not unit:
        raise ConfigError(f"{what} {text!r} has no unit; write e.g. {example} (units: {', '.join(units)})")
    factor = units.get(unit.lower()) if unit != "µs" else units["µs"]
    if factor is None:
        raise ConfigError(f"unknown unit {unit!r} in {what} {text!r}; use one of: {', '.join(units)}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be positive, but got {text!r}")
    result = value * factor
    if not math.isfinite(result) or result <= 0:  # e.g. '1e306h': finite digits, infinite milliseconds
        raise ConfigError(f"{what} {text!r} is out of range; write a finite amount, e.g. {example}")
    return result


def parse_duration_ms(text: str) -> float:
    """``"10ms"``, ``"9.7 ms"``, ``"0.01s"``, ``"500us"`` → milliseconds (float > 0)."""
    return _parse(text, "latency budget", _DURATION, "'10ms' or '0.01s'")


def parse_size_mb(text: str) -> float:
    """``"25MB"``, ``"0.5GB"``, ``"512KiB"`` → megabytes (10^6 bytes, float > 0)."""
    return _parse(text, "size", _SIZE, "'25MB' or '0.5GB'")
