"""Dead-worker detection: same host name is not enough (containers), a reused pid is not the same worker."""

from __future__ import annotations

import os
import subprocess

from search._workers import identity, is_dead_here


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_this_process_is_alive():
    assert not is_dead_here(identity())
    me = {k: v for k, v in identity().items() if k != "token"}
    assert not is_dead_here(me)


def test_an_ended_process_of_this_machine_is_dead():
    attrs = {**identity(), "pid": _ended_pid(), "token": "other", "started": None}
    assert is_dead_here(attrs)


def test_same_host_name_in_another_container_is_left_to_the_heartbeat():
    for key in ("boot_id", "pid_ns"):
        attrs = {**identity(), "pid": _ended_pid(), "token": "other", key: "another"}
        assert not is_dead_here(attrs), key


def test_a_reused_pid_is_not_the_trials_worker():
    parent = os.getppid()  # alive, but it started long before the recorded start time
    attrs = {**identity(), "pid": parent, "token": "other", "started": identity()["started"] + 10**6}
    assert is_dead_here(attrs)
    attrs["started"] = identity()["started"] and None
    assert not is_dead_here(attrs)  # unknown start time: a live pid counts as alive
