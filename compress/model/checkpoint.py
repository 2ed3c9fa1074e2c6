"""Model checkpoints: the ArchSpec JSON plus a safetensors state dict in one file, never a pickle.

A model with an image-embedding output (``MultiTaskNet.attach_embedding``) also stores
``image_embedding`` metadata (JSON: ``stage``, ``dim``); its weight is ``embedding.linear.weight``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from compress.errors import ConfigError, RunError
from compress.model.net import MultiTaskNet
from compress.model.spec import ArchSpec

__all__ = ["FORMAT", "load_model", "save_model"]

FORMAT = "compress.MultiTaskNet/1"


def save_model(model: MultiTaskNet, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (its ``spec`` and state dict) to ``path`` as one safetensors file, atomically."""
    from safetensors.torch import save_file

    if not isinstance(model, MultiTaskNet):
        raise ConfigError(f"save_model needs a MultiTaskNet, but got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "arch_spec": model.spec.to_json()}
    if model.embedding is not None:
        meta["image_embedding"] = json.dumps({"stage": model.embedding.stage, "dim": model.embedding.dim})
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_spec(path: str | os.PathLike[str]) -> ArchSpec:
    """The ArchSpec stored in a checkpoint, without loading its weights."""
    meta = _metadata(Path(path))
    return _spec_from(meta, Path(path))


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise RunError(f"model file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise RunError(f"model file {str(path)!r} is not a readable safetensors checkpoint: {exc}") from None
    if meta.get("format") != FORMAT:
        raise RunError(
            f"model file {str(path)!r} has format {meta.get('format')!r}, expected {FORMAT!r} "
            "(write it with compress.model.save_model)"
        )
    return meta


def _spec_from(meta: dict[str, str], path: Path) -> ArchSpec:
    try:
        return ArchSpec.from_json(meta.get("arch_spec", ""))
    except ConfigError as exc:
        raise RunError(f"model file {str(path)!r} holds an invalid ArchSpec: {exc}") from None


def load_model(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> MultiTaskNet:
    """Rebuild the ``MultiTaskNet`` saved by :func:`save_model` (eval mode); RunError for a bad file."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = _metadata(path)
    spec = _spec_from(meta, path)
    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as exc:
        raise RunError(f"model file {str(path)!r} cannot be read: {exc}") from None
    model = MultiTaskNet(spec)
    try:
        if "image_embedding" in meta:
            stage = int(json.loads(meta["image_embedding"])["stage"])
            model.attach_embedding(stage, state["embedding.linear.weight"])
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ConfigError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[:3]
        raise RunError(
            f"model file {str(path)!r} does not match its ArchSpec ({spec.describe()}): {' '.join(first)}"
        ) from None
    return model.to(map_location).eval()
