"""Structured pruning of a ``MultiTaskNet``'s expanded channels with Torch-Pruning's dependency graph.

Only the *expanded* channels of inverted-residual blocks shrink (the 1x1 expand conv's outputs, hence the
depthwise conv, its BN, the SE module's input/output and the project conv's inputs), plus the SE squeeze
width, which follows the MobileNetV3 rule ``make_divisible(expanded // 4, 8)`` of the kept width. Stage
outputs, residual adds and every head tap are untouched, so the pruned network is again a plain
``MultiTaskNet`` whose ``spec`` describes it exactly: a pruned block's expand ratio is ``kept / in_channels``
(``expanded_channels`` keeps exact integer products), and the model saves/loads as spec + state dict.

Blocks without an expand conv (expanded == in channels, e.g. MobileNetV3-Large's first block) cannot shrink
without touching the stage's input and are left alone. This is the only module that imports torch_pruning.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from compress.errors import ConfigError

__all__ = ["IMPORTANCES", "MAX_RATIO", "PruneSpec", "kept_channels", "prune", "pruned_spec"]

MAX_RATIO = 0.9
IMPORTANCES = ("magnitude", "taylor")
MIN_EXPAND = 0.5
"""Smallest expand ratio an ``ArchSpec`` accepts; pruning never goes below it."""

Calibration = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class PruneSpec:
    """How much of each stage's expanded channels to remove.

    ``ratios``: one fraction in [0, 0.9] per stage of the model's ``ArchSpec`` (a single value applies to
    every stage); ``round_to``: kept channel counts are rounded to this multiple (hardware-friendly, default
    8); ``importance``: ``"magnitude"`` (L2 norm of each channel's weights across its whole dependency group)
    or ``"taylor"`` (|weight x gradient| summed over the group, from labelled calibration batches).
    """

    ratios: tuple[float, ...] = (0.0,)
    round_to: int = 8
    importance: str = "magnitude"

    def __post_init__(self) -> None:
        ratios = self.ratios
        if isinstance(ratios, int | float):
            ratios = (ratios,)
        try:
            ratios = tuple(float(r) for r in ratios)
        except (TypeError, ValueError):
            raise ConfigError(f"prune ratios must be numbers, but got {self.ratios!r}") from None
        object.__setattr__(self, "ratios", ratios)
        if not ratios:
            raise ConfigError("PruneSpec needs at least one ratio, but got ()")
        for i, r in enumerate(ratios):
            if not 0.0 <= r <= MAX_RATIO:
                where = "" if len(ratios) == 1 else f" for stage {i}"
                raise ConfigError(f"prune ratio{where} must lie in [0, {MAX_RATIO}], but got {r:g}")
        if not isinstance(self.round_to, int) or isinstance(self.round_to, bool) or self.round_to < 1:
            raise ConfigError(f"round_to must be an int >= 1, but got {self.round_to!r}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"unknown importance {self.importance!r}; known: {', '.join(IMPORTANCES)}")

    def ratio(self, stage: int) -> float:
        """The ratio for ``stage`` (the single ratio when one was given for all stages)."""
        return self.ratios[0] if len(self.ratios) == 1 else self.ratios[stage]

    def check_stages(self, num_stages: int) -> None:
        """Raise ConfigError unless there is one ratio, or one per stage."""
        if len(self.ratios) not in (1, num_stages):
            raise ConfigError(
                f"PruneSpec has {len(self.ratios)} ratios but the model has {num_stages} stages; "
                "give one ratio per stage or a single ratio for all"
            )

    @property
    def is_identity(self) -> bool:
        return all(r == 0 for r in self.ratios)

    def to_dict(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "round_to": self.round_to, "importance": self.importance}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruneSpec:
        unknown = sorted(set(data) - {"ratios", "round_to", "importance"})
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in PruneSpec; known keys: importance, ratios, round_to"
            )
        return cls(**{**data, "ratios": tuple(data.get("ratios", (0.0,)))})


def kept_channels(in_channels: int, expanded: int, ratio: float, *, round_to: int = 8) -> int:
    """Expanded channels a block keeps when ``ratio`` of its ``expanded`` channels are removed.

    The count is rounded to a multiple of ``round_to`` and clamped so that the pruned block stays a valid
    ``ArchSpec`` block: at most ``expanded``, at least ``in_channels * 0.5`` (the smallest expand ratio) and
    never exactly ``in_channels`` (a block whose expanded width equals its input has no expand conv, so the
    pruned weights would not fit it; the count then moves one ``round_to`` step, up if possible).
    """
    if ratio <= 0 or expanded == in_channels:
        return expanded
    floor = max(round_to, math.ceil(in_channels * MIN_EXPAND / round_to) * round_to)
    kept = round_to * round(expanded * (1.0 - ratio) / round_to)
    kept = min(expanded, max(floor, kept))
    if kept == in_channels:
        if kept + round_to <= expanded:
            kept += round_to
        elif kept - round_to >= floor:
            kept -= round_to
        else:
            kept = expanded
    return kept


def _blocks(model: nn.Module) -> list[tuple[int, int, nn.Module]]:
    return [(s, b, block) for s, stage in enumerate(model.stages) for b, block in enumerate(stage)]


def pruned_spec(model: nn.Module, spec: PruneSpec) -> Any:
    """The ``ArchSpec`` that ``prune(model, spec)`` will produce (without pruning anything)."""
    arch = _arch_of(model)
    spec.check_stages(len(arch.stages))
    stages = list(arch.stages)
    for s, b, block in _blocks(model):
        if block.expand is None:
            continue
        in_ch = block.expand.conv.in_channels
        expanded = block.expand.conv.out_channels
        kept = kept_channels(in_ch, expanded, spec.ratio(s), round_to=spec.round_to)
        if kept < expanded:
            expand = list(stages[s].expand)
            expand[b] = kept / in_ch
            stages[s] = replace(stages[s], expand=tuple(expand))
    return replace(arch, stages=tuple(stages))


def _arch_of(model: nn.Module) -> Any:
    from compress.model import ArchSpec, MultiTaskNet

    if not isinstance(model, MultiTaskNet) or not isinstance(getattr(model, "spec", None), ArchSpec):
        raise ConfigError(
            "prune needs a compress.model.MultiTaskNet (with an ArchSpec .spec), "
            f"but got {type(model).__name__}"
        )
    return model.spec


def _images(calibration: Calibration) -> torch.Tensor:
    images = calibration["images"] if isinstance(calibration, Mapping) else calibration
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"calibration images must be a tensor [N, 3, R, R], but got {shape}")
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def _taylor_gradients(model: nn.Module, calibration: Calibration | None, input_size: int) -> None:
    """Accumulate the multi-task loss gradients of one labelled calibration batch (Taylor importance)."""
    from compress.model.losses import multitask_loss

    if not isinstance(calibration, Mapping) or "images" not in calibration:
        raise ConfigError(
            "importance='taylor' needs a labelled calibration batch (a dict with 'images' and the task "
            "targets, as MultiTaskDataset.batch returns); use importance='magnitude' without labels"
        )
    model.zero_grad()
    batch = {k: v for k, v in calibration.items() if isinstance(v, torch.Tensor)}
    batch["images"] = _images(calibration)
    multitask_loss(model(batch["images"]), batch, input_size=input_size)["total"].backward()


def _keep_idxs(scores: torch.Tensor, kept: int) -> list[int]:
    order = torch.argsort(scores.detach().float(), descending=True, stable=True)
    return sorted(order[:kept].tolist())


def _prune_block(graph: Any, block: nn.Module, kept: int, importance: Any) -> None:
    import torch_pruning as tp

    conv = block.expand.conv
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
    keep = set(_keep_idxs(importance(group), kept))
    drop = [i for i in range(conv.out_channels) if i not in keep]
    if drop:
        graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop).prune()
    if block.se is not None:
        from compress.model.blocks import se_channels

        fc1, squeeze = block.se.fc1, se_channels(kept)
        group = graph.get_pruning_group(fc1, tp.prune_conv_out_channels, idxs=list(range(fc1.out_channels)))
        keep = set(_keep_idxs(importance(group), squeeze))
        drop = [i for i in range(fc1.out_channels) if i not in keep]
        if drop:
            graph.get_pruning_group(fc1, tp.prune_conv_out_channels, idxs=drop).prune()


def _graph(model: nn.Module, example: torch.Tensor) -> Any:
    import torch_pruning as tp

    def scalar(out: Any) -> torch.Tensor:
        return sum(v.float().sum() for v in out.values()) if isinstance(out, Mapping) else out

    return tp.DependencyGraph().build_dependency(model, example_inputs=example, output_transform=scalar)


def prune(
    model: nn.Module,
    spec: PruneSpec,
    *,
    example_batch: torch.Tensor | None = None,
    calibration: Calibration | None = None,
    recalibrate: bool = True,
    finetune: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Prune ``model``'s expanded channels as ``spec`` says; return a new plain ``MultiTaskNet``.

    ``example_batch`` (default: one random image at the spec's resolution) traces the dependency graph.
    ``calibration``: images [N, 3, R, R] (float in [0, 1] or uint8) or a labelled batch dict (``"images"`` and
    targets, needed for ``importance="taylor"``). Recovery: with calibration images and ``recalibrate``, the
    BatchNorm statistics are re-estimated on them (``compress.model.recalibrate_bn``); ``finetune``, if given,
    is then called with the pruned model (a short fine-tune hook). The input model is not modified.
    """
    from compress.model import MultiTaskNet

    if not isinstance(spec, PruneSpec):
        raise ConfigError(f"spec must be a PruneSpec, but got {type(spec).__name__}")
    new_arch = pruned_spec(model, spec)
    res = model.spec.resolution
    work = copy.deepcopy(model).eval()
    example = example_batch if example_batch is not None else torch.rand(1, 3, res, res)
    if not spec.is_identity:
        graph = _graph(work, example)
        importance = _importance(spec.importance, work, calibration, res)
        for s, _b, block in _blocks(work):
            if block.expand is not None:
                in_ch, expanded = block.expand.conv.in_channels, block.expand.conv.out_channels
                kept = kept_channels(in_ch, expanded, spec.ratio(s), round_to=spec.round_to)
                if kept < expanded:
                    _prune_block(graph, block, kept, importance)
        work.zero_grad(set_to_none=True)
    pruned = MultiTaskNet(new_arch)
    pruned.load_state_dict(work.state_dict(), strict=True)
    if calibration is not None and recalibrate and not spec.is_identity:
        from compress.model import recalibrate_bn

        recalibrate_bn(pruned, _images(calibration))
    if finetune is not None:
        finetune(pruned)
    return pruned.train(model.training)


def _importance(name: str, model: nn.Module, calibration: Calibration | None, res: int) -> Any:
    import torch_pruning as tp

    if name == "taylor":
        _taylor_gradients(model, calibration, res)
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=2)
