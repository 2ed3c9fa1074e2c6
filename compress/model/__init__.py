"""compress.model: architectures as data, MobileNetV3 blocks, task heads, presets, the supernet and extract.

Static network: ``MultiTaskNet(spec)``; presets: ``get_preset(name)`` / ``list_presets()``; losses and
detection decoding for the heads; checkpoints as ArchSpec JSON + safetensors (``save_model``/``load_model``);
``recalibrate_bn`` after extraction or pruning. Supernet: ``SupernetSpace`` / ``default_space()``,
``Supernet(space)(x, spec)`` and ``extract(supernet, spec) -> MultiTaskNet``.
"""

from __future__ import annotations

from compress.model.bn import recalibrate_bn
from compress.model.checkpoint import load_model, read_spec, save_model
from compress.model.detection import DetectionTargets, decode_detections, detection_loss, detection_targets
from compress.model.heads import HEAD_OUTPUTS
from compress.model.losses import distillation_loss, multitask_loss, saliency_loss, tagging_loss
from compress.model.net import MultiTaskNet, count_parameters
from compress.model.presets import get_preset, list_presets
from compress.model.samples import sample_nets
from compress.model.space import HeadChoices, StageChoices, SupernetSpace, default_space
from compress.model.spec import ArchSpec, HeadSpec, StageSpec, expanded_channels, make_divisible
from compress.model.supernet import Supernet, extract

__all__ = [
    "HEAD_OUTPUTS",
    "ArchSpec",
    "DetectionTargets",
    "HeadChoices",
    "HeadSpec",
    "MultiTaskNet",
    "StageChoices",
    "StageSpec",
    "Supernet",
    "SupernetSpace",
    "count_parameters",
    "decode_detections",
    "default_space",
    "detection_loss",
    "detection_targets",
    "distillation_loss",
    "expanded_channels",
    "extract",
    "get_preset",
    "list_presets",
    "load_model",
    "make_divisible",
    "multitask_loss",
    "read_spec",
    "recalibrate_bn",
    "saliency_loss",
    "sample_nets",
    "save_model",
    "tagging_loss",
]
