"""``compress train``: train (or reuse, or resume) the elastic supernet of the default space."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def train_cmd(
    data: Annotated[str, typer.Option(help="'builtin' (generated scenes) or 'coco:PATH'.")] = "builtin",
    out: Annotated[
        Path, typer.Option(help="Run directory; the supernet goes to OUT/supernet.safetensors.")
    ] = Path("runs/train"),
    steps: Annotated[int, typer.Option(help="Optimizer steps (both phases).")] = 200,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 24,
    resolution: Annotated[
        int,
        typer.Option(help="Highest training resolution (pixels); each subnet trains at its own, up to this."),
    ] = 160,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine).")] = 3e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    amp: Annotated[bool, typer.Option(help="Mixed precision (GPU only).")] = False,
    grad_checkpoint: Annotated[bool, typer.Option(help="Gradient checkpointing (GPU memory).")] = False,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from MobileNetV3-Large weights: a timm or torchvision state_dict file."),
    ] = None,
) -> None:
    """Train the supernet: sandwich rule + in-place distillation, then heads on the frozen backbone.

    On many processes (each takes a share of every batch): torchrun --nproc-per-node N --no-python compress train
    """
    from compress.training import TrainConfig, train

    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        resolution=resolution,
        lr=lr,
        seed=seed,
        amp=amp,
        grad_checkpoint=grad_checkpoint,
    )
    from compress.cli import quiet

    result = train(data=data, out=out, config=config, init=init, progress=not quiet())
    verb = (
        "reused"
        if result.reused
        else f"trained in {result.seconds / 60:.1f} min ({result.images_per_second:.0f} img/s)"
    )
    if os.environ.get("RANK", "0") == "0" and not quiet():  # under torchrun, one line from rank 0
        typer.echo(f"supernet {verb}: {result.path}")
