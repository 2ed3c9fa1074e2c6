"""Who runs a trial, and whether that process is still alive: more than pid + hostname.

Containers often share a hostname (and every container's first process is pid 1), and a pid is reused once
its process ends. So a worker is identified by its host name, the kernel's boot id, its pid namespace, its
pid, the process's start time (in clock ticks since boot) and a random per-process token. A trial's process
is judged dead here only when it ran on this very kernel and pid namespace (same boot id and namespace) and
no process with its pid and start time exists any more; any other worker is left to the storage's heartbeat.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import cache
from typing import Any

__all__ = ["identity", "is_dead_here"]

TOKEN = secrets.token_hex(8)
"""This process's random token (stored on each of its trials)."""


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _started(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None when unknown or gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


@cache
def _machine() -> dict[str, str]:
    return {
        "host": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_ns": _pid_namespace(),
    }


def identity() -> dict[str, Any]:
    """User attributes that identify the calling process as a trial's worker.

    ``host`` and ``pid`` first, each its own attribute (as before, and what people filter on); the rest in
    one ``worker`` attribute, so that a trial carries all of it after three storage writes.
    """
    pid = os.getpid()
    machine = _machine()
    worker = {
        "boot_id": machine["boot_id"],
        "pid_ns": machine["pid_ns"],
        "started": _started(pid),
        "token": TOKEN,
    }
    return {"host": machine["host"], "pid": pid, "worker": worker}


def _alive(pid: int, started: Any) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _started(pid)
    # a pid reused by a later process: its start time differs from the one the trial recorded
    return not (isinstance(started, int) and now is not None and now != started)


def is_dead_here(attrs: dict[str, Any]) -> bool:
    """Whether the trial with user attributes ``attrs`` ran on this machine in a process that has ended."""
    pid = attrs.get("pid")
    recorded = attrs.get("worker")
    worker: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if not isinstance(pid, int) or worker.get("token") == TOKEN:
        return False
    machine = _machine()
    if attrs.get("host") != machine["host"]:
        return False
    for key in ("boot_id", "pid_ns"):  # recorded by this release; older trials carry only host and pid
        if key in worker and worker[key] != machine[key]:
            return False  # another container or another boot: its pids mean nothing here
    if "token" not in worker and pid == os.getpid():
        return False
    return not _alive(pid, worker.get("started"))
