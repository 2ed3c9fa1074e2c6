"""The exported image embedding of an image-text pretrained model, and the saved prompt embeddings (issue 17).

A supernet pretrained contrastively for one step gives a real run-directory text encoder; the chosen-like
models are extracted from it (the smallest subnet: its embed stage is narrower than the projection's widest
input, so the prefix rule is exercised; and a pruned one).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from compress.compression import PruneSpec, prune, simulate
from compress.data import SceneConfig, generate_scenes, load_data
from compress.errors import ConfigError, RunError
from compress.export import export_coreml, export_onnx, output_keys, read_coreml_weights
from compress.model import default_space, extract, load_model, save_model
from compress.pretrain import (
    TEXT_EMBEDDINGS,
    TEXT_NAMES,
    PretrainConfig,
    embed_stage,
    pretrain_backbone,
    prompt_embeddings,
    save_prompt_embeddings,
    with_image_embedding,
    zero_shot_scores,
)
from compress.text import load_image_text

torch.set_num_threads(1)
RES = 32


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """(run dir with the text encoder, its ImageText, the supernet, the space, validation data)."""
    root = tmp_path_factory.mktemp("embedding")
    coco = generate_scenes(
        root / "coco", SceneConfig(num_train=8, num_val=6, image_size=64, seed=3), progress=False
    )
    train, val = load_data(f"coco:{coco}", resolution=RES, cache_dir=root / "cache", progress=False)
    space = default_space(num_classes=train.num_classes)
    torch.manual_seed(0)
    config = PretrainConfig(steps=1, batch_size=4, resolution=RES, warmup_steps=1)
    done = pretrain_backbone(space, train, root / "run", config=config, data_key="e", progress=False)
    return root / "run", load_image_text(root / "run"), done.supernet, space, val


@pytest.fixture(scope="module")
def small(run):
    """The smallest subnet, extracted, with and without its image embedding."""
    _, image_text, supernet, space, _ = run
    net = extract(supernet, space.smallest()).eval()
    return net, with_image_embedding(net, image_text).eval()


def _images(data, resolution: int) -> torch.Tensor:
    images = data.batch(torch.arange(len(data)))["images"]
    return torch.nn.functional.interpolate(
        images, size=(resolution,) * 2, mode="bilinear", align_corners=False
    )


def _stage_embedding(image_text, net, images: torch.Tensor) -> torch.Tensor:
    """``ImageText.embed_image`` on ``net``'s embed stage: the reference the exported output must equal."""
    stage = embed_stage(net.spec)
    seen = {}
    hook = net.stages[stage].register_forward_hook(lambda _m, _i, out: seen.setdefault("x", out))
    with torch.no_grad():
        net(images)
        hook.remove()
        return image_text.embed_image(seen["x"], stage)


def _onnx_outputs(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": images.numpy()}), strict=True))


def test_embedding_is_narrower_than_the_projection(run, small) -> None:
    _, image_text, _, _, _ = run
    net, _ = small
    stage = embed_stage(net.spec)
    assert net.spec.stages[stage].width < image_text.image[str(stage)].linear.weight.shape[1]


def test_onnx_image_embedding_equals_embed_image_and_is_unit_norm(run, small, tmp_path: Path) -> None:
    _, image_text, _, _, val = run
    plain, net = small
    images = _images(val, net.spec.resolution)
    path = export_onnx(net, tmp_path / "model.onnx", metadata={"classes": list(val.categories)})
    got = _onnx_outputs(path, images)
    assert list(got)[-1] == "image_embedding" and got["image_embedding"].shape == (len(val), 128)
    ref = _stage_embedding(image_text, plain, images).numpy()
    np.testing.assert_allclose(got["image_embedding"], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got["image_embedding"], axis=1), 1.0, atol=1e-5)
    with torch.no_grad():  # the heads are unchanged by the extra output
        heads = plain(images)
    for key, value in heads.items():
        np.testing.assert_allclose(got[key], value.numpy(), rtol=1e-3, atol=1e-4)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "image_embedding" in json.loads(props["outputs"])
    described = json.loads(props["compress.image_embedding"])
    assert described["dim"] == 128 and described["stage"] == embed_stage(net.spec)
    assert described["text"] == TEXT_EMBEDDINGS


def test_zero_shot_tagging_from_the_exported_embedding_and_saved_prompts(run, small, tmp_path: Path) -> None:
    _, image_text, _, _, val = run
    plain, net = small
    save_prompt_embeddings(image_text, val.categories, tmp_path)
    text = load_file(str(tmp_path / TEXT_EMBEDDINGS))["text"].numpy()
    names = json.loads((tmp_path / TEXT_NAMES).read_text())
    assert names["names"] == list(val.categories) and names["prompt"] == "a photo of a {}"
    assert text.shape == (val.num_classes, 128)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    onnx_path = export_onnx(net, tmp_path / "model.onnx")
    emb = _onnx_outputs(onnx_path, _images(val, net.spec.resolution))["image_embedding"]
    want = zero_shot_scores(plain, image_text, val)  # the torch zero-shot scores, text encoder and all
    np.testing.assert_allclose(emb @ text.T, want, rtol=1e-4, atol=1e-5)


def test_the_embedding_survives_save_load_pruning_and_simulation(run, small, tmp_path: Path) -> None:
    _, image_text, _, _, val = run
    plain, net = small
    images = _images(val, net.spec.resolution)
    again = load_model(save_model(net, tmp_path / "model.safetensors"))
    assert again.embedding is not None and again.embedding.stage == net.embedding.stage
    with torch.no_grad():
        torch.testing.assert_close(again(images)["image_embedding"], net(images)["image_embedding"])
    assert load_model(save_model(plain, tmp_path / "plain.safetensors")).embedding is None
    pruned = prune(plain, PruneSpec(ratios=(0.5,)), calibration=images)
    assert pruned.spec != plain.spec  # expanded channels shrank; the embed stage's width did not
    shipped = with_image_embedding(pruned, image_text)
    with torch.no_grad():
        torch.testing.assert_close(
            shipped(images)["image_embedding"], _stage_embedding(image_text, pruned, images)
        )
        sim = simulate(shipped, "int8")(images)["image_embedding"]
    assert torch.allclose(sim.norm(dim=1), torch.ones(len(val)), atol=1e-4)


def test_a_model_without_pretraining_exports_no_embedding(small, tmp_path: Path) -> None:
    plain, net = small
    assert "image_embedding" not in output_keys(plain)
    assert output_keys(net)[-1] == "image_embedding"
    got = _onnx_outputs(
        export_onnx(plain, tmp_path / "plain.onnx"), torch.rand(1, 3, *(plain.spec.resolution,) * 2)
    )
    assert "image_embedding" not in got


def test_coreml_package_names_and_describes_the_embedding(run, small, tmp_path: Path) -> None:
    import coremltools as ct

    _, _, _, _, val = run
    plain, net = small
    package = export_coreml(
        net, tmp_path / "model", scheme="int8", metadata={"classes": list(val.categories)}
    )
    mlmodel = ct.models.MLModel(str(package), skip_model_load=True)
    outputs = {o.name: o.shortDescription for o in mlmodel.get_spec().description.output}
    assert (
        list(outputs)[-1] == "image_embedding" and "unit-norm image embedding" in outputs["image_embedding"]
    )
    assert json.loads(mlmodel.user_defined_metadata["compress.image_embedding"])["dim"] == 128
    stored = read_coreml_weights(package)  # the projection is compressed like every other layer
    assert stored["model_embedding_linear_weight_to_fp16"].storage == "affine"
    images = _images(val, net.spec.resolution)
    w8a8 = export_coreml(
        net, tmp_path / "w8a8", scheme="w8a8", calibration=images
    )  # activation quantizers too
    assert any("embedding" in name for name in read_coreml_weights(w8a8))
    bare = export_coreml(plain, tmp_path / "plain", scheme="fp16")
    names = [o.name for o in ct.models.MLModel(str(bare), skip_model_load=True).get_spec().description.output]
    assert "image_embedding" not in names


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML prediction needs macOS (MLModel.predict)")
def test_coreml_image_embedding_matches_torch(small, tmp_path: Path) -> None:
    import coremltools as ct
    from PIL import Image

    _, net = small
    res = net.spec.resolution
    pixels = np.random.default_rng(0).integers(0, 256, (res, res, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    mlmodel = ct.models.MLModel(str(export_coreml(net, tmp_path / "m", scheme="fp16")))
    got = mlmodel.predict({"image": Image.fromarray(pixels)})["image_embedding"]
    with torch.no_grad():
        ref = simulate(net, "fp16")(x)["image_embedding"].numpy()
    np.testing.assert_allclose(got, ref, atol=2e-2)


def test_embedding_errors(run, small) -> None:
    _, image_text, _, _, _ = run
    plain, _ = small
    stage = embed_stage(plain.spec)
    del image_text.image[str(stage)]
    try:
        with pytest.raises(ConfigError, match=f"no image projection for stage {stage}"):
            with_image_embedding(plain, image_text)
    finally:
        image_text.image[str(stage)] = load_image_text(run[0]).image[str(stage)]
    with pytest.raises(ConfigError, match=r"must be \[D, \d+\], but got \[4, 3\]"):
        plain.attach_embedding(stage, torch.zeros(4, 3))
    assert prompt_embeddings(image_text, ["a", "b"]).shape == (2, 128)


def test_a_checkpoint_with_a_broken_embedding_is_a_run_error(small, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    _, net = small
    path = save_model(net, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del state["embedding.linear.weight"]
    save_file(state, str(path), metadata=meta)
    with pytest.raises(RunError, match="does not match its ArchSpec"):
        load_model(path)


def test_cli_export_rebuilds_the_embedding_from_the_checkpoint(small, tmp_path: Path, capsys) -> None:
    from compress.cli import main

    _, net = small
    ckpt = save_model(net, tmp_path / "model.safetensors")
    code = main(["export", str(ckpt), "--scheme", "pal4", "--out", str(tmp_path / "out"), "--onnx"])
    assert code == 0, capsys.readouterr().err
    x = torch.rand(2, 3, net.spec.resolution, net.spec.resolution)
    got = _onnx_outputs(tmp_path / "out" / "model.onnx", x)["image_embedding"]
    with torch.no_grad():  # `compress export` writes the float model to ONNX
        np.testing.assert_allclose(got, net(x)["image_embedding"].numpy(), rtol=1e-4, atol=1e-5)
