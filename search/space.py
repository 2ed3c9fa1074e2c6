"""The search space as data: architecture choices (a subset of the supernet's), pruning and quantization.

``SearchSpace.sample(trial)`` is the only place that calls ``trial.suggest_*``. Parameter names are stable:
``resolution``, ``s3.width``, ``s3.depth``, ``s3.kernel``, ``s3.expand``, ``head.detection.branch``,
``s3.prune`` (fraction of stage 3's expanded channels removed), ``quant`` (scheme name). A trial's
parameters rebuild its ``Candidate`` exactly (``SearchSpace.candidate(params)``).

A space file (``--space FILE``, YAML or TOML) narrows the default choices; every key is optional::

    resolutions: [128, 160, 192]
    widths: [0.5, 0.75, 1.0]        # width multipliers of MobileNetV3-Large's stage widths
    depths: [2, 3, 4]               # stages 1..5
    kernels: [3, 5]
    expands: [4, 6]
    branches: {tagging: [5], detection: [3, 4], saliency: [2]}
    prune: [0.0, 0.25, 0.5]
    quant: [fp16, int8, pal6, pal4]

Architecture choices must lie inside the supernet's space (the supernet is trained once on it and reused).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import ConfigError
from compress.model import ArchSpec, make_divisible
from compress.model.space import SupernetSpace, default_space

__all__ = ["DEFAULT_PRUNE", "DEFAULT_QUANT", "Candidate", "SearchSpace", "load_space"]

DEFAULT_PRUNE = (0.0, 0.25, 0.5)
DEFAULT_QUANT = ("fp16", "int8", "pal8", "pal6", "pal4")
QUANT_FORMS = "fp32, fp16, int8, pal2, pal4, pal6, pal8, palN-gK (e.g. pal4-g16), w8a8"


@dataclass(frozen=True)
class Candidate:
    """One point of the search: an architecture, per-stage pruning ratios and a quantization scheme."""

    spec: ArchSpec
    prune: tuple[float, ...]
    quant: str

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "prune": list(self.prune), "quant": self.quant}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            ArchSpec.from_dict(data["spec"]), tuple(float(r) for r in data["prune"]), str(data["quant"])
        )

    def describe(self) -> str:
        prune = ",".join(f"{r:g}" for r in self.prune)
        return f"{self.spec.describe()} | prune {prune} | {self.quant}"


def _check_quant(names: tuple[str, ...]) -> None:
    from compress.compression import QuantScheme

    for name in names:
        try:
            QuantScheme.parse(name)
        except ConfigError:
            raise ConfigError(
                f"unknown quantization scheme {name!r} in the space; valid forms: {QUANT_FORMS}"
            ) from None


@dataclass(frozen=True)
class SearchSpace:
    """Architecture (``SupernetSpace``), per-stage prune-ratio choices and quantization schemes."""

    arch: SupernetSpace
    prune: tuple[float, ...] = DEFAULT_PRUNE
    quant: tuple[str, ...] = DEFAULT_QUANT

    def __post_init__(self) -> None:
        object.__setattr__(self, "prune", tuple(float(p) for p in self.prune))
        object.__setattr__(self, "quant", tuple(str(q) for q in self.quant))
        if not self.prune or any(not 0.0 <= p <= 0.9 for p in self.prune):
            raise ConfigError(f"prune choices must be fractions in [0, 0.9], but got {list(self.prune)}")
        if not self.quant:
            raise ConfigError("the space needs at least one quantization scheme")
        _check_quant(self.quant)

    @property
    def prunable_stages(self) -> tuple[int, ...]:
        """Stages with an expand conv (stage 0 of the MobileNetV3-Large skeleton has none)."""
        return tuple(i for i, s in enumerate(self.arch.stages) if max(s.expands) > 1.0)

    def sample(self, trial: Any) -> Candidate:
        """Suggest every parameter on ``trial`` (an Optuna trial) and return the candidate."""
        spec = self.arch.sample(trial)
        prune = [0.0] * len(spec.stages)
        for i in self.prunable_stages:
            prune[i] = float(trial.suggest_categorical(f"s{i}.prune", list(self.prune)))
        quant = str(trial.suggest_categorical("quant", list(self.quant)))
        return Candidate(spec, tuple(prune), quant)

    def candidate(self, params: dict[str, Any]) -> Candidate:
        """The candidate a trial's parameter dict describes (inverse of ``sample``)."""
        spec = self.arch.from_params(params)
        prune = tuple(float(params.get(f"s{i}.prune", 0.0)) for i in range(len(spec.stages)))
        return Candidate(spec, prune, str(params.get("quant", self.quant[0])))

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "prune": list(self.prune), "quant": list(self.quant)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(SupernetSpace.from_dict(data["arch"]), tuple(data["prune"]), tuple(data["quant"]))

    @classmethod
    def default(cls, num_classes: int = 12) -> SearchSpace:
        return cls(default_space(num_classes))


_KEYS = ("resolutions", "widths", "depths", "kernels", "expands", "branches", "prune", "quant")


def _subset(where: str, what: str, values: Any, allowed: tuple, cast: type) -> tuple:
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(f"{where}: {what} must be a non-empty list, but got {values!r}")
    try:
        picked = tuple(sorted({cast(v) for v in values}))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {what} must be a list of numbers, but got {values!r}") from None
    outside = [v for v in picked if v not in allowed]
    if outside:
        raise ConfigError(
            f"{where}: {what} {outside} lie outside the supernet space (choices: {list(allowed)}); "
            "pick from those choices"
        )
    return picked


def narrow(base: SearchSpace, data: dict[str, Any], *, where: str = "space") -> SearchSpace:
    """``base`` with the choices ``data`` names (keys as in the module docstring)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to lists, but got {type(data).__name__}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(_KEYS)}")
    arch = base.arch
    if "resolutions" in data:
        arch = dataclasses.replace(
            arch, resolutions=_subset(where, "resolutions", data["resolutions"], arch.resolutions, int)
        )
    stages = list(arch.stages)
    for i, st in enumerate(stages):
        if i == 0 and len(st.depths) == 1 and st.expands == (1.0,):
            continue  # MobileNetV3-Large's fixed first block
        changes: dict[str, Any] = {}
        if "widths" in data:
            large = st.widths[-1] / max(base_mult(base), 1e-9)
            wanted = [make_divisible(large * float(m), 8) for m in _as_list(where, "widths", data["widths"])]
            changes["widths"] = _subset(where, f"stage {i} widths", wanted, st.widths, int)
        for key, field, cast in (
            ("depths", "depths", int),
            ("kernels", "kernels", int),
            ("expands", "expands", float),
        ):
            if key in data:
                changes[field] = _subset(where, key, data[key], getattr(st, field), cast)
        stages[i] = dataclasses.replace(st, **changes)
    heads = list(arch.heads)
    if "branches" in data:
        branches = data["branches"]
        if not isinstance(branches, dict):
            raise ConfigError(f"{where}: branches must map a task to a list of stages, but got {branches!r}")
        tasks = {h.task for h in heads}
        for task in branches:
            if task not in tasks:
                raise ConfigError(
                    f"{where}: unknown task {task!r} in branches; tasks: {', '.join(sorted(tasks))}"
                )
        heads = [
            dataclasses.replace(
                h, branches=_subset(where, f"{h.task} branches", branches[h.task], h.branches, int)
            )
            if h.task in branches
            else h
            for h in heads
        ]
    arch = dataclasses.replace(arch, stages=tuple(stages), heads=tuple(heads))
    prune = _as_list(where, "prune", data["prune"]) if "prune" in data else base.prune
    quant = _as_list(where, "quant", data["quant"]) if "quant" in data else base.quant
    return SearchSpace(arch, tuple(prune), tuple(quant))


def base_mult(base: SearchSpace) -> float:
    """The largest width multiplier of the default space (stage widths are Large's times it)."""
    from compress.model.space import DEFAULT_MULTIPLIERS

    return max(DEFAULT_MULTIPLIERS)


def _as_list(where: str, key: str, value: Any) -> list:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list, but got {value!r}")
    return list(value)


def load_space(path: str | Path | None, *, num_classes: int = 12) -> SearchSpace:
    """The default space, narrowed by the YAML or TOML file at ``path`` (None: the default)."""
    base = SearchSpace.default(num_classes)
    if path is None:
        return base
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"space file {path} does not exist; pass a YAML or TOML file to --space")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"space file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"space file {path} must end in .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"space file {path} does not parse: {' '.join(str(exc).split())}") from None
    return narrow(base, data or {}, where=str(path))
