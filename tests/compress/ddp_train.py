"""Test helper, started by torchrun: train a tiny supernet with DDP and record every rank's weights.

    torchrun --nproc-per-node 2 tests/compress/ddp_train.py CACHE_DIR OUT_DIR STEPS

Rank 0 writes OUT_DIR/ranks.json: the world size and, per rank, the sum and absolute sum of its parameters
after training (equal on every rank when gradients were averaged), plus its local batch size.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch


def tiny_space(num_classes: int):
    """The default space narrowed to 64 px and the two smallest choices per stage (fast on a CPU)."""
    from compress.model import default_space

    space = default_space(num_classes=num_classes)
    return dataclasses.replace(
        space,
        resolutions=(64,),
        stages=tuple(
            dataclasses.replace(s, widths=s.widths[:2], depths=s.depths[:2], kernels=(3,))
            for s in space.stages
        ),
    )


def main(cache: str, out: str, steps: int) -> None:
    import torch.distributed as dist

    from compress.data import SceneConfig, load_data
    from compress.training import TrainConfig, train_supernet

    torch.set_num_threads(1)
    scenes = SceneConfig(num_train=24, num_val=8, image_size=64)
    train, _ = load_data("builtin", resolution=64, cache_dir=cache, progress=False, scenes=scenes)
    config = TrainConfig(steps=steps, batch_size=8, resolution=64, warmup_steps=1, checkpoint_every=1)
    result = train_supernet(
        tiny_space(train.num_classes),
        train,
        Path(out) / "supernet.safetensors",
        config=config,
        progress=False,
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    flat = torch.cat([p.detach().double().flatten() for p in result.supernet.parameters()])
    mine = torch.tensor([flat.sum().item(), flat.abs().sum().item()], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    if rank == 0:
        record = {
            "world": world,
            "sums": [g.tolist() for g in gathered],
            "steps": len(result.history),
            "reused": result.reused,
        }
        (Path(out) / "ranks.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
