"""Test helper, started by torchrun: pretrain a tiny backbone contrastively with DDP; record every rank's weights.

    torchrun --nproc-per-node 2 tests/compress/ddp_pretrain.py COCO_DIR CACHE_DIR OUT_DIR STEPS

Rank 0 writes OUT_DIR/ranks.json: the world size and, per rank, the sum and absolute sum of the backbone's and
the text encoder's parameters after pretraining (equal on every rank when gradients were averaged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from ddp_train import tiny_space


def main(coco: str, cache: str, out: str, steps: int) -> None:
    import torch.distributed as dist

    from compress.data import load_data
    from compress.pretrain import PretrainConfig, pretrain_backbone

    torch.set_num_threads(1)
    train, _ = load_data(f"coco:{coco}", resolution=64, cache_dir=cache, progress=False)
    config = PretrainConfig(steps=steps, batch_size=8, resolution=64, warmup_steps=1)
    result = pretrain_backbone(tiny_space(train.num_classes), train, out, config=config, progress=False)
    assert result.image_text is not None
    rank, world = dist.get_rank(), dist.get_world_size()
    sums = []
    for module in (result.supernet, result.image_text):
        flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
        sums += [flat.sum().item(), flat.abs().sum().item()]
    mine = torch.tensor(sums, dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    if rank == 0:
        record = {"world": world, "sums": [g.tolist() for g in gathered], "steps": len(result.history)}
        (Path(out) / "ranks.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
