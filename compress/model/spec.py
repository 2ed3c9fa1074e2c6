"""Architectures as data: ``ArchSpec`` and its parts.

An ``ArchSpec`` describes one static multi-task MobileNetV3-style network completely: the input resolution,
the stem, one ``StageSpec`` per stage of inverted-residual ("bneck") blocks and one ``HeadSpec`` per task head
with the stage it branches from. Stages after the deepest branch point are not built: a model whose heads all
branch at stage 3 simply ends there.

Block expansion is given per block as a ratio of the block's *input* channels, so the MobileNetV3 paper's
tables (whose expanded sizes differ inside a stage: 240, 200, 184, 184) are expressed exactly; the expanded
channel count of a block is ``make_divisible(in_channels * ratio)``.

Compact form (for logs and tables), one token per stage, documented once here::

    r224_c16 | s1:k3_e1_c16_d1_s1_re | s2:k3_e4,3_c24_d2_s2_re | s3:k5_e3_c40_d3_s2_se_re | ...

``kK`` kernel, ``eA,B`` expansion ratio per block (one value = same for all), ``cN`` output channels,
``dN`` depth, ``sN`` stride of the first block, ``se`` squeeze-excitation, ``re``/``hs`` ReLU or h-swish.
Heads follow as ``tagging@5``: task and branch stage index (0-based).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from compress.errors import ConfigError

__all__ = ["ACTIVATIONS", "TASKS", "ArchSpec", "HeadSpec", "StageSpec", "expanded_channels", "make_divisible"]

TASKS = ("tagging", "detection", "saliency")
ACTIVATIONS = ("relu", "hswish")
KERNELS = (3, 5, 7)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never 10% below it (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def expanded_channels(in_channels: int, ratio: float) -> int:
    """Expanded width of a block: exact when ``in_channels * ratio`` is a whole number, else rounded to 8.

    Exact products keep the paper's tables (80 * 2.3 = 184) and pruned models (ratio = kept / in) exact.
    """
    product = in_channels * ratio
    if abs(product - round(product)) < 1e-3:
        return max(1, int(round(product)))
    return make_divisible(product)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def reject_unknown(kind: str, data: dict[str, Any], cls: type) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} must be a JSON object, but got {type(data).__name__}: {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {kind}; known keys: {sorted(known)}")
    missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is f.default_factory)
    if missing:
        raise ConfigError(f"missing key(s) {missing} in {kind}")


def _typed(kind: str, data: Any, make: Any) -> Any:
    """``make()``, with a wrongly typed value (a TypeError or ValueError) reported as a ConfigError."""
    try:
        return make()
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind} has a value of the wrong type ({exc}): {data!r:.200}") from None


@dataclass(frozen=True)
class StageSpec:
    """One stage of inverted-residual blocks; the first block carries the stride."""

    width: int
    depth: int
    kernel: int
    expand: tuple[float, ...]
    stride: int = 1
    se: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        if isinstance(self.expand, int | float):
            object.__setattr__(self, "expand", (float(self.expand),) * int(self.depth))
        object.__setattr__(self, "expand", tuple(float(e) for e in self.expand))
        _check(
            isinstance(self.width, int) and self.width >= 8,
            f"stage width must be an int >= 8, but got {self.width!r}",
        )
        _check(
            isinstance(self.depth, int) and 1 <= self.depth <= 16,
            f"stage depth must be an int in [1, 16], but got {self.depth!r}",
        )
        _check(self.kernel in KERNELS, f"stage kernel must be one of {KERNELS}, but got {self.kernel!r}")
        _check(self.stride in (1, 2), f"stage stride must be 1 or 2, but got {self.stride!r}")
        _check(
            self.act in ACTIVATIONS, f"stage activation must be one of {ACTIVATIONS}, but got {self.act!r}"
        )
        _check(
            len(self.expand) == self.depth,
            f"stage expand needs one ratio per block (depth={self.depth}), "
            f"but got {len(self.expand)}: {self.expand}",
        )
        _check(
            all(0.5 <= e <= 8 for e in self.expand),
            f"expansion ratios must lie in [0.5, 8], but got {self.expand}",
        )

    def token(self) -> str:
        ex = ",".join(f"{e:g}" for e in self.expand) if len(set(self.expand)) > 1 else f"{self.expand[0]:g}"
        se = "_se" if self.se else ""
        act = "re" if self.act == "relu" else "hs"
        return f"k{self.kernel}_e{ex}_c{self.width}_d{self.depth}_s{self.stride}{se}_{act}"


@dataclass(frozen=True)
class HeadSpec:
    """A task head and the stage (0-based index into ``ArchSpec.stages``) whose output it reads.

    ``channels`` sizes the head: tagging ``(last_conv, hidden)`` as MobileNetV3's classifier (960, 1280);
    detection ``(width,)`` of its shared tower; saliency ``(width,)`` of its decoder.
    """

    task: str
    branch: int
    channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        _check(self.task in TASKS, f"unknown head task {self.task!r}; known: {', '.join(TASKS)}")
        _check(
            isinstance(self.branch, int) and self.branch >= 0,
            f"head branch must be a stage index >= 0, but got {self.branch!r}",
        )
        want = 2 if self.task == "tagging" else 1
        _check(
            len(self.channels) == want and all(c >= 8 for c in self.channels),
            f"{self.task} head needs {want} channel size(s) >= 8, but got {self.channels}",
        )


@dataclass(frozen=True)
class ArchSpec:
    """A complete static multi-task network: frozen, hashable, JSON round-trip, validated on creation."""

    resolution: int
    stem: int
    stages: tuple[StageSpec, ...]
    heads: tuple[HeadSpec, ...]
    num_classes: int = 12
    stem_act: str = "hswish"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "heads", tuple(self.heads))
        _check(
            isinstance(self.resolution, int) and 32 <= self.resolution <= 1024 and self.resolution % 32 == 0,
            f"resolution must be a multiple of 32 in [32, 1024], but got {self.resolution!r}",
        )
        _check(
            isinstance(self.stem, int) and self.stem >= 8,
            f"stem width must be an int >= 8, but got {self.stem!r}",
        )
        _check(
            self.stem_act in ACTIVATIONS,
            f"stem activation must be one of {ACTIVATIONS}, but got {self.stem_act!r}",
        )
        _check(len(self.stages) >= 1, "an ArchSpec needs at least one stage")
        _check(all(isinstance(s, StageSpec) for s in self.stages), "stages must be StageSpec instances")
        _check(len(self.heads) >= 1, "an ArchSpec needs at least one head")
        _check(all(isinstance(h, HeadSpec) for h in self.heads), "heads must be HeadSpec instances")
        tasks = [h.task for h in self.heads]
        _check(len(set(tasks)) == len(tasks), f"each task may have one head only, but got {tasks}")
        for h in self.heads:
            _check(
                h.branch < len(self.stages),
                f"{h.task} head branches at stage {h.branch}, "
                f"but the spec has stages 0..{len(self.stages) - 1}",
            )
        _check(
            isinstance(self.num_classes, int) and self.num_classes >= 1,
            f"num_classes must be >= 1, but got {self.num_classes!r}",
        )

    # -- derived ------------------------------------------------------------------------------------------
    @property
    def built_stages(self) -> int:
        """Number of stages actually built: up to the deepest branch point."""
        return max(h.branch for h in self.heads) + 1

    def head(self, task: str) -> HeadSpec:
        for h in self.heads:
            if h.task == task:
                return h
        raise ConfigError(f"this spec has no {task!r} head; heads: {[h.task for h in self.heads]}")

    def stage_strides(self) -> list[int]:
        """Cumulative output stride after each stage (the stem has stride 2)."""
        out, s = [], 2
        for st in self.stages:
            s *= st.stride
            out.append(s)
        return out

    # -- serialisation --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stem": self.stem,
            "stem_act": self.stem_act,
            "num_classes": self.num_classes,
            "stages": [
                {
                    "width": s.width,
                    "depth": s.depth,
                    "kernel": s.kernel,
                    "expand": list(s.expand),
                    "stride": s.stride,
                    "se": s.se,
                    "act": s.act,
                }
                for s in self.stages
            ],
            "heads": [{"task": h.task, "branch": h.branch, "channels": list(h.channels)} for h in self.heads],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        reject_unknown("ArchSpec", data, cls)
        stages = data["stages"]
        heads = data["heads"]
        if not isinstance(stages, list) or not isinstance(heads, list):
            raise ConfigError("ArchSpec 'stages' and 'heads' must be lists")
        st = []
        for i, s in enumerate(stages):
            reject_unknown(f"ArchSpec stage {i}", s, StageSpec)
            st.append(
                _typed(
                    f"ArchSpec stage {i}",
                    s,
                    lambda s=s: StageSpec(
                        **{
                            **s,
                            "expand": tuple(s["expand"]) if isinstance(s["expand"], list) else s["expand"],
                        }
                    ),
                )
            )
        hd = []
        for i, h in enumerate(heads):
            reject_unknown(f"ArchSpec head {i}", h, HeadSpec)
            hd.append(
                _typed(
                    f"ArchSpec head {i}",
                    h,
                    lambda h=h: HeadSpec(**{**h, "channels": tuple(h.get("channels", ()))}),
                )
            )
        rest = {k: v for k, v in data.items() if k not in ("stages", "heads")}
        return _typed("ArchSpec", rest, lambda: cls(stages=tuple(st), heads=tuple(hd), **rest))

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"ArchSpec JSON does not parse: {exc}") from None
        return cls.from_dict(data)

    def short_hash(self) -> str:
        """A stable 12-hex-digit id of this spec (canonical JSON)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def describe(self) -> str:
        """The compact one-line form documented in this module's docstring."""
        parts = [f"r{self.resolution}_c{self.stem}"]
        parts += [f"s{i}:{s.token()}" for i, s in enumerate(self.stages)]
        parts += [f"{h.task}@{h.branch}" for h in self.heads]
        return " | ".join(parts)
