"""Per-item work of the data path (drawing scenes, decoding images) spread over the cores.

``chunked_map(fn, items, *args)`` yields ``fn(*args, chunk)`` for consecutive slices of ``items`` (a sequence:
a ``range`` of indices, a list of records), in order: in forked worker processes where the platform forks
(Linux) and there is more than one chunk and one core, else in this process. ``fn`` must be a module-level
function whose result depends only on its arguments, so both ways give the same result; an exception in a
worker reaches the caller as it was raised.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

__all__ = ["CHUNK", "chunked_map"]

T = TypeVar("T")
CHUNK = 50  # items per task: few enough tasks to keep the workers busy, each worth its pickling
_MAX_WORKERS = 4


def chunked_map(fn: Callable[..., T], items: Sequence[Any], *args: Any) -> Iterator[T]:
    """``fn(*args, items[i : i + CHUNK])`` for every chunk of ``items``, in order (see the module)."""
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = min(os.cpu_count() or 1, _MAX_WORKERS, len(chunks))
    if workers < 2 or not sys.platform.startswith("linux"):
        yield from (fn(*args, c) for c in chunks)
        return
    # fork: a worker needs only functions already imported; spawn would import torch again in each one
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(fn, *zip(*((*args, c) for c in chunks), strict=True))
