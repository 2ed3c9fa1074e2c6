"""The one error class of the ``profiles`` room (it imports nothing of ``compress``)."""

from __future__ import annotations

__all__ = ["ProfileError"]


class ProfileError(ValueError):
    """A bad device name, profile file, measurement table or argument; the message says what to do."""

    exit_code = 2
