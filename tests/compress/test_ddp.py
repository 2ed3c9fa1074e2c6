"""Supernet training under ``torchrun --nproc-per-node 2`` on the CPU (gloo): ranks stay in sync, rank 0 saves.

Quality against the single-process run is measured by ``benchmarks/ddp_quality.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.data import SceneConfig, load_data
from compress.training import load_supernet

HELPER = Path(__file__).with_name("ddp_train.py")


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node NPROC ARGS`` (as ``python -m torch.distributed.run``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The tiny built-in data set, cached once here so that the ranks only read it."""
    cache = tmp_path_factory.mktemp("ddp-cache")
    scenes = SceneConfig(num_train=24, num_val=8, image_size=64)
    load_data("builtin", resolution=64, cache_dir=cache, progress=False, scenes=scenes)
    return cache


@pytest.mark.slow
def test_torchrun_two_processes_train_one_supernet(cache, tmp_path):
    steps = 3
    done = _torchrun(str(HELPER), str(cache), str(tmp_path), str(steps))
    assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads((tmp_path / "ranks.json").read_text())
    assert record["world"] == 2 and record["steps"] == steps and not record["reused"]
    (sum0, abs0), (sum1, abs1) = record["sums"]
    # Each rank saw a different half of every batch: only averaged gradients keep the weights identical.
    assert sum1 == pytest.approx(sum0, rel=1e-9, abs=1e-9) and abs1 == pytest.approx(abs0, rel=1e-9)
    net = load_supernet(tmp_path / "supernet.safetensors")  # rank 0's file, finished (no checkpoint left)
    flat = torch.cat([p.detach().double().flatten() for p in net.parameters()])
    assert flat.abs().sum().item() == pytest.approx(abs0, rel=1e-9)
    assert not (tmp_path / "supernet.safetensors.ckpt").exists()


@pytest.mark.slow
def test_torchrun_two_processes_pretrain_one_backbone_and_text_encoder(tmp_path):
    """Contrastive pretraining under torchrun: each rank embeds its half of every batch, the averaged gradients
    keep backbone and text encoder identical on both ranks, and rank 0 writes the run directory's files."""
    from ddp_train import tiny_space

    from compress.data import generate_scenes
    from compress.pretrain import PretrainConfig, pretrain_backbone
    from compress.text import load_image_text

    coco = generate_scenes(
        tmp_path / "coco", SceneConfig(num_train=24, num_val=8, image_size=64, seed=3), progress=False
    )
    load_data(
        f"coco:{coco}", resolution=64, cache_dir=tmp_path / "cache", progress=False
    )  # ranks only read it
    out = tmp_path / "run"
    done = _torchrun(
        str(HELPER.with_name("ddp_pretrain.py")), str(coco), str(tmp_path / "cache"), str(out), "3"
    )
    assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads((out / "ranks.json").read_text())
    assert record["world"] == 2 and record["steps"] == 3
    rank0, rank1 = record["sums"]
    assert rank1 == pytest.approx(rank0, rel=1e-9, abs=1e-9)
    assert (out / "text_encoder.json").is_file() and load_image_text(out) is not None
    # rank 0's file: the same backbone, reused as it is by a single process with the same recipe
    train, _ = load_data(f"coco:{coco}", resolution=64, cache_dir=tmp_path / "cache", progress=False)
    config = PretrainConfig(steps=3, batch_size=8, resolution=64, warmup_steps=1)  # ddp_pretrain.py's
    again = pretrain_backbone(tiny_space(train.num_classes), train, out, config=config, progress=False)
    assert again.reused
    flat = torch.cat([p.detach().double().flatten() for p in again.supernet.parameters()])
    assert flat.abs().sum().item() == pytest.approx(rank0[1], rel=1e-9)
