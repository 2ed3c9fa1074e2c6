"""``--init``: MobileNetV3-Large weights in timm's and torchvision's layouts (generated in ``mnv3_layouts``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mnv3_layouts import LARGE, STRIDES, timm_state, torchvision_state
from safetensors.torch import save_file

from compress.cli import main
from compress.errors import ConfigError
from compress.model import Supernet, default_space
from compress.model.mnv3_weights import load_mobilenetv3_weights


def _reference_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Large's stage outputs computed straight from the timm-layout dict (eval-mode BN, eps 1e-3)."""

    def bn(y: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(y, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-3)  # fmt: skip

    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    x = F.hardswish(bn(F.conv2d((x - mean) / std, sd["conv_stem.weight"], stride=2, padding=1), "bn1"))
    feats = []
    for s, stage in enumerate(LARGE):
        act = F.relu if s < 3 else F.hardswish
        for j, (cin, exp, cout, k, se) in enumerate(stage):
            b, stride = f"blocks.{s}.{j}", STRIDES[s] if j == 0 else 1
            y = x
            if exp != cin:
                y = act(bn(F.conv2d(y, sd[f"{b}.conv_pw.weight"]), f"{b}.bn1"))
            dw_bn = f"{b}.bn1" if exp == cin else f"{b}.bn2"
            y = act(
                bn(F.conv2d(y, sd[f"{b}.conv_dw.weight"], stride=stride, padding=k // 2, groups=exp), dw_bn)
            )
            if se:
                z = F.relu(F.conv2d(y.mean((2, 3), keepdim=True), sd[f"{b}.se.conv_reduce.weight"],
                                    sd[f"{b}.se.conv_reduce.bias"]))  # fmt: skip
                y = y * F.hardsigmoid(
                    F.conv2d(z, sd[f"{b}.se.conv_expand.weight"], sd[f"{b}.se.conv_expand.bias"])
                )
            pw, pw_bn = (f"{b}.conv_pw", f"{b}.bn2") if exp == cin else (f"{b}.conv_pwl", f"{b}.bn3")
            y = bn(F.conv2d(y, sd[f"{pw}.weight"]), pw_bn)
            x = x + y if stride == 1 and cin == cout else y
        feats.append(x)
    return feats


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mnv3")
    timm_file, tv_file = root / "mobilenetv3_large_100.safetensors", root / "mobilenet_v3_large.pth"
    save_file(timm_state(), str(timm_file))
    torch.save(torchvision_state(), tv_file)
    return {"timm": timm_file, "torchvision": tv_file}


def _supernet(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(default_space())


def test_timm_and_torchvision_layouts_give_the_same_supernet(checkpoints: dict[str, Path]) -> None:
    a, b = _supernet(), _supernet()
    ra = load_mobilenetv3_weights(a, checkpoints["timm"])
    rb = load_mobilenetv3_weights(b, checkpoints["torchvision"])
    assert (ra.layout, rb.layout) == ("timm", "torchvision") and ra.copied == rb.copied > 200
    assert "classifier.weight" in ra.ignored and "features.16.0.weight" in rb.ignored
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    src = timm_state()
    sd = a.state_dict()
    assert torch.equal(sd["stem.conv.weight"], src["conv_stem.weight"])
    assert torch.equal(sd["stages.3.1.expand.conv.weight"][:200, :80], src["blocks.3.1.conv_pw.weight"])
    dw = sd["stages.1.0.depthwise.conv.weight"]  # Large's 3x3 in the centre of the supernet's 5x5, border 0
    assert dw.shape[2:] == (5, 5) and torch.equal(dw[:64, :, 1:4, 1:4], src["blocks.1.0.conv_dw.weight"])
    assert dw[:64, :, 0].abs().sum() == 0 and dw[64:].abs().sum() > 0  # extra channels keep their init


def test_largest_subnet_computes_large_features_on_its_channels(checkpoints: dict[str, Path]) -> None:
    net = _supernet()
    load_mobilenetv3_weights(net, checkpoints["timm"])
    net.eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = net.features(x, net.space.largest(), stages=6)
        ref = _reference_features(timm_state(), x)
    for s, (o, r) in enumerate(zip(ours, ref, strict=True)):
        err = (o[:, : r.shape[1]] - r).abs().max()  # float rounding only, relative to the features' scale
        assert err <= 1e-4 * max(1.0, float(r.abs().max())), (s, float(err), float(r.abs().max()))


def _write(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "w.safetensors") -> Path:
    path = tmp_path / name
    save_file(state, str(path))
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("blocks.3.3.")], "missing key 'blocks.3.3.conv_pw.weight'"),
        (lambda s: s.__setitem__("blocks.7.0.conv.weight", torch.zeros(1)), "unexpected key 'blocks.7.0.conv.weight'"),
        (lambda s: s.__setitem__("blocks.5.0.conv_pwl.weight", torch.zeros(200, 672, 1, 1)),
         r"blocks.5.0.conv_pwl.weight has shape \[200, 672, 1, 1\].*stages.5.0.project.conv.weight \[160, 672, 1, 1\]"),
        (lambda s: s.__setitem__("blocks.2.0.conv_dw.weight", torch.zeros(72, 1, 7, 7)),
         r"blocks.2.0.conv_dw.weight has shape \[72, 1, 7, 7\]"),
    ],
)  # fmt: skip
def test_what_does_not_fit_is_named(tmp_path: Path, edit, match: str) -> None:
    state = timm_state()
    edit(state)
    with pytest.raises(ConfigError, match=match):
        load_mobilenetv3_weights(_supernet(), _write(tmp_path, state))


def test_other_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a MobileNetV3 state_dict in the timm or torchvision layout"):
        load_mobilenetv3_weights(_supernet(), _write(tmp_path, {"conv1.weight": torch.zeros(64, 3, 7, 7)}))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="cannot read it as safetensors or a weights-only torch file"):
        load_mobilenetv3_weights(_supernet(), garbage)
    with pytest.raises(ConfigError, match="no such file"):
        load_mobilenetv3_weights(_supernet(), tmp_path / "absent.pth")


def test_wrapped_and_ddp_prefixed_torch_files_load(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm_state().items()}}, path)
    assert load_mobilenetv3_weights(_supernet(), path).layout == "timm"


def test_cli_init_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, {"conv1.weight": torch.zeros(4)})
    code = main(["train", "--init", str(bad), "--out", str(tmp_path / "run"), "--data", "coco:/nonexistent"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--init" in err and "Traceback" not in err
