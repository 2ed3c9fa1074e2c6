"""Nested state (dicts, lists, tuples, numbers, strings, tensors) as one safetensors file: no pickle.

The tensors go into the safetensors body; everything else into its JSON header (the ``state`` metadata key),
where each tensor is a ``{"__tensor__": NAME}`` placeholder. Dicts with non-string keys (an optimizer's state
is keyed by parameter index) and tuples keep their types through ``{"__dict__": [[k, v], ...]}`` and
``{"__tuple__": [...]}``. Files are written to a temporary name and renamed into place, so a crash leaves the
old file or the new one. Reading never unpickles: a torch pickle (``.pt`` from an older release) is refused
with a one-line error saying what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from compress.errors import RunError

__all__ = ["is_pickle", "load_state", "save_state"]

_KEY = "state"
_FORMAT = "compress.state/1"


def _encode(obj: Any, tensors: dict[str, Any]) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        # a clone: safetensors refuses tensors that share memory, and non-contiguous layouts
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not ({"__tensor__", "__dict__", "__tuple__"} & set(obj)):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a safetensors state file")


def _decode(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_state(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` to ``path`` (safetensors + JSON header), atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, Any] = {}
    header = json.dumps(_encode(obj, tensors))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": _FORMAT, _KEY: header})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_pickle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a torch pickle (a zip archive or a raw pickle stream, protocol 2-5).

    A safetensors file starts with its header's length (8 bytes, little-endian) and then the header's ``{``;
    that length is a multiple of 8, so its first byte is 0x80 for 1 file in 32, which must not read as a
    pickle's PROTO opcode (0x80)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        if int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
            return False  # a safetensors layout
    return head.startswith(b"PK\x03\x04") or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    )


def load_state(path: str | os.PathLike[str], *, what: str = "state file", fix: str = "delete it") -> Any:
    """Read a file written by :func:`save_state`; RunError (naming ``what`` and ``fix``) for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise RunError(f"no {what} at {path}")
    if is_pickle(path):
        raise RunError(
            f"the {what} {path} is a torch pickle written by an older release; this release reads only "
            f"safetensors (no pickle, see CVE-2025-32434): {fix}"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise RunError(f"the {what} {path} has format {meta.get('format')!r}, not {_FORMAT!r}: {fix}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
        return _decode(json.loads(meta[_KEY]), tensors)
    except RunError:
        raise
    except Exception as exc:  # truncated or garbled: safetensors and json raise their own types
        text = " ".join(str(exc).split())[:200]
        raise RunError(f"the {what} {path} is corrupt ({type(exc).__name__}: {text}): {fix}") from None
