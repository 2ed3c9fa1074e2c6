"""What a study's scores depend on besides its settings: the supernet's weights and the data's content.

Both hashes go into the study's stored configuration, so a retrained supernet or a changed data set (same
``coco:PATH``, other images or labels) starts a new study instead of mixing incomparable scores into the old
one. Also the check that the validation split can score anything, made before the supernet is trained.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from compress.errors import DataError

__all__ = ["check_validation", "content_hash", "file_hash"]


def file_hash(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (the first 16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def content_hash(*datasets: Any) -> str:
    """SHA-256 (16 hex digits) of the data sets' tensors and category names, in order."""
    h = hashlib.sha256()
    for data in datasets:
        state = data.state()
        for name in sorted(state):
            value = state[name]
            h.update(name.encode())
            if hasattr(value, "numpy"):
                array = value.detach().cpu().contiguous().numpy()
                h.update(f"{array.dtype}{array.shape}".encode())
                h.update(array.tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()[:16]


def check_validation(val: Any, data: str) -> None:
    """DataError when the validation split has no images, or no labels of any task to score against."""
    if len(val) == 0:
        raise DataError(f"the validation split of {data!r} has no images; every trial is scored on it")
    labelled = bool(val.tags.sum() > 0) or bool((val.box_labels >= 0).any()) or bool(val.saliency.any())
    if not labelled:
        raise DataError(
            f"the validation split of {data!r} has {len(val)} images but no labels (no tags, boxes or "
            "saliency): add annotations to it, or point --data at a labelled set"
        )
