"""The toolkit's error classes, defined in the room every other room may import (``profiles`` imports
nothing of the others), so there is one root: ``compress.errors`` re-exports these.

Every error a user can cause derives from :class:`CompressError` and from the builtin it stands for, so
Python callers can catch ``ValueError`` as usual and the CLI can print a one-line message (exit 2 for bad
usage or configuration, 1 for runtime failures).
"""

from __future__ import annotations

__all__ = ["CompressError", "ConfigError", "DataError", "DataWarning", "ProfileError", "RunError"]


class CompressError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    exit_code = 1


class ConfigError(CompressError, ValueError):
    """A bad argument, option, spec or configuration file (exit code 2)."""

    exit_code = 2


class DataError(CompressError, ValueError):
    """A data set that is missing or malformed (exit code 2)."""

    exit_code = 2


class RunError(CompressError, RuntimeError):
    """A run directory, study or artifact that cannot be used as asked (exit code 1)."""

    exit_code = 1


class ProfileError(ConfigError):
    """A bad device name, profile file, measurement table or argument; the message says what to do."""


class DataWarning(UserWarning):
    """Data the toolkit could use only after changing it (16-bit or alpha images); the CLI prints one line."""
