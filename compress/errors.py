"""The toolkit's error classes (one root, :class:`CompressError`), re-exported from ``profiles``, the room
every other room may import; see ``profiles._errors`` for what each means."""

from __future__ import annotations

from profiles import CompressError, ConfigError, DataError, DataWarning, RunError

__all__ = ["CompressError", "ConfigError", "DataError", "DataWarning", "RunError"]
