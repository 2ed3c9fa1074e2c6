"""``compress search --pretrain --init``: a tiny real search whose supernet starts from a locally generated
timm-layout MobileNetV3-Large checkpoint and is pretrained on the captions before its heads train."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.compress.mnv3_layouts import timm_state


@pytest.mark.slow
def test_search_with_init_and_pretrain_reports_zero_shot_tagging(tiny_search_config, tmp_path: Path) -> None:
    from search import run_search

    weights = tmp_path / "mobilenetv3_large_100.safetensors"
    save_file(timm_state(), str(weights))
    cfg = dataclasses.replace(tiny_search_config, out=tmp_path / "run", init=weights, pretrain=True)
    result = run_search(cfg, progress=False)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["config"]["pretrain"] is True and run["config"]["init"] == str(weights)
    assert (result.run_dir / "text_encoder.safetensors").is_file()
    assert (result.run_dir / "pretrained.safetensors").is_file()
    backbone = result.card["backbone"]
    assert backbone["init"] == str(weights) and "contrastive" in backbone["pretraining"]
    assert 0 <= backbone["tagging_map_zero_shot"] <= 1 and 0 <= backbone["tagging_map_trained_head"] <= 1
    assert backbone["source"].endswith(" test images")  # the card's figures are on test, and it says so


def test_search_rejects_an_unusable_init_before_any_work(tiny_search_config, tmp_path: Path) -> None:
    from compress.errors import ConfigError
    from search import run_search

    bad = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(4)}, str(bad))
    cfg = dataclasses.replace(tiny_search_config, out=tmp_path / "run", init=bad)
    with pytest.raises(ConfigError, match="not a MobileNetV3 state_dict"):
        run_search(cfg, progress=False)
    assert not (tmp_path / "run" / "supernet.safetensors").exists()
