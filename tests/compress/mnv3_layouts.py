"""MobileNetV3-Large state dicts in timm's and torchvision's layouts, generated locally (nothing downloaded).

The layouts are written out from the published sources, independently of ``compress.model.mnv3_weights``:
timm ``mobilenetv3_large_100`` (``timm/models/mobilenetv3.py``: arch_def ``ds_r1_k3_s1_e1_c16_nre``,
``ir_r1_k3_s2_e4_c24_nre``, ..., ``cn_r1_k1_s1_c960``; blocks ``DepthwiseSeparableConv`` (``conv_dw``,
``bn1``, ``conv_pw``, ``bn2``) / ``InvertedResidual`` (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``,
``se.conv_reduce``, ``se.conv_expand``, ``conv_pwl``, ``bn3``) / ``ConvBnAct``; ``conv_head`` +
``classifier``) and torchvision ``mobilenet_v3_large`` (``features.0`` stem, ``features.1-15``
``InvertedResidual.block`` layers in order, SE ``fc1``/``fc2``, ``features.16`` last conv, ``classifier.0``
/ ``classifier.3``).
"""

from __future__ import annotations

import torch

# MobileNetV3-Large (paper Table 1): per stage, per block (input, expanded, output, kernel, SE); stage strides
LARGE = [
    [(16, 16, 16, 3, False)],
    [(16, 64, 24, 3, False), (24, 72, 24, 3, False)],
    [(24, 72, 40, 5, True), (40, 120, 40, 5, True), (40, 120, 40, 5, True)],
    [(40, 240, 80, 3, False), (80, 200, 80, 3, False), (80, 184, 80, 3, False), (80, 184, 80, 3, False)],
    [(80, 480, 112, 3, True), (112, 672, 112, 3, True)],
    [(112, 672, 160, 5, True), (160, 960, 160, 5, True), (160, 960, 160, 5, True)],
]
STRIDES = (1, 2, 2, 2, 1, 2)


def _divisible(v: float, d: int = 8) -> int:  # timm make_divisible / torchvision _make_divisible
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def _layers() -> list[tuple[str, str, list[int]]]:
    """Every parameterised layer of Large in forward order: (kind, role, shape), kind conv|bn|se."""
    out = [("conv", "stem", [16, 3, 3, 3]), ("bn", "stem", [16])]
    for stage in LARGE:
        for cin, exp, cout, k, se in stage:
            if exp != cin:
                out += [("conv", "expand", [exp, cin, 1, 1]), ("bn", "expand", [exp])]
            out += [("conv", "dw", [exp, 1, k, k]), ("bn", "dw", [exp])]
            if se:
                sq = _divisible(exp // 4)
                out += [("se", "reduce", [sq, exp, 1, 1]), ("se", "expand", [exp, sq, 1, 1])]
            out += [("conv", "project", [cout, exp, 1, 1]), ("bn", "project", [cout])]
    return out


def _tensors(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random weights per layer (BN variances positive), shared by both layouts."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for kind, _, shape in _layers():
        if kind == "bn":
            c = shape[0]
            out.append({"weight": torch.rand(c, generator=g) + 0.5, "bias": torch.randn(c, generator=g) * 0.1,
                        "running_mean": torch.randn(c, generator=g) * 0.1,
                        "running_var": torch.rand(c, generator=g) + 0.5,
                        "num_batches_tracked": torch.tensor(7)})  # fmt: skip
        elif kind == "se":
            out.append(
                {
                    "weight": torch.randn(shape, generator=g) * 0.1,
                    "bias": torch.randn(shape[0], generator=g) * 0.1,
                }
            )
        else:
            out.append(
                {"weight": torch.randn(shape, generator=g) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5}
            )
    return out


def _classifier(state: dict[str, torch.Tensor], timm: bool) -> None:
    g = torch.Generator().manual_seed(9)
    if timm:
        state["blocks.6.0.conv.weight"] = torch.randn(960, 160, 1, 1, generator=g)
        state |= {
            f"blocks.6.0.bn1.{k}": torch.ones(960) for k in ("weight", "bias", "running_mean", "running_var")
        }
        state["conv_head.weight"], state["conv_head.bias"] = torch.randn(1280, 960, 1, 1), torch.zeros(1280)
        state["classifier.weight"], state["classifier.bias"] = torch.randn(1000, 1280), torch.zeros(1000)
    else:
        state["features.16.0.weight"] = torch.randn(960, 160, 1, 1, generator=g)
        state |= {
            f"features.16.1.{k}": torch.ones(960) for k in ("weight", "bias", "running_mean", "running_var")
        }
        state["classifier.0.weight"], state["classifier.0.bias"] = torch.randn(1280, 960), torch.zeros(1280)
        state["classifier.3.weight"], state["classifier.3.bias"] = torch.randn(1000, 1280), torch.zeros(1000)


def timm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``mobilenetv3_large_100`` state dict in timm's names."""
    tensors, layers = iter(_tensors(seed)), iter(_layers())
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str) -> None:
        next(layers)
        state.update({f"{prefix}.{k}": v for k, v in next(tensors).items()})

    put("conv_stem")
    put("bn1")
    for s, stage in enumerate(LARGE):
        for j, (cin, exp, _, _, se) in enumerate(stage):
            b = f"blocks.{s}.{j}"
            if exp == cin:  # DepthwiseSeparableConv
                for name in ("conv_dw", "bn1", "conv_pw", "bn2"):
                    put(f"{b}.{name}")
            else:
                for name in ("conv_pw", "bn1", "conv_dw", "bn2"):
                    put(f"{b}.{name}")
                if se:
                    put(f"{b}.se.conv_reduce")
                    put(f"{b}.se.conv_expand")
                put(f"{b}.conv_pwl")
                put(f"{b}.bn3")
    _classifier(state, timm=True)
    return state


def torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``mobilenet_v3_large`` state dict in torchvision's names (same tensors as ``timm_state``)."""
    tensors = iter(_tensors(seed))
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str) -> None:
        state.update({f"{prefix}.{k}": v for k, v in next(tensors).items()})

    put("features.0.0")
    put("features.0.1")
    n = 1
    for stage in LARGE:
        for cin, exp, _, _, se in stage:
            i = 0
            for present in (exp != cin, True):  # expand (when present), depthwise
                if present:
                    put(f"features.{n}.block.{i}.0")
                    put(f"features.{n}.block.{i}.1")
                    i += 1
            if se:
                put(f"features.{n}.block.{i}.fc1")
                put(f"features.{n}.block.{i}.fc2")
                i += 1
            put(f"features.{n}.block.{i}.0")
            put(f"features.{n}.block.{i}.1")
            n += 1
    _classifier(state, timm=False)
    return state
