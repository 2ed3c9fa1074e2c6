"""``compress pretrain``: pretrain the supernet's backbone (image-text or tags), then its heads on it frozen."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer


def pretrain_cmd(
    data: Annotated[
        str, typer.Option(help="'builtin' (generated scenes, captioned) or 'coco:PATH'.")
    ] = "builtin",
    out: Annotated[
        Path, typer.Option(help="Run directory (supernet.safetensors, pretrained.safetensors, text encoder).")
    ] = Path("runs/pretrain"),
    objective: Annotated[
        str, typer.Option(help="'contrastive' (captions, InfoNCE) or 'tags' (multi-label classification).")
    ] = "contrastive",
    steps: Annotated[int, typer.Option(help="Pretraining steps.")] = 150,
    head_steps: Annotated[int, typer.Option(help="Steps training the heads on the frozen backbone.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 24,
    resolution: Annotated[int, typer.Option(help="Highest training resolution (pixels).")] = 160,
    lr: Annotated[float, typer.Option(help="Peak pretraining learning rate (AdamW, cosine).")] = 3e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from MobileNetV3-Large weights: a timm or torchvision state_dict file."),
    ] = None,
    amp: Annotated[bool, typer.Option(help="Mixed precision (GPU only).")] = False,
    grad_checkpoint: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass (less memory, ~1 more forward).")
    ] = False,
) -> None:
    """Pretrain the backbone (sandwich rule), train the heads on it frozen, and score zero-shot tagging.

    On many processes: torchrun --nproc-per-node N --no-python compress pretrain
    """
    from compress.pretrain import PretrainConfig, pretrain
    from compress.training import TrainConfig

    config = PretrainConfig(
        objective=objective,
        steps=steps,
        batch_size=batch_size,
        resolution=resolution,
        lr=lr,
        seed=seed,
        amp=amp,
        grad_checkpoint=grad_checkpoint,
    )
    train = TrainConfig(
        steps=steps + head_steps,
        batch_size=batch_size,
        resolution=resolution,
        seed=seed,
        amp=amp,
        grad_checkpoint=grad_checkpoint,
    )
    summary = pretrain(data=data, out=out, config=config, train=train, init=init)
    if os.environ.get("RANK", "0") == "0":
        trained, zero = summary["tagging_map_trained_head"], summary.get("tagging_map_zero_shot")
        line = f"pretrained ({objective}) into {out}: largest subnet tagging mAP {100 * trained:.1f} (trained head)"
        if zero is not None:
            line += f", {100 * zero:.1f} zero-shot from '{summary['prompt']}'"
        typer.echo(line)
        typer.echo(json.dumps(summary["quality"]))
