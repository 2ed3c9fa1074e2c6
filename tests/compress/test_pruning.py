"""Structured pruning: PruneSpec validation, kept-channel rounding, prune() on MultiTaskNet."""

from __future__ import annotations

import pytest
import torch
from tinynets import randomise_bn, tiny_model, tiny_spec

from compress.compression import PruneSpec, kept_channels, prune, pruned_spec
from compress.errors import ConfigError
from compress.model import ArchSpec, MultiTaskNet, count_parameters, get_preset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> MultiTaskNet:
    return tiny_model()


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def test_pruned_model_keeps_every_head_working(model: MultiTaskNet) -> None:
    x = torch.rand(2, 3, 64, 64)
    before = _outputs(model, x)
    pruned = prune(model, PruneSpec(0.3), calibration=torch.rand(8, 3, 64, 64))
    after = _outputs(pruned, x)
    assert isinstance(pruned, MultiTaskNet)
    assert set(after) == set(before) == {"tags", "det_heatmap", "det_box", "saliency"}
    for key in before:
        assert after[key].shape == before[key].shape
        assert torch.isfinite(after[key]).all()
    assert count_parameters(pruned) < count_parameters(model)


@pytest.mark.parametrize("preset", ["mobilenetv3_small_050", "mobilenetv3_large_050"])
def test_30_percent_pruning_lowers_parameters(preset: str) -> None:
    torch.manual_seed(0)
    net = MultiTaskNet(get_preset(preset, resolution=64)).eval()
    pruned = prune(net, PruneSpec(0.3))
    n0, n1 = count_parameters(net), count_parameters(pruned)
    assert n1 < 0.9 * n0, (n0, n1)
    assert set(_outputs(pruned, torch.rand(1, 3, 64, 64))) == set(_outputs(net, torch.rand(1, 3, 64, 64)))


def test_pruned_spec_describes_the_model_exactly(model: MultiTaskNet) -> None:
    pruned = prune(model, PruneSpec((0.0, 0.5, 0.3), round_to=8))
    assert pruned.spec == pruned_spec(model, PruneSpec((0.0, 0.5, 0.3), round_to=8))
    rebuilt = MultiTaskNet(ArchSpec.from_json(pruned.spec.to_json()))
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)  # spec + state dict is the whole model
    x = torch.rand(2, 3, 64, 64)
    for key, value in _outputs(pruned, x).items():
        torch.testing.assert_close(_outputs(rebuilt, x)[key], value)
    # stage 0 untouched; other stages shrank to multiples of 8
    assert pruned.stages[0][0].expand.conv.out_channels == model.stages[0][0].expand.conv.out_channels
    for s in (1, 2):
        for block, old in zip(pruned.stages[s], model.stages[s], strict=True):
            kept = block.expand.conv.out_channels
            assert kept % 8 == 0 and kept < old.expand.conv.out_channels


def _kill_channels(
    model: MultiTaskNet, stage: int, block: int, channels: list[int], squeeze: list[int]
) -> None:
    """Make expanded channels (and SE squeeze channels) contribute exactly nothing."""
    blk = model.stages[stage][block]
    with torch.no_grad():
        for c in channels:
            blk.expand.conv.weight[c].zero_()
            for bn in (blk.expand.bn, blk.depthwise.bn):
                bn.weight[c] = 0.0
                bn.bias[c] = 0.0
            blk.depthwise.conv.weight[c].zero_()
            blk.se.fc1.weight[:, c].zero_()
            blk.se.fc2.weight[c].zero_()
            blk.project.conv.weight[:, c].zero_()
        for c in squeeze:
            blk.se.fc1.weight[c].zero_()
            blk.se.fc1.bias[c] = 0.0
            blk.se.fc2.weight[:, c].zero_()


def test_prune_removes_the_least_important_coupled_channels() -> None:
    """Dead channels (zero in every layer of their dependency group) are removed first: same outputs."""
    torch.manual_seed(1)
    net = randomise_bn(MultiTaskNet(tiny_spec()))
    # stage 2 block 0: in 24, expanded 96; ratio 0.25 keeps 72 -> squeeze make_divisible(72 // 4) = 24 of 24
    spec = PruneSpec((0.0, 0.0, 0.25))
    dead = [3, 7, 11, 20, 33, 41, 50, 58, 60, 71, 80, 90, 91, 92, 93, 94, 95, 0, 1, 2, 4, 5, 6, 8]
    _kill_channels(net, 2, 0, dead, squeeze=[])
    pruned = prune(net, spec)
    assert pruned.stages[2][0].expand.conv.out_channels == 72
    x = torch.rand(2, 3, 64, 64)
    ref, got = _outputs(net, x), _outputs(pruned, x)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-5)


def test_identity_prune_is_a_copy(model: MultiTaskNet) -> None:
    pruned = prune(model, PruneSpec(0.0))
    assert pruned is not model and pruned.spec == model.spec
    x = torch.rand(1, 3, 64, 64)
    for key, value in _outputs(model, x).items():
        torch.testing.assert_close(_outputs(pruned, x)[key], value)


def test_bn_recalibration_reestimates_statistics(model: MultiTaskNet) -> None:
    images = torch.rand(16, 3, 64, 64)
    pruned = prune(model, PruneSpec(0.3), calibration=images)
    stem = pruned.stem
    with torch.no_grad():
        conv_out = stem.conv((images - pruned.mean) / pruned.std)
    torch.testing.assert_close(stem.bn.running_mean, conv_out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    kept = prune(model, PruneSpec(0.3), calibration=images, recalibrate=False)
    torch.testing.assert_close(kept.stem.bn.running_mean, model.stem.bn.running_mean)


def test_finetune_hook_is_called(model: MultiTaskNet) -> None:
    seen = []
    prune(model, PruneSpec(0.2), finetune=seen.append)
    assert len(seen) == 1 and isinstance(seen[0], MultiTaskNet)


def test_taylor_importance_with_a_labelled_batch(model: MultiTaskNet) -> None:
    n = 4
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]]).expand(n, 2, 4).clone()
    batch = {
        "images": torch.rand(n, 3, 64, 64),
        "tags": (torch.rand(n, 5) > 0.5).float(),
        "boxes": boxes,
        "box_labels": torch.tensor([[1, -1]]).expand(n, 2).clone(),
        "saliency": (torch.rand(n, 1, 64, 64) > 0.5).to(torch.uint8),
    }
    taylor = prune(model, PruneSpec(0.5, importance="taylor"), calibration=batch)
    magnitude = prune(model, PruneSpec(0.5), calibration=batch)
    assert taylor.spec == magnitude.spec
    assert set(_outputs(taylor, batch["images"])) == {"tags", "det_heatmap", "det_box", "saliency"}
    assert all(p.grad is None for p in model.parameters())  # the input model is untouched


@pytest.mark.parametrize(
    ("in_ch", "expanded", "ratio", "round_to", "want"),
    [
        (24, 96, 0.3, 8, 64),  # 67.2 -> 64
        (24, 96, 0.0, 8, 96),
        (24, 96, 0.9, 8, 16),  # floor: ceil(24 * 0.5 / 8) * 8 = 16
        (16, 64, 0.75, 8, 24),  # 16 would equal in_channels (no expand conv): one step up
        (40, 120, 0.5, 16, 64),
        (16, 16, 0.5, 8, 16),  # no expand conv: never pruned
        (24, 62, 0.02, 8, 62),  # 60.8 rounds to 64 > 62: clamped to the original width
    ],
)
def test_kept_channels(in_ch: int, expanded: int, ratio: float, round_to: int, want: int) -> None:
    assert kept_channels(in_ch, expanded, ratio, round_to=round_to) == want


def test_prunespec_round_trip() -> None:
    spec = PruneSpec((0.1, 0.2, 0.3), round_to=16, importance="taylor")
    assert PruneSpec.from_dict(spec.to_dict()) == spec
    assert PruneSpec(0.25).ratios == (0.25,) and PruneSpec(0.25).ratio(7) == 0.25


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratios": 1.2}, r"prune ratio must lie in \[0, 0.9\], but got 1.2"),
        ({"ratios": (0.1, 0.2, 0.3, 1.2)}, r"prune ratio for stage 3 must lie in \[0, 0.9\], but got 1.2"),
        ({"ratios": (-0.1,)}, r"must lie in \[0, 0.9\], but got -0.1"),
        ({"ratios": ()}, "at least one ratio"),
        ({"ratios": ("a",)}, "prune ratios must be numbers"),
        ({"round_to": 0}, "round_to must be an int >= 1, but got 0"),
        ({"importance": "l1"}, "unknown importance 'l1'; known: magnitude, taylor"),
    ],
)
def test_prunespec_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PruneSpec(**kwargs)


def test_prune_errors(model: MultiTaskNet) -> None:
    with pytest.raises(ConfigError, match="PruneSpec has 2 ratios but the model has 3 stages"):
        prune(model, PruneSpec((0.1, 0.2)))
    with pytest.raises(ConfigError, match="prune needs a compress.model.MultiTaskNet"):
        prune(torch.nn.Conv2d(3, 8, 1), PruneSpec(0.3))
    with pytest.raises(ConfigError, match="importance='taylor' needs a labelled calibration batch"):
        prune(model, PruneSpec(0.3, importance="taylor"), calibration=torch.rand(2, 3, 64, 64))
    with pytest.raises(ConfigError, match=r"calibration images must be a tensor \[N, 3, R, R\]"):
        prune(model, PruneSpec(0.3), calibration=torch.rand(2, 64, 64))
    with pytest.raises(ConfigError, match="unknown key"):
        PruneSpec.from_dict({"ratio": 0.3})
