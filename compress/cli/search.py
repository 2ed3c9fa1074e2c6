"""``compress search``: the main job — supernet, Optuna study, Pareto front, chosen deployable model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def search_cmd(
    budget: Annotated[
        str, typer.Option(help="Latency budget on every target device, e.g. '10ms', '0.01s'.")
    ] = "10ms",
    confidence: Annotated[
        float | None,
        typer.Option(
            help="Hold the budget on this quantile of each device's latency interval (0.5-0.95; default 0.9)."
        ),
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="Comma-separated device profiles (default: a11..a17pro, m1..m4).")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Finished trials the study should hold (default 48; fewer, never under the sampler's first "
            "population, when the time goal runs short)."
        ),
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Stop starting trials after this long, e.g. '10min'.")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe (default), nsga2, gp or random.")] = None,
    objectives: Annotated[str | None, typer.Option(help="quality,latency[,memory][,disk].")] = None,
    memory: Annotated[
        str | None, typer.Option(help="Peak-memory limit on every device, e.g. '25MB'.")
    ] = None,
    disk: Annotated[str | None, typer.Option(help="On-disk size limit, e.g. '16MB'.")] = None,
    data: Annotated[str | None, typer.Option(help="'builtin' or 'coco:PATH'.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            envvar="COMPRESS_STORAGE",
            show_envvar=True,
            help="Optuna storage URL (default: the run dir's study.journal, Optuna's JournalStorage file; "
            "study.db in runs made before); keeps a password off the command line when set in the environment.",
        ),
    ] = None,
    study_name: Annotated[str | None, typer.Option(help="Study name (default: the run dir's name).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes on the same storage.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/search-<budget>).")] = None,
    space: Annotated[Path | None, typer.Option(help="YAML/TOML file narrowing the search space.")] = None,
    train_steps: Annotated[
        int | None,
        typer.Option(
            help="Supernet training steps, all of them whatever they take (default: 200, or fewer where they "
            "would not end within half the time goal)."
        ),
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(
            help="Final training steps of the chosen model and the best baseline (default: as many as the "
            "time goal leaves)."
        ),
    ] = None,
    time_goal: Annotated[
        str | None,
        typer.Option(
            help="Wall time the whole run aims at, counted from the command's start (default '10min'): sizes the "
            "final training, and stops starting trials when what follows them would overrun it."
        ),
    ] = None,
    eval_images: Annotated[int | None, typer.Option(help="Validation images per trial (0 = all).")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start the supernet from MobileNetV3-Large weights (timm or torchvision state_dict)."
        ),
    ] = None,
    pretrain: Annotated[
        bool | None,
        typer.Option(
            "--pretrain/--no-pretrain",
            help="Pretrain the backbone on the captions (image-text InfoNCE) in place of the joint phase, "
            "then train the heads on it frozen.",
        ),
    ] = None,
    quality_calibration: Annotated[
        str | None,
        typer.Option(
            help="Rank trials by predicted trained quality, fitted on this `compress calibrate-quality` file; "
            "'auto' (default): the shipped one when the data is the built-in set; 'none': the inherited score.",
        ),
    ] = None,
) -> None:
    """Search for the best multi-task model that meets the latency budget on every target device."""
    # long: a linear command: one typer option per SearchConfig setting, then one call to search.run_search
    import dataclasses

    from search import SearchConfig, run_search
    from search.units import parse_duration_ms, parse_size_mb

    given = {
        "budget_ms": parse_duration_ms(budget),
        "confidence": confidence,
        "devices": _split(devices),
        "trials": trials,
        "timeout_s": None if timeout is None else parse_duration_ms(timeout) / 1000,
        "sampler": sampler,
        "objectives": _split(objectives),
        "memory_mb": None if memory is None else parse_size_mb(memory),
        "disk_mb": None if disk is None else parse_size_mb(disk),
        "data": data,
        "storage": storage,
        "study_name": study_name,
        "workers": workers,
        "seed": seed,
        "out": out,
        "space_file": space,
        "finetune_steps": finetune_steps,
        "time_goal_s": None if time_goal is None else parse_duration_ms(time_goal) / 1000,
        "eval_images": None if eval_images == 0 else eval_images,
        "init": init,
        "pretrain": pretrain,
        "quality_calibration": quality_calibration,
    }
    config = SearchConfig(
        **{k: v for k, v in given.items() if v is not None or k == "eval_images" and eval_images == 0}
    )
    if train_steps is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, steps=train_steps), supernet_time_share=None
        )
    from compress.cli import STARTED, quiet

    result = run_search(config, progress=not (no_progress or quiet()), started=STARTED)
    if not quiet():
        from search.summary import print_summary

        print_summary(result)
