"""The data room's progress bars: ``compress.progress.track``."""

from __future__ import annotations

from compress.progress import track

__all__ = ["track"]
