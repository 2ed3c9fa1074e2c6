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


def load_run(run: str | Path) -> dict[str, Any]:
    """A finished run directory: its run.json config, supernet, trials, baselines, card and a Scorer built
    with the settings its search scored with (same data, validation subset, seed, devices and quality
    model)."""
    import json

    import pandas as pd

    from compress.training import load_supernet
    from search.quality import QualityModel
    from search.scorer import Scorer

    run = Path(run)
    if not (run / "run.json").is_file():
        raise SystemExit(f"{run}: not a `compress search` run directory (no run.json); pass --run RUN_DIR")
    meta = json.loads((run / "run.json").read_text())
    cfg = meta["config"]
    supernet = load_supernet(run / "supernet.safetensors")
    scorer = Scorer(
        supernet,
        data=cfg["data"],
        devices=list(cfg["devices"]),
        eval_images=cfg["eval_images"],
        seed=cfg["seed"],
        confidence=cfg.get("confidence", 0.9),  # runs before 2026-11-30 did not record it: the default
    )
    scorer.quality_model = QualityModel.of_run(run)
    card_path = run / "chosen" / "card.json"
    return {
        "dir": run,
        "meta": meta,
        "config": cfg,
        "supernet": supernet,
        "scorer": scorer,
        "trials": pd.read_csv(run / "trials.csv"),
        "baselines": pd.read_csv(run / "baselines.csv"),
        "card": json.loads(card_path.read_text()) if card_path.is_file() else None,
    }


def chosen_and_baseline(run: dict[str, Any], path: str | Path) -> tuple[Any, Any]:
    """The chosen candidate of a ``load_run`` result and the baseline its card compared it with; exits with a
    one-line message when the run has no card with a baseline."""
    from search.rundir import candidate_from_row
    from search.space import Candidate

    card = run["card"]
    if card is None or not card.get("baseline"):
        raise SystemExit(
            f"{path}: no chosen/card.json with a baseline; run `compress search` to the end first"
        )
    chosen = Candidate.from_dict(
        {"spec": card["spec"], "prune": card["prune"]["ratios"], "quant": card["quant"]}
    )
    rows = run["baselines"][run["baselines"]["name"] == card["baseline"]["name"]]
    return chosen, candidate_from_row(rows.iloc[0])


def trained_quality(scorer: Any, cand: Any, *, steps: int, seed: int, init: str, label: str = "") -> Any:
    """``cand`` trained ``steps`` steps with the final-training recipe of ``compress search`` and scored on
    the test split (``search.finalize.train_candidate``). Returns ``search.finalize.Trained``."""
    from search.finalize import train_candidate

    return train_candidate(scorer, cand, steps=steps, seed=seed, init=init, label=label)
