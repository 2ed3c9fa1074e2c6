"""Shared by the search benchmarks: a trained supernet (from a run directory, or trained with defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def supernet_for(run: str | None) -> tuple[Any, str]:
    """The supernet of ``run`` (a run directory) or one trained with the default recipe into runs/bench/."""
    from compress.data import load_data
    from compress.model import default_space
    from compress.training import TrainConfig, load_supernet, train_supernet

    if run:
        return load_supernet(Path(run) / "supernet.safetensors"), "builtin"
    cfg = TrainConfig()
    train, _ = load_data("builtin", resolution=cfg.resolution)
    space = default_space(num_classes=train.num_classes)
    result = train_supernet(
        space,
        train,
        Path("runs/bench/supernet.safetensors"),
        config=cfg,
        data_key=f"builtin@{cfg.resolution}",
    )
    return result.supernet, "builtin"
