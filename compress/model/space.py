"""``SupernetSpace``: the elastic search space of the weight-sharing supernet, declared as data.

A space fixes the skeleton (number of stages, strides, SE, activations, stem, head channel sizes, classes)
and lists the choices: input resolutions; per stage the output widths, depths, depthwise kernel sizes and
expansion ratios; per task head the stages it may branch from. Every ``ArchSpec`` it produces uses one
expansion ratio for all blocks of a stage; ``contains`` also accepts specs that mix ratios from the choices
inside a stage (the supernet runs those too).

``sample(rng)`` draws a spec with a ``random.Random``, a numpy ``Generator`` or an Optuna ``Trial``; with a
trial the parameter names are stable: ``resolution``, ``s{i}.width``, ``s{i}.depth``, ``s{i}.kernel``,
``s{i}.expand``, ``head.{task}.branch``. ``to_params(spec)`` / ``from_params(params)`` convert between a spec
and that parameter dict (e.g. for ``study.enqueue_trial``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, fields
from typing import Any

from compress.errors import ConfigError
from compress.model.spec import ACTIVATIONS, KERNELS, ArchSpec, HeadSpec, StageSpec, reject_unknown

__all__ = ["HeadChoices", "StageChoices", "SupernetSpace", "default_space"]

LARGE_WIDTHS = (16, 24, 40, 80, 112, 160)
DEFAULT_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0)
# 1.25 and 7x7 kernels are left out of the default: the largest subnet dominates supernet training time, and
# the default must train in minutes on 2 CPU cores. Pass your own SupernetSpace for a bigger space.
DEFAULT_KERNELS = (3, 5)


def _choices(name: str, values: Any, cast: type) -> tuple:
    if isinstance(values, int | float | str):
        values = (values,)
    try:
        out = tuple(sorted({cast(v) for v in values}))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of {cast.__name__} values, but got {values!r}") from None
    if not out:
        raise ConfigError(f"{name} needs at least one choice, but got {values!r}")
    return out


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class StageChoices:
    """The choices of one stage; ``stride``, ``se`` and ``act`` are fixed by the skeleton."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[float, ...]
    stride: int = 1
    se: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _choices("stage widths", self.widths, int))
        object.__setattr__(self, "depths", _choices("stage depths", self.depths, int))
        object.__setattr__(self, "kernels", _choices("stage kernels", self.kernels, int))
        object.__setattr__(self, "expands", _choices("stage expands", self.expands, float))
        _check(min(self.widths) >= 8, f"stage widths must be >= 8, but got {self.widths}")
        _check(
            1 <= min(self.depths) and max(self.depths) <= 16,
            f"stage depths must lie in [1, 16], but got {self.depths}",
        )
        _check(
            set(self.kernels) <= set(KERNELS),
            f"stage kernels must be among {KERNELS}, but got {self.kernels}",
        )
        _check(
            0.5 <= min(self.expands) and max(self.expands) <= 8,
            f"stage expands must lie in [0.5, 8], but got {self.expands}",
        )
        _check(self.stride in (1, 2), f"stage stride must be 1 or 2, but got {self.stride!r}")
        _check(self.act in ACTIVATIONS, f"stage act must be one of {ACTIVATIONS}, but got {self.act!r}")


@dataclass(frozen=True)
class HeadChoices:
    """A task head: the stages it may branch from and its (fixed) channel sizes, as in ``HeadSpec``."""

    task: str
    branches: tuple[int, ...]
    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", _choices(f"{self.task} head branches", self.branches, int))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        for b in self.branches:
            HeadSpec(self.task, b, self.channels)  # validates task, branch >= 0 and channels


@dataclass(frozen=True)
class SupernetSpace:
    """The supernet's search space (frozen, hashable, validated, JSON round trip)."""

    resolutions: tuple[int, ...]
    stem: int
    stages: tuple[StageChoices, ...]
    heads: tuple[HeadChoices, ...]
    num_classes: int = 12
    stem_act: str = "hswish"

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolutions", _choices("resolutions", self.resolutions, int))
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "heads", tuple(self.heads))
        _check(len(self.stages) >= 1, "a SupernetSpace needs at least one stage")
        _check(len(self.heads) >= 1, "a SupernetSpace needs at least one head")
        tasks = [h.task for h in self.heads]
        _check(len(set(tasks)) == len(tasks), f"each task may have one head only, but got {tasks}")
        for h in self.heads:
            _check(
                max(h.branches) < len(self.stages),
                f"{h.task} head branch choices {h.branches} exceed the stages 0..{len(self.stages) - 1}",
            )
        # Building the extremes validates resolutions, stem, activation and classes by ArchSpec's rules.
        self.largest()
        self.smallest()

    # -- extremes and sampling ---------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(h.task for h in self.heads)

    def _spec(self, pick: Any) -> ArchSpec:
        """Build a spec, ``pick(name, choices)`` choosing each parameter."""
        res = pick("resolution", self.resolutions)
        stages = []
        for i, s in enumerate(self.stages):
            depth = pick(f"s{i}.depth", s.depths)
            expand = pick(f"s{i}.expand", s.expands)
            width, kernel = pick(f"s{i}.width", s.widths), pick(f"s{i}.kernel", s.kernels)
            stages.append(StageSpec(width, depth, kernel, (expand,) * depth, s.stride, s.se, s.act))
        heads = tuple(
            HeadSpec(h.task, pick(f"head.{h.task}.branch", h.branches), h.channels) for h in self.heads
        )
        return ArchSpec(
            res, self.stem, tuple(stages), heads, num_classes=self.num_classes, stem_act=self.stem_act
        )

    def largest(self) -> ArchSpec:
        """Every choice at its most compute: the backbone's maximum, each head at its costliest branch.

        A pooled head (tagging) costs most at its deepest branch, which needs the whole backbone; a dense head
        (detection, saliency) costs most at its shallowest, whose feature map is the largest.
        """
        return self._spec(lambda name, choices: _extreme(name, choices, largest=True))

    def smallest(self) -> ArchSpec:
        """Every choice at its least compute (the mirror of ``largest``)."""
        return self._spec(lambda name, choices: _extreme(name, choices, largest=False))

    def sample(self, rng: Any) -> ArchSpec:
        """A uniformly random spec; ``rng``: ``random.Random``, numpy ``Generator`` or Optuna ``Trial``."""
        if isinstance(rng, random.Random):
            return self._spec(lambda name, choices: rng.choice(choices))
        if hasattr(rng, "suggest_categorical"):
            return self._spec(lambda name, choices: rng.suggest_categorical(name, list(choices)))
        if hasattr(rng, "integers"):
            return self._spec(lambda name, choices: choices[int(rng.integers(len(choices)))])
        raise ConfigError(
            f"rng must be a random.Random, a numpy Generator or an Optuna Trial, but got {type(rng).__name__}"
        )

    def to_params(self, spec: ArchSpec) -> dict[str, Any]:
        """The parameter dict (names as in ``sample`` with a trial) of a spec in this space."""
        self.check(spec)
        params: dict[str, Any] = {"resolution": spec.resolution}
        for i, s in enumerate(spec.stages):
            if len(set(s.expand)) > 1:
                raise ConfigError(
                    f"stage {i} mixes expansion ratios {s.expand}; parameters need one per stage"
                )
            params |= {
                f"s{i}.width": s.width,
                f"s{i}.depth": s.depth,
                f"s{i}.kernel": s.kernel,
                f"s{i}.expand": s.expand[0],
            }
        params |= {f"head.{h.task}.branch": h.branch for h in spec.heads}
        return params

    def from_params(self, params: dict[str, Any]) -> ArchSpec:
        """The spec a parameter dict describes (inverse of ``to_params``); checked against the space."""

        def pick(name: str, choices: tuple) -> Any:
            if name not in params:
                raise ConfigError(f"parameter {name!r} is missing; expected one of {list(choices)}")
            return params[name]

        spec = self._spec(pick)
        self.check(spec)
        return spec

    # -- membership ----------------------------------------------------------------------------------------
    def check(self, spec: ArchSpec) -> None:
        """Raise ConfigError naming the first way ``spec`` falls outside this space."""
        _check(isinstance(spec, ArchSpec), f"expected an ArchSpec, but got {type(spec).__name__}")
        _check(
            spec.resolution in self.resolutions,
            f"resolution {spec.resolution} is not among {self.resolutions}",
        )
        _check(spec.stem == self.stem, f"stem width {spec.stem} differs from the space's {self.stem}")
        _check(
            spec.stem_act == self.stem_act,
            f"stem_act {spec.stem_act!r} differs from the space's {self.stem_act!r}",
        )
        _check(
            spec.num_classes == self.num_classes,
            f"num_classes {spec.num_classes} differs from {self.num_classes}",
        )
        _check(
            len(spec.stages) == len(self.stages),
            f"spec has {len(spec.stages)} stages, space has {len(self.stages)}",
        )
        for i, (s, c) in enumerate(zip(spec.stages, self.stages, strict=True)):
            for field, value, allowed in (
                ("width", s.width, c.widths),
                ("depth", s.depth, c.depths),
                ("kernel", s.kernel, c.kernels),
            ):
                _check(value in allowed, f"stage {i} {field} {value} is not among {allowed}")
            bad = [e for e in s.expand if not any(abs(e - a) < 1e-6 for a in c.expands)]
            _check(not bad, f"stage {i} expand ratio(s) {bad} not among {c.expands}")
            for field in ("stride", "se", "act"):
                got, want = getattr(s, field), getattr(c, field)
                _check(got == want, f"stage {i} {field} {got!r} differs from the space's {want!r}")
        choices = {h.task: h for h in self.heads}
        for h in spec.heads:
            _check(h.task in choices, f"{h.task} head is not in the space; tasks: {list(choices)}")
            hc = choices[h.task]
            _check(h.branch in hc.branches, f"{h.task} head branch {h.branch} is not among {hc.branches}")
            _check(
                h.channels == hc.channels, f"{h.task} head channels {h.channels} differ from {hc.channels}"
            )

    def contains(self, spec: ArchSpec) -> bool:
        """Whether the supernet can run ``spec`` (see ``check`` for the reason when it cannot)."""
        try:
            self.check(spec)
        except ConfigError:
            return False
        return True

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def plain(obj: Any) -> dict[str, Any]:
            return {
                f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in fields(obj)
            }

        return {
            **plain(self),
            "stages": [plain(s) for s in self.stages],
            "heads": [plain(h) for h in self.heads],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetSpace:
        reject_unknown("SupernetSpace", data, cls)
        stages, heads = data["stages"], data["heads"]
        _check(
            isinstance(stages, list) and isinstance(heads, list),
            "SupernetSpace 'stages' and 'heads' must be lists",
        )
        for i, s in enumerate(stages):
            reject_unknown(f"SupernetSpace stage {i}", s, StageChoices)
        for i, h in enumerate(heads):
            reject_unknown(f"SupernetSpace head {i}", h, HeadChoices)
        rest = {k: v for k, v in data.items() if k not in ("stages", "heads")}
        return cls(
            stages=tuple(StageChoices(**s) for s in stages),
            heads=tuple(HeadChoices(**h) for h in heads),
            **rest,
        )

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_json(cls, text: str) -> SupernetSpace:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SupernetSpace JSON does not parse: {exc}") from None
        return cls.from_dict(data)


def _scaled(width: int, multipliers: tuple[float, ...]) -> tuple[int, ...]:
    from compress.model.spec import make_divisible

    return tuple(sorted({make_divisible(width * m, 8) for m in multipliers}))


POOLED_TASKS = ("tagging",)  # heads that pool their branch's features; the rest are dense predictors


def _extreme(name: str, choices: tuple[Any, ...], *, largest: bool) -> Any:
    """The maximum or minimum choice; for a dense head's branch the shallowest costs most (see ``largest``)."""
    dense_branch = name.startswith("head.") and name.endswith(".branch") and name[5:-7] not in POOLED_TASKS
    return choices[0] if largest == dense_branch else choices[-1]


def default_space(num_classes: int = 12) -> SupernetSpace:
    """A MobileNetV3-Large-shaped 6-stage space (strides 1, 2, 2, 2, 1, 2; SE and activations as Large).

    Widths: Large's stage widths (16, 24, 40, 80, 112, 160) at multipliers 0.35, 0.5, 0.75 and 1.0 (rounded to
    8). Stage 0 is Large's first block (depth 1, 3x3, no expansion); stages 1-5: depth 1-4, kernels 3/5,
    expansion 3/4/6. Resolutions 96, 128 and 160: the range the supernet is trained at (the built-in images are
    drawn at 160 px), wide enough that the largest candidates exceed 10 ms on A11 (the largest is ~15 ms).
    Heads: tagging at stage 4 or 5 (classifier 512/768), detection at stage 2, 3 or 4 (stride 8 or 16, tower
    64), saliency at stage 1, 2 or 3 (stride 4-16, decoder 32).
    """
    skeleton = (
        (1, False, "relu"),
        (2, False, "relu"),
        (2, True, "relu"),
        (2, False, "hswish"),
        (1, True, "hswish"),
        (2, True, "hswish"),
    )
    stages = [StageChoices(_scaled(16, DEFAULT_MULTIPLIERS), (1,), (3,), (1.0,), 1, False, "relu")]
    for width, (stride, se, act) in zip(LARGE_WIDTHS[1:], skeleton[1:], strict=True):
        stages.append(
            StageChoices(
                _scaled(width, DEFAULT_MULTIPLIERS),
                (1, 2, 3, 4),
                DEFAULT_KERNELS,
                (3.0, 4.0, 6.0),
                stride,
                se,
                act,
            )
        )
    heads = (
        HeadChoices("tagging", (4, 5), (512, 768)),
        HeadChoices("detection", (2, 3, 4), (64,)),
        HeadChoices("saliency", (1, 2, 3), (32,)),
    )
    return SupernetSpace((96, 128, 160), 16, tuple(stages), heads, num_classes=num_classes)
