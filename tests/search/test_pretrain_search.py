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
def test_search_with_init_and_pretrain_reports_zero_shot_tagging(
    tiny_search_config, tmp_path: Path, capsys
) -> None:
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
    # the shipped files emit the image embedding; the saved prompts tag zero-shot without the text encoder
    import numpy as np
    import onnxruntime as ort
    from safetensors.torch import load_file

    from compress.compression import simulate
    from compress.model import load_model
    from compress.pretrain import prompt_embeddings
    from compress.text import load_image_text

    chosen = result.run_dir / "chosen"
    model = load_model(chosen / "model.safetensors")
    assert model.embedding is not None
    text = load_file(str(chosen / "text_embeddings.safetensors"))["text"].numpy()
    names = json.loads((chosen / "text_embeddings.json").read_text())["names"]
    assert len(names) == text.shape[0] and np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    session = ort.InferenceSession(str(chosen / "model.onnx"), providers=["CPUExecutionProvider"])
    res = model.spec.resolution
    images = torch.rand(2, 3, res, res)
    got = dict(
        zip(
            [o.name for o in session.get_outputs()], session.run(None, {"image": images.numpy()}), strict=True
        )
    )
    assert result.card["quant"] in ("fp16", "pal4")  # the tiny space's schemes: no calibration needed
    with torch.no_grad():  # the ONNX file holds the simulated weights of the shipped scheme
        emb = simulate(model, result.card["quant"])(images)["image_embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(got["image_embedding"], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(got["image_embedding"], emb, rtol=1e-3, atol=1e-4)
    assert 0 <= backbone["tagging_map_zero_shot_shipped"] <= 1
    assert {"text_embeddings.safetensors", "model.mlpackage"} <= set(result.card["artifacts"]), result.card[
        "errors"
    ]
    import coremltools as ct

    package = ct.models.MLModel(str(chosen / "model.mlpackage"), skip_model_load=True)
    assert [o.name for o in package.get_spec().description.output][-1] == "image_embedding"
    image_text = load_image_text(result.run_dir)  # the saved prompts are the text encoder's, row for row
    assert np.allclose(text, prompt_embeddings(image_text, names).numpy(), atol=1e-6)
    from search.summary import print_summary

    capsys.readouterr()
    print_summary(result)
    printed = " ".join(capsys.readouterr().out.split())
    assert "image_embedding output: tagging mAP" in printed and "validation split" not in printed


def test_search_rejects_an_unusable_init_before_any_work(tiny_search_config, tmp_path: Path) -> None:
    from compress.errors import ConfigError
    from search import run_search

    bad = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(4)}, str(bad))
    cfg = dataclasses.replace(tiny_search_config, out=tmp_path / "run", init=bad)
    with pytest.raises(ConfigError, match="not a MobileNetV3 state_dict"):
        run_search(cfg, progress=False)
    assert not (tmp_path / "run" / "supernet.safetensors").exists()
