"""Start a supernet from MobileNetV3-Large weights in timm's or torchvision's ``state_dict`` layout.

``load_mobilenetv3_weights(supernet, path)`` reads a safetensors file or a weights-only torch file (a bare
state dict, or one under ``"state_dict"`` / ``"model"``; a DDP ``module.`` prefix is dropped), recognises
the layout by its stem key (timm ``conv_stem.weight``, torchvision ``features.0.0.weight``) and copies each
backbone layer into the supernet's module of the same role, by name and shape:

* timm ``mobilenetv3_large_100``: ``conv_stem``/``bn1``; ``blocks.{s}.{j}`` with ``conv_pw``/``bn1``
  (expand), ``conv_dw``/``bn2`` (depthwise), ``se.conv_reduce``/``se.conv_expand``, ``conv_pwl``/``bn3``
  (project); the first block (``DepthwiseSeparableConv``) has ``conv_dw``/``bn1`` and ``conv_pw``/``bn2``.
* torchvision ``mobilenet_v3_large``: ``features.0.{0,1}`` (stem); ``features.{1..15}.block.{i}.{0,1}``,
  ``i`` counting the block's layers in order (expand when present, depthwise, SE ``fc1``/``fc2``, project).

Large's six stages are the supernet's six (1, 2, 3, 4, 2, 3 blocks). A source tensor goes into the leading
channels and the centre of the kernel of the supernet's (largest-subnet) tensor, so every subnet that keeps
Large's widths and kernels holds Large's weights. The rest of each row the source defines is set to zero
(the wider expansion's extra inputs, the 5x5 kernel's border around a 3x3), so the supernet's largest subnet
computes Large's features on Large's channels; channels, blocks and heads Large does not have keep their
initialisation. Large's last 1x1 conv (960 channels) and ImageNet classifier (``blocks.6``, ``conv_head``,
``classifier``; ``features.16``, ``classifier``) are left out: the task heads have their own sizes.

Anything that does not fit is a one-line ``ConfigError``: an unreadable file, another layout or architecture,
a missing key (named), a key this mapping does not know, a tensor larger than the supernet's (key and shapes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from compress.errors import ConfigError

__all__ = ["InitReport", "file_digest", "load_mobilenetv3_weights", "mobilenetv3_key_map", "read_mobilenetv3"]

# MobileNetV3-Large per stage: blocks, and whether they have squeeze-excite (the paper's Table 1).
_LARGE_STAGES = ((1, False), (2, False), (3, True), (4, False), (2, True), (3, True))
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_IGNORED = {
    "timm": ("blocks.6.", "conv_head.", "classifier.", "norm_head."),
    "torchvision": ("features.16.", "classifier."),
}
_LAYOUTS = {"timm": "conv_stem.weight", "torchvision": "features.0.0.weight"}


@dataclass(frozen=True)
class InitReport:
    """What ``load_mobilenetv3_weights`` did: the layout, the tensors copied and the source keys left out."""

    layout: str
    copied: int
    ignored: tuple[str, ...]
    digest: str


def _conv_bn(src_conv: str, src_bn: str, dst: str) -> dict[str, str]:
    out = {f"{src_conv}.weight": f"{dst}.conv.weight"}
    out |= {f"{src_bn}.{p}": f"{dst}.bn.{p}" for p in _BN}
    return out


def _se(src: str, dst: str, names: tuple[str, str]) -> dict[str, str]:
    return {f"{src}.{n}.{p}": f"{dst}.se.{ours}.{p}" for n, ours in zip(names, ("fc1", "fc2"), strict=True)
            for p in ("weight", "bias")}  # fmt: skip


def mobilenetv3_key_map(layout: str) -> dict[str, str]:
    """Source key -> supernet key for MobileNetV3-Large's backbone in ``layout`` ("timm" | "torchvision")."""
    if layout not in _LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; known: {', '.join(_LAYOUTS)}")
    timm = layout == "timm"
    out = _conv_bn("conv_stem", "bn1", "stem") if timm else _conv_bn("features.0.0", "features.0.1", "stem")
    flat = 1  # torchvision numbers the blocks 1..15 across stages
    for s, (blocks, se) in enumerate(_LARGE_STAGES):
        for j in range(blocks):
            dst = f"stages.{s}.{j}"
            first = s == 0  # Large's first block has no expand conv (expanded == input width)
            if timm:
                b = f"blocks.{s}.{j}"
                if first:
                    out |= _conv_bn(f"{b}.conv_dw", f"{b}.bn1", f"{dst}.depthwise")
                    out |= _conv_bn(f"{b}.conv_pw", f"{b}.bn2", f"{dst}.project")
                else:
                    out |= _conv_bn(f"{b}.conv_pw", f"{b}.bn1", f"{dst}.expand")
                    out |= _conv_bn(f"{b}.conv_dw", f"{b}.bn2", f"{dst}.depthwise")
                    out |= _conv_bn(f"{b}.conv_pwl", f"{b}.bn3", f"{dst}.project")
                if se:
                    out |= _se(f"{b}.se", dst, ("conv_reduce", "conv_expand"))
            else:
                b = f"features.{flat}.block"
                roles = (
                    (["expand"] if not first else []) + ["depthwise"] + (["se"] if se else []) + ["project"]
                )
                for i, role in enumerate(roles):
                    if role == "se":
                        out |= _se(f"{b}.{i}", dst, ("fc1", "fc2"))
                    else:
                        out |= _conv_bn(f"{b}.{i}.0", f"{b}.{i}.1", f"{dst}.{role}")
            flat += 1
    return out


def file_digest(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes: what a supernet trained from it is keyed by."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(
            f"--init {path}: no such file; give a MobileNetV3-Large state_dict (.safetensors or .pth)"
        )
    with open(path, "rb") as f:
        zipped = f.read(2) == b"PK"  # torch.save's zip format; safetensors starts with its header length
    try:
        if zipped or path.suffix in (".pt", ".pth", ".bin"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(str(path))
    except Exception as exc:  # safetensors and torch raise many types for foreign or truncated files
        msg = " ".join(str(exc).split())[:160]
        raise ConfigError(
            f"--init {path}: cannot read it as safetensors or a weights-only torch file ({type(exc).__name__}: "
            f"{msg}); save the model's state_dict() with safetensors or torch.save"
        ) from None
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"--init {path}: not a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _layout(path: Path, state: dict[str, torch.Tensor]) -> str:
    for layout, stem in _LAYOUTS.items():
        if stem in state:
            return layout
    first = ", ".join(list(state)[:3])
    raise ConfigError(
        f"--init {path}: not a MobileNetV3 state_dict in the timm or torchvision layout (no 'conv_stem.weight' "
        f"or 'features.0.0.weight'; first keys: {first})"
    )


def _place(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Write ``src`` into the leading channels / centred kernel of ``dst``; the rest of its rows zeroed."""
    if dst.dim() == 0:
        dst.copy_(src)
        return
    rows = dst[: src.shape[0]]
    rows.zero_()
    index = [slice(0, src.shape[0])]
    for d in range(1, src.dim()):
        off = (dst.shape[d] - src.shape[d]) // 2 if d >= 2 else 0
        index.append(slice(off, off + src.shape[d]))
    dst[tuple(index)] = src.to(dst.dtype)


def _fits(src: torch.Tensor, dst: torch.Tensor) -> bool:
    if src.dim() != dst.dim():
        return False
    kernels_ok = all((dst.shape[d] - src.shape[d]) % 2 == 0 for d in range(2, src.dim()))
    return kernels_ok and all(s <= d for s, d in zip(src.shape, dst.shape, strict=True))


def read_mobilenetv3(path: str | Path) -> tuple[str, dict[str, torch.Tensor], tuple[str, ...]]:
    """Read and check a MobileNetV3-Large file: ``(layout, state, ignored keys)``; ConfigError if it is not one.

    Checks everything but the fit into a particular supernet (call it before slow work to fail early).
    """
    path = Path(path).expanduser()
    state = _read(path)
    layout = _layout(path, state)
    key_map = mobilenetv3_key_map(layout)
    missing = [k for k in key_map if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(
            f"--init {path}: missing key {missing[0]!r} ({len(missing)} missing) for MobileNetV3-Large in the "
            f"{layout} layout; is it another architecture (MobileNetV3-Small, a different net)?"
        )
    ignored = tuple(k for k in state if k not in key_map and k.startswith(_IGNORED[layout]))
    unknown = [k for k in state if k not in key_map and k not in ignored]
    if unknown:
        raise ConfigError(
            f"--init {path}: unexpected key {unknown[0]!r} ({len(unknown)} unexpected) for MobileNetV3-Large in "
            f"the {layout} layout; is it another architecture?"
        )
    return layout, state, ignored


@torch.no_grad()
def load_mobilenetv3_weights(supernet: torch.nn.Module, path: str | Path) -> InitReport:
    """Copy MobileNetV3-Large backbone weights from ``path`` into ``supernet`` (in place); see the module doc."""
    path = Path(path).expanduser()
    layout, state, ignored = read_mobilenetv3(path)
    target = supernet.state_dict()
    pairs = [(k, d) for k, d in mobilenetv3_key_map(layout).items() if k in state]
    for key, dst in pairs:
        if dst not in target:
            raise ConfigError(
                f"--init {path}: {key} maps to {dst}, which this supernet does not have; its space lacks a "
                "layer MobileNetV3-Large has (use a space at least as deep, with squeeze-excite where Large has it)"
            )
        src, to = state[key], target[dst]
        if not _fits(src, to):
            raise ConfigError(
                f"--init {path}: {key} has shape {list(src.shape)}, which does not fit the supernet's {dst} "
                f"{list(to.shape)}; the space's largest subnet must be at least MobileNetV3-Large"
            )
    for key, dst in pairs:
        _place(target[dst], state[key])  # state_dict() tensors share storage with the parameters
    return InitReport(layout, len(pairs), ignored, file_digest(path))
