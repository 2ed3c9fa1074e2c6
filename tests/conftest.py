"""Fixtures shared across rooms: a tiny but real ``compress search`` run directory (about 40 s, once)."""

from __future__ import annotations

import pytest

SPACE = """
resolutions: [96]
widths: [0.35, 0.5]
depths: [1]
kernels: [3]
expands: [3, 4]
prune: [0.0, 0.25]
quant: [fp16, pal4]
"""


@pytest.fixture(scope="session")
def tiny_search_config(tmp_path_factory):
    """A SearchConfig for a tiny real search on generated COCO data with a narrowed space."""
    from compress.data import SceneConfig, generate_scenes
    from compress.training import TrainConfig
    from search import SearchConfig

    root = tmp_path_factory.mktemp("search")
    data = generate_scenes(
        root / "coco", SceneConfig(num_train=24, num_val=8, num_test=8, image_size=64), progress=False
    )
    space = root / "space.yaml"
    space.write_text(SPACE)
    return SearchConfig(
        budget_ms=10.0,
        trials=3,
        data=f"coco:{data}",
        out=root / "runs" / "tiny",
        space_file=space,
        eval_images=8,
        train=TrainConfig(steps=2, batch_size=8, resolution=64, warmup_steps=1),
        finetune_steps=1,
        cache_dir=root / "cache",
        population_size=4,
    )


@pytest.fixture(scope="session")
def tiny_run(tiny_search_config):
    """The finished tiny search (SearchResult); its run directory is ``result.run_dir``."""
    from search import run_search

    return run_search(tiny_search_config, progress=False)


@pytest.fixture
def two_threads():
    """Two PyTorch threads for one test, restored after it (several test modules set one thread when they
    are imported): what ``compress.finetune.pair_threads`` needs to train two models at once. Skipped where
    that never happens (not Linux)."""
    import sys

    import torch

    if not sys.platform.startswith("linux"):
        pytest.skip("two models train at once only on Linux (compress.finetune.pair_threads)")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 1  # threads each of the two gets
    torch.set_num_threads(before)
