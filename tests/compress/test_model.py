"""Static MultiTaskNet, presets, heads, losses, detection decoding, ArchSpec validation, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from compress.errors import ConfigError, RunError
from compress.model import (
    ArchSpec,
    HeadSpec,
    MultiTaskNet,
    StageSpec,
    count_parameters,
    decode_detections,
    detection_targets,
    get_preset,
    list_presets,
    load_model,
    multitask_loss,
    recalibrate_bn,
    save_model,
)

torch.set_num_threads(1)


def tiny_spec(**kw) -> ArchSpec:
    stages = (
        StageSpec(16, 1, 3, (1.0,), 1, False, "relu"),
        StageSpec(24, 2, 3, (4.0, 3.0), 2, False, "relu"),
        StageSpec(32, 2, 5, (3.0, 3.0), 2, True, "hswish"),
        StageSpec(48, 1, 3, (4.0,), 2, True, "hswish"),
    )
    heads = (
        HeadSpec("tagging", 3, (64, 96)),
        HeadSpec("detection", 2, (32,)),
        HeadSpec("saliency", 1, (16,)),
    )
    return ArchSpec(
        **{"resolution": 64, "stem": 16, "stages": stages, "heads": heads, "num_classes": 5, **kw}
    )


def toy_batch(n: int = 4, res: int = 64, classes: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[[4.0, 6.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]]).repeat(n, 1, 1)
    labels = torch.tensor([[1, 3]]).repeat(n, 1)
    labels[1, 1] = -1
    sal = torch.zeros(n, 1, res, res, dtype=torch.uint8)
    sal[:, :, 6:28, 4:30] = 1
    tags = torch.zeros(n, classes)
    tags[:, 1] = 1
    tags[torch.arange(n) != 1, 3] = 1
    return {
        "images": torch.rand(n, 3, res, res, generator=g),
        "tags": tags,
        "boxes": boxes,
        "box_labels": labels,
        "saliency": sal,
    }


# -- ArchSpec ----------------------------------------------------------------------------------------------
def test_archspec_json_round_trip_and_hash():
    spec = get_preset("mobilenetv3_large_075", resolution=160)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec) and again.short_hash() == spec.short_hash()
    assert MultiTaskNet(again).state_dict().keys() == MultiTaskNet(spec).state_dict().keys()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(colour="red"), r"unknown key\(s\) \['colour'\] in ArchSpec"),
        (lambda d: d["stages"][1].update(kernel=4), "stage kernel must be one of"),
        (lambda d: d["stages"][1].update(bogus=1), r"unknown key\(s\) \['bogus'\] in ArchSpec stage 1"),
        (lambda d: d["heads"][0].update(branch=9), "tagging head branches at stage 9"),
        (lambda d: d["heads"].append(dict(d["heads"][0])), "each task may have one head only"),
        (lambda d: d["stages"][1].update(expand=[4.0]), r"one ratio per block \(depth=2\)"),
        (lambda d: d["heads"][0].update(task="pose"), "unknown head task 'pose'"),
        (lambda d: d.update(resolution=100), "resolution must be a multiple of 32"),
    ],
)
def test_archspec_validation_errors(mutate, match):
    data = json.loads(tiny_spec().to_json())
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        ArchSpec.from_json(json.dumps(data))


# -- presets -----------------------------------------------------------------------------------------------
def test_list_presets_names():
    names = list_presets()
    assert len(names) == 10 and "mobilenetv3_large_100" in names and "mobilenetv3_small_035" in names


@pytest.mark.parametrize(
    ("name", "expected"), [("mobilenetv3_large_100", 5_483_032), ("mobilenetv3_small_100", 2_542_856)]
)
def test_paper_parameter_counts(name, expected):
    """The paper's Table 3 / torchvision counts with a 1000-class classifier and the tagging head only."""
    model = MultiTaskNet(get_preset(name, num_classes=1000, heads=["tagging"]))
    assert abs(count_parameters(model) - expected) <= 0.01 * expected


@pytest.mark.parametrize("variant", ["large", "small"])
def test_preset_parameters_grow_with_width(variant):
    names = [n for n in list_presets() if f"_{variant}_" in n]
    counts = [
        count_parameters(MultiTaskNet(get_preset(n, num_classes=1000, heads=["tagging"]))) for n in names
    ]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_large_table_exact():
    spec = get_preset("mobilenetv3_large_100")
    net = MultiTaskNet(spec)
    blocks = [b for stage in net.stages for b in stage]
    exp = [b.depthwise.conv.out_channels for b in blocks]
    assert exp == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]
    assert blocks[0].expand is None and blocks[0].use_residual
    assert [b.se is not None for b in blocks] == [False] * 3 + [True] * 3 + [False] * 4 + [True] * 5
    assert (
        net.heads["tagging"].conv.conv.out_channels == 960 and net.heads["tagging"].fc1.out_features == 1280
    )


def test_small_first_block_has_se_and_stride_2():
    net = MultiTaskNet(get_preset("mobilenetv3_small_100"))
    first = net.stages[0][0]
    assert first.expand is None and first.se is not None and first.depthwise.conv.stride == (2, 2)
    assert not first.use_residual


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_runs_at_96px(name):
    spec = get_preset(name, resolution=96, num_classes=7)
    out = MultiTaskNet(spec).eval()(torch.rand(2, 3, 96, 96))
    strides = spec.stage_strides()
    assert out["tags"].shape == (2, 7)
    s = strides[spec.head("detection").branch]
    assert s == 16 and out["det_heatmap"].shape == (2, 7, 96 // s, 96 // s)
    assert out["det_box"].shape == (2, 4, 96 // s, 96 // s)
    assert strides[spec.head("saliency").branch] == 8 and out["saliency"].shape == (2, 1, 12, 12)


def test_unknown_preset_lists_names():
    with pytest.raises(ConfigError, match=r"unknown preset 'mobilenetv3_huge'; known: mobilenetv3_large_035"):
        get_preset("mobilenetv3_huge")
    with pytest.raises(ConfigError, match="unknown head task"):
        get_preset("mobilenetv3_small_100", heads=["depth"])


def test_heads_subset_only_builds_needed_stages():
    spec = get_preset("mobilenetv3_large_100", heads=["saliency"], resolution=64)
    net = MultiTaskNet(spec).eval()
    assert len(net.stages) == 3 and set(net(torch.rand(1, 3, 64, 64))) == {"saliency"}


# -- export ------------------------------------------------------------------------------------------------
def test_onnx_export_and_trace(tmp_path):
    net = MultiTaskNet(tiny_spec()).eval()
    x = torch.rand(1, 3, 64, 64)
    names = ["tags", "det_heatmap", "det_box", "saliency"]
    torch.onnx.export(
        net, (x,), str(tmp_path / "m.onnx"), dynamo=False, input_names=["image"], output_names=names
    )
    import onnx

    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    traced = torch.jit.trace(net, x, strict=False)
    ref, got = net(x), traced(x)
    assert all(torch.allclose(ref[k], got[k]) for k in names)


# -- detection ---------------------------------------------------------------------------------------------
def test_detection_decode_round_trip():
    boxes = torch.tensor(
        [
            [[10.0, 20.0, 60.0, 50.0], [100.0, 100.0, 150.0, 180.0], [0, 0, 0, 0]],
            [[5.0, 5.0, 30.0, 40.0], [120.0, 8.0, 190.0, 60.0], [0, 0, 0, 0]],
        ]
    )
    labels = torch.tensor([[1, 3, -1], [0, 0, -1]])
    t = detection_targets(boxes, labels, num_classes=4, output_size=(24, 24), input_size=192)
    assert int((t.heatmap == 1).sum()) == 4 and t.valid.sum() == 4
    out = {"det_heatmap": torch.logit(t.heatmap.clamp(1e-6, 1 - 1e-6)), "det_box": t.box}
    decoded = decode_detections(out, input_size=192)
    for b in range(2):
        got_boxes, scores, got_labels = decoded[b]
        keep = labels[b] >= 0
        assert len(got_boxes) == int(keep.sum()) and (scores > 0.99).all()
        order = torch.argsort(got_boxes[:, 0])
        ref = torch.argsort(boxes[b][keep][:, 0])
        torch.testing.assert_close(got_boxes[order], boxes[b][keep][ref], atol=1e-3, rtol=0)
        assert got_labels[order].tolist() == labels[b][keep][ref].tolist()


def test_decode_respects_threshold_and_top_k():
    out = {"det_heatmap": torch.full((1, 3, 8, 8), -10.0), "det_box": torch.zeros(1, 4, 8, 8)}
    out["det_heatmap"][0, 2, 3, 3] = 5.0
    out["det_heatmap"][0, 1, 6, 1] = 4.0
    boxes, scores, labels = decode_detections(out, input_size=64, top_k=1)[0]
    assert labels.tolist() == [2] and len(boxes) == 1
    torch.testing.assert_close(
        boxes[0], torch.tensor([20.0, 20.0, 28.0, 28.0])
    )  # centre 3 cells * 8 px, size e^0 cells
    assert len(decode_detections(out, input_size=64, score_threshold=0.999)[0][0]) == 0


# -- losses ------------------------------------------------------------------------------------------------
def test_losses_finite_and_decrease():
    torch.manual_seed(0)
    net = MultiTaskNet(tiny_spec())
    batch = toy_batch()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for _ in range(8):
        losses = multitask_loss(net(batch["images"]), batch, input_size=64)
        assert set(losses) == {"tagging", "detection", "saliency", "total"}
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    for task in ("tagging", "detection", "saliency", "total"):
        assert history[-1][task] < history[0][task], task


def test_losses_handle_images_without_boxes():
    net = MultiTaskNet(tiny_spec()).eval()
    batch = toy_batch(2)
    batch["box_labels"][:] = -1
    losses = multitask_loss(net(batch["images"]), batch)
    assert torch.isfinite(losses["detection"]) and losses["detection"] > 0


# -- checkpoints and BN ------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    net = MultiTaskNet(tiny_spec()).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_model(net, tmp_path / "m" / "model.safetensors")
    loaded = load_model(path)
    assert loaded.spec == net.spec and not loaded.training
    x = torch.rand(2, 3, 64, 64)
    ref, got = net(x), loaded(x)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_load_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RunError, match="not a readable safetensors checkpoint"):
        load_model(bad)
    path = save_model(MultiTaskNet(tiny_spec()), tmp_path / "ok.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=r"cut\.pt"):
        load_model(tmp_path / "cut.pt")


def test_recalibrate_bn_matches_data_statistics():
    net = MultiTaskNet(tiny_spec())
    images = torch.rand(16, 3, 64, 64) * 0.5 + 0.25
    recalibrate_bn(net.eval(), images, batch_size=8)
    assert not net.training
    bn = net.stem.bn
    with torch.no_grad():
        conv = net.stem.conv((images - net.mean) / net.std)
    torch.testing.assert_close(bn.running_mean, conv.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert bn.momentum == 0.1
