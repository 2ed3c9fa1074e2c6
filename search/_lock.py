"""One ``compress search`` at a time per run directory: an exclusive ``fcntl`` lock on ``RUN/.lock``.

A second search on the same ``--out`` fails at once with a one-line error naming the holder (it does not
wait: a search can run for hours, and a silent wait looks like a hang). The kernel drops the lock when its
process ends, however it ends (SIGKILL included), so a crashed search never leaves a stale lock behind. The
file holds the holder's pid and host as JSON, for the error message. Local ``--workers`` are children of the
process that holds the lock; searches on other machines use their own ``--out`` (see the README). Network
file systems without ``flock`` support get no protection (the lock then always succeeds).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from compress.errors import RunError

__all__ = ["LOCK_FILE", "run_lock"]

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run directory's lock (creating the directory) for the ``with`` block."""
    import fcntl

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        from compress.errors import ConfigError

        raise ConfigError(f"--out {run_dir} exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"{run_dir} is in use by another compress search ({_holder(path)}); wait for it to finish, "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        _clear_killed_writes(run_dir)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _clear_killed_writes(run_dir: Path) -> None:
    """Temporary files and staging folders that a killed search left (we hold the lock: nobody writes)."""
    from compress.atomic import clear_leftovers

    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for tmp in run_dir.glob(".tmp??????"):  # safetensors' own temporary file (Rust tempfile), killed mid-save
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
    clear_leftovers(run_dir / "chosen")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
