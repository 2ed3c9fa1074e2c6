"""MobileNetV3-Large and -Small presets, exactly as the paper's Tables 1 and 2, at width 0.35-1.25.

Registered one-line constructors in the style of timm (``mobilenetv3_large_100`` is the paper's network)::

    >>> spec = get_preset("mobilenetv3_large_100", num_classes=12, resolution=224)
    >>> list_presets()[:2]
    ['mobilenetv3_large_035', 'mobilenetv3_large_050']

Channels scale with ``make_divisible(c * width, 8)`` (torchvision's rule) for the stem, every block's input,
expanded and output width, and the tagging head (Large 960/1280, Small 576/1024; the last conv is 6x the
last stage's width). Each block's expansion is stored as ``scaled_expanded / scaled_in`` so the spec
reproduces the scaled table exactly. Default heads: tagging at the last stage, detection at the last
stride-16 stage (tower ``max(64, scale(96))`` channels), saliency at the last stride-8 stage (decoder
``max(32, scale(48))``); these two sizes are ours, the paper has no such heads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from compress.errors import ConfigError
from compress.model.spec import TASKS, ArchSpec, HeadSpec, StageSpec, make_divisible

__all__ = ["PRESET_WIDTHS", "get_preset", "list_presets", "mobilenetv3"]

PRESET_WIDTHS = {"035": 0.35, "050": 0.5, "075": 0.75, "100": 1.0, "125": 1.25}

# The paper's tables, grouped into stages of equal width/kernel/SE/activation:
# (kernel, expanded sizes per block, out channels, first-block stride, SE, activation).
_LARGE = (
    (3, (16,), 16, 1, False, "relu"),
    (3, (64, 72), 24, 2, False, "relu"),
    (5, (72, 120, 120), 40, 2, True, "relu"),
    (3, (240, 200, 184, 184), 80, 2, False, "hswish"),
    (3, (480, 672), 112, 1, True, "hswish"),
    (5, (672, 960, 960), 160, 2, True, "hswish"),
)
_SMALL = (
    (3, (16,), 16, 2, True, "relu"),
    (3, (72, 88), 24, 2, False, "relu"),
    (5, (96, 240, 240), 40, 2, True, "hswish"),
    (5, (120, 144), 48, 1, True, "hswish"),
    (5, (288, 576, 576), 96, 2, True, "hswish"),
)
_TABLES = {"large": (_LARGE, 1280), "small": (_SMALL, 1024)}
# Default branch stages: (tagging, detection at stride 16, saliency at stride 8).
_BRANCHES = {"large": (5, 4, 2), "small": (4, 3, 1)}


def mobilenetv3(
    variant: str,
    width: float = 1.0,
    *,
    num_classes: int = 12,
    resolution: int = 224,
    heads: Sequence[str] | None = None,
) -> ArchSpec:
    """The MobileNetV3 ``variant`` ("large" | "small") at ``width`` as an ArchSpec with the given heads."""
    if variant not in _TABLES:
        raise ConfigError(f"unknown MobileNetV3 variant {variant!r}; known: large, small")
    table, last_hidden = _TABLES[variant]

    def scale(c: float) -> int:
        return make_divisible(c * width, 8)

    stem = scale(16)
    in_ch, stages = stem, []
    for kernel, exps, out, stride, se, act in table:
        ratios = []
        for e in exps:
            ratios.append(scale(e) / in_ch)
            in_ch = scale(out)
        stages.append(StageSpec(scale(out), len(exps), kernel, tuple(ratios), stride, se, act))
    head_channels = {
        "tagging": (6 * stages[-1].width, scale(last_hidden)),
        "detection": (max(64, scale(96)),),
        "saliency": (max(32, scale(48)),),
    }
    tasks = tuple(TASKS) if heads is None else tuple(heads)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"unknown head task(s) {unknown or list(tasks)}; known: {', '.join(TASKS)}")
    branch = dict(zip(TASKS, _BRANCHES[variant], strict=True))
    hs = tuple(HeadSpec(t, branch[t], head_channels[t]) for t in tasks)
    return ArchSpec(resolution, stem, tuple(stages), hs, num_classes=num_classes, stem_act="hswish")


_REGISTRY: dict[str, Callable[..., ArchSpec]] = {}


def _register(name: str, variant: str, width: float) -> None:
    def constructor(
        *, num_classes: int = 12, resolution: int = 224, heads: Sequence[str] | None = None
    ) -> ArchSpec:
        return mobilenetv3(variant, width, num_classes=num_classes, resolution=resolution, heads=heads)

    constructor.__name__ = name
    constructor.__doc__ = f"MobileNetV3-{variant.title()} at width {width} (the paper's table, scaled)."
    _REGISTRY[name] = constructor


for _variant in ("large", "small"):
    for _suffix, _width in PRESET_WIDTHS.items():
        _register(f"mobilenetv3_{_variant}_{_suffix}", _variant, _width)


def list_presets() -> list[str]:
    """Names of all registered presets, sorted."""
    return sorted(_REGISTRY)


def get_preset(
    name: str, *, num_classes: int = 12, resolution: int = 224, heads: Sequence[str] | None = None
) -> ArchSpec:
    """The ArchSpec of preset ``name``; ``heads`` picks the tasks (default: all three)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(list_presets())}")
    return _REGISTRY[name](num_classes=num_classes, resolution=resolution, heads=heads)
