"""``SearchConfig`` (everything ``compress search`` needs, validated) and ``SearchResult`` (what it returns)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from compress.errors import ConfigError
from compress.training import TrainConfig
from search.storage import local_storage
from search.study import OBJECTIVES, SAMPLERS, Limits

__all__ = ["DEFAULT_DEVICES", "SearchConfig", "SearchResult", "max_workers"]

DEFAULT_DEVICES = ("a11", "a12", "a13", "a14", "a15", "a16", "a17pro", "m1", "m2", "m3", "m4")


def max_workers() -> int:
    """The most local worker processes a search starts: one per CPU (each runs torch on one thread)."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SearchConfig:
    """Everything ``compress search`` needs; defaults are the README's main job."""

    budget_ms: float = 10.0
    #: the budget holds on this quantile of each device's latency interval (README: why 0.9)
    confidence: float = 0.9
    devices: tuple[str, ...] = DEFAULT_DEVICES
    trials: int = 48
    timeout_s: float | None = None
    sampler: str = "tpe"  # highest hypervolume at 48 trials in benchmarks/search_efficiency.py
    objectives: tuple[str, ...] = ("quality", "latency")
    memory_mb: float | None = None
    disk_mb: float | None = None
    data: str = "builtin"
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    seed: int = 0
    out: Path | None = None
    space_file: Path | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_images: int | None = 128
    population_size: int = 16
    finalize: bool = True
    finetune_steps: int | None = None  # None: as many as the time goal leaves (``search.finalize``)
    time_goal_s: float = 600.0
    #: Share of the time goal, counted from the run's start (data included), by which the supernet's training
    #: must end: fewer steps when the recipe's would not fit (``compress.training.train_supernet``'s time
    #: limit); None: the recipe's steps whatever they take (``--train-steps``). At 0.5 the default recipe
    #: keeps its 200 steps down to ~75 img/s (the slowest default run measured, 78 img/s, took 4.6 min for
    #: them), so it cuts only on a machine slower than any measured; there the trials' first population, the
    #: final training's fifth and the export still have the other half.
    supernet_time_share: float | None = 0.5
    cache_dir: Path | None = None
    init: Path | None = None
    pretrain: bool = False
    #: ``auto`` (the shipped calibration when it matches the data), ``none``, or a ``calibrate-quality`` file
    quality_calibration: str = "auto"

    def __post_init__(self) -> None:
        if not (self.budget_ms > 0):
            raise ConfigError(f"budget must be positive, but got {self.budget_ms} ms")
        if not 0.5 <= self.confidence <= 0.95:
            raise ConfigError(
                f"--confidence must lie in [0.5, 0.95] (the profiles' intervals end at the 95th percentile), "
                f"but got {self.confidence}"
            )
        if not self.devices:
            raise ConfigError("--devices needs at least one device")
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, but got {self.trials}")
        if not 1 <= self.workers <= max_workers():
            raise ConfigError(
                f"--workers must be between 1 and {max_workers()} (this machine's CPU count), "
                f"but got {self.workers}"
            )
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be between 0 and 2**32 - 1, but got {self.seed}")
        if self.eval_images is not None and self.eval_images < 1:
            raise ConfigError(
                f"--eval-images must be a positive count (0 = all images), but got {self.eval_images}"
            )
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if (
            bad
            or self.objectives[:2] != ("quality", "latency")
            or len(set(self.objectives)) != len(self.objectives)
        ):
            raise ConfigError(
                f"objectives must start with quality,latency and may add memory and/or disk, but got "
                f"{','.join(self.objectives)}"
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, but got {self.timeout_s}")
        if self.finetune_steps is not None and self.finetune_steps < 0:
            raise ConfigError(f"--finetune-steps must be >= 0, but got {self.finetune_steps}")
        if self.supernet_time_share is not None and not 0 < self.supernet_time_share <= 1:
            raise ConfigError(f"supernet_time_share must lie in (0, 1], but got {self.supernet_time_share}")
        if not 0 < self.time_goal_s <= 7 * 24 * 3600:
            raise ConfigError(f"--time-goal must lie in (0 s, 7 days], but got {self.time_goal_s:g} s")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path("runs") / f"search-{self.budget_ms:g}ms"

    @property
    def storage_url(self) -> str:
        """``--storage``, or the run directory's own study (``search.storage.local_storage``)."""
        return self.storage or local_storage(self.run_dir)

    @property
    def name(self) -> str:
        return self.study_name or self.run_dir.name

    def limits(self) -> Limits:
        return Limits(self.budget_ms, tuple(self.devices), self.memory_mb, self.disk_mb, self.confidence)

    def study_config(self, space: Any, identity: dict[str, str] | None = None) -> dict[str, Any]:
        """What must not change between reruns of one study (``identity``: supernet and data hashes)."""
        return {
            **(identity or {}),
            "budget_ms": self.budget_ms,
            "confidence": self.confidence,
            "devices": list(self.devices),
            "objectives": list(self.objectives),
            "memory_mb": self.memory_mb,
            "disk_mb": self.disk_mb,
            "data": self.data,
            "space": space.to_dict(),
            "eval_images": self.eval_images,
        }


@dataclass
class SearchResult:
    """What ``run_search`` returns: the run directory, its trials and front tables, the chosen trial's row
    and the chosen model's card (None when ``finalize`` was off)."""

    run_dir: Path
    trials: pd.DataFrame
    front: pd.DataFrame
    chosen: dict[str, Any] | None
    card: dict[str, Any] | None
