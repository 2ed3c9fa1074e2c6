"""Files and folders that appear whole or not at all: write to a temporary name beside, then rename.

A process killed mid-write leaves the old version (or nothing) and a hidden temporary, never half a file. A
folder (``chosen/``) is built in a hidden sibling and swapped in with two renames; :func:`publish_dir` also
clears the leftovers of a swap that a kill interrupted.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

__all__ = ["clear_leftovers", "publish_dir", "staging_dir", "write_bytes", "write_text"]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a unique temporary file in the same folder, then rename)."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def staging_dir(final: str | os.PathLike[str]) -> Path:
    """A fresh, empty hidden folder beside ``final`` to build its next version in."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(final)
    stage = final.with_name(f".{final.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
    stage.mkdir()
    return stage


def clear_leftovers(final: str | os.PathLike[str]) -> None:
    """Remove what killed writes left beside ``final``: hidden staging folders and temporary files.

    Call it only while no other process writes there (the run directory's lock held).
    """
    final = Path(final)
    for old in final.parent.glob(f".{final.name}.*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)


def publish_dir(stage: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Put the finished ``stage`` folder in place of ``final`` (its old version is removed afterwards)."""
    stage, final = Path(stage), Path(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
