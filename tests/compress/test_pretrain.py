"""Tests of backbone pretraining: the text side, the InfoNCE loss, pretrain_backbone, start_supernet, zero-shot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mnv3_layouts import timm_state
from safetensors.torch import load_file, save_file

from compress.cli import main
from compress.data import SceneConfig, generate_scenes, load_data
from compress.errors import ConfigError, DataError
from compress.metrics import tagging_map
from compress.model import default_space, extract
from compress.pretrain import (
    PretrainConfig,
    infonce,
    joint_phase_pretraining,
    pretrain_backbone,
    start_supernet,
    zero_shot_scores,
)
from compress.text import ImageText, TextConfig, Vocabulary, load_image_text, save_image_text
from compress.training import TrainConfig, load_supernet

RES = 32
PRE = PretrainConfig(steps=2, batch_size=4, resolution=RES, warmup_steps=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pretrain")
    coco = generate_scenes(
        root / "coco", SceneConfig(num_train=12, num_val=6, image_size=64, seed=5), progress=False
    )
    train, val = load_data(f"coco:{coco}", resolution=RES, cache_dir=root / "cache", progress=False)
    return coco, train, val


def test_vocabulary_and_text_encoder_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["a photo of two red discs", "A Photo of a star!"])
    assert vocab.tokens[:3] == ["<pad>", "<unk>", "<cls>"] and "photo" in vocab.ids and "star" in vocab.ids
    ids = vocab.encode(["a star", "a zebra"], 6)
    assert ids[0].tolist() == [2, vocab.ids["a"], vocab.ids["star"], 0, 0, 0] and ids[1, 2] == 1  # <unk>
    torch.manual_seed(0)
    model = ImageText(
        vocab, TextConfig(embed_dim=16, width=16, layers=2, heads=2, max_words=8), {4: 24, 5: 32}
    )
    model.eval()
    emb = model.embed_text(["a photo of a star", "two red discs"])
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    image = model.embed_image(torch.rand(3, 20, 4, 4), 5)  # a 20-channel prefix of stage 5's 32
    assert image.shape == (3, 16)
    save_image_text(model, tmp_path)
    meta = json.loads((tmp_path / "text_encoder.json").read_text())
    assert meta["vocabulary"] == vocab.tokens and meta["prompt"] == "a photo of a {}"
    again = load_image_text(tmp_path)
    assert torch.allclose(again.embed_text(["a photo of a star", "two red discs"]), emb, atol=1e-6)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))  # no pickle


def test_text_config_rejects_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="width 30 must be divisible by heads 4"):
        TextConfig(width=30, heads=4)
    with pytest.raises(ConfigError, match="unknown pretraining objective 'clip'"):
        PretrainConfig(objective="clip")


def test_infonce_prefers_the_matching_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    matched = infonce(text, text, torch.tensor(10.0))
    shuffled = infonce(text[torch.randperm(8, generator=g)], text, torch.tensor(10.0))
    assert matched < shuffled


def test_contrastive_pretraining_trains_the_backbone_and_keeps_the_text_encoder(data, tmp_path: Path) -> None:
    _, train, _ = data
    space = default_space(num_classes=train.num_classes)
    torch.manual_seed(0)
    from compress.model import Supernet

    start = Supernet(space)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    done = pretrain_backbone(space, train, tmp_path, config=PRE, data_key="t", supernet=start, progress=False)
    after = done.supernet.state_dict()
    assert not done.reused and len(done.history) == 2 and "temperature" in done.history[-1]
    assert not torch.equal(before["stages.5.0.project.conv.weight"], after["stages.5.0.project.conv.weight"])
    assert not torch.equal(before["stem.conv.weight"], after["stem.conv.weight"])
    assert torch.equal(
        before["heads.tagging_5.fc2.weight"], after["heads.tagging_5.fc2.weight"]
    )  # heads untouched
    assert (tmp_path / "text_encoder.safetensors").is_file() and (
        tmp_path / "pretrained.safetensors"
    ).is_file()
    again = pretrain_backbone(space, train, tmp_path, config=PRE, data_key="t", progress=False)
    assert again.reused and torch.equal(
        again.supernet.state_dict()["stem.conv.weight"], after["stem.conv.weight"]
    )


def test_contrastive_needs_captions_and_tags_do_not(data, tmp_path: Path) -> None:
    _, train, _ = data
    space = default_space(num_classes=train.num_classes)
    bare = train.subset(list(range(len(train))))
    bare.captions = None
    with pytest.raises(DataError, match="needs captions.*--objective tags"):
        pretrain_backbone(space, bare, tmp_path / "c", config=PRE, progress=False)
    done = pretrain_backbone(space, bare, tmp_path / "t", config=PretrainConfig(objective="tags", steps=1, batch_size=4,
                             resolution=RES), progress=False)  # fmt: skip
    assert done.image_text is None and not (tmp_path / "t" / "text_encoder.json").exists()


def test_start_supernet_trains_heads_on_the_frozen_pretrained_backbone(data, tmp_path: Path) -> None:
    _, train, val = data
    space = default_space(num_classes=train.num_classes)
    recipe = TrainConfig(steps=3, batch_size=4, resolution=RES, warmup_steps=1)
    result = start_supernet(space, train, tmp_path / "supernet.pt", config=recipe, data_key="d", pretrain=PRE,
                            progress=False)  # fmt: skip
    assert len(result.history) == 1 and all(h["phase"] == 1.0 for h in result.history)  # 3 - 2 head steps
    pretrained = load_file(str(tmp_path / "pretrained.safetensors"))
    trained = load_supernet(tmp_path / "supernet.pt")
    params = dict(trained.named_parameters())
    for key, value in params.items():
        if key.startswith("heads."):
            continue
        assert torch.equal(value, pretrained[key]), key  # frozen
    assert not torch.equal(params["heads.tagging_5.fc2.weight"], pretrained["heads.tagging_5.fc2.weight"])
    plain = start_supernet(space, train, tmp_path / "plain.pt", config=recipe, data_key="d", progress=False)
    assert plain.config_hash != result.config_hash  # a pretrained supernet is never reused for a plain one
    # zero-shot from the prompts: one score per category; the extracted net and the supernet agree
    image_text = load_image_text(tmp_path)
    spec = space.largest()
    scores = zero_shot_scores(trained, image_text, val, spec=spec)
    assert scores.shape == (len(val), val.num_classes)
    net = extract(trained, spec).eval()
    assert torch.allclose(
        torch.from_numpy(zero_shot_scores(net, image_text, val)), torch.from_numpy(scores), atol=1e-4
    )
    assert 0.0 <= tagging_map(scores, val.tags.numpy()) <= 1.0


def test_joint_phase_pretraining_takes_the_joint_steps() -> None:
    pre = joint_phase_pretraining(TrainConfig(steps=200, joint_fraction=0.75, batch_size=24, seed=3))
    assert (pre.steps, pre.batch_size, pre.seed, pre.objective) == (150, 24, 3, "contrastive")


@pytest.mark.slow
def test_cli_pretrain_prints_zero_shot_beside_the_trained_head(data, tmp_path: Path, capsys) -> None:
    coco, _, _ = data
    out = tmp_path / "run"
    code = main(["pretrain", "--data", f"coco:{coco}", "--out", str(out), "--steps", "1", "--head-steps", "1",
                 "--batch-size", "4", "--resolution", "32"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "zero-shot" in text and "trained head" in text
    summary = json.loads((out / "pretrain.json").read_text())
    assert 0 <= summary["tagging_map_zero_shot"] <= 1 and 0 <= summary["tagging_map_trained_head"] <= 1


def test_cli_train_init_with_a_timm_layout_checkpoint(data, tmp_path: Path) -> None:
    coco, _, _ = data
    weights = tmp_path / "mobilenetv3_large_100.safetensors"
    save_file(timm_state(), str(weights))
    out = tmp_path / "run"
    code = main(["train", "--data", f"coco:{coco}", "--out", str(out), "--steps", "1", "--batch-size", "4",
                 "--resolution", "32", "--init", str(weights)])  # fmt: skip
    assert code == 0
    trained = load_supernet(out / "supernet.safetensors")
    # one joint step moved the weights a little from Large's; they still hold Large's stem
    diff = (trained.state_dict()["stem.conv.weight"] - timm_state()["conv_stem.weight"]).abs().max()
    assert diff < 0.05
