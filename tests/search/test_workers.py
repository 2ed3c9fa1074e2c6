"""Dead-worker detection: same host name is not enough (containers), a reused pid is not the same worker."""

from __future__ import annotations

import os
import subprocess

import pytest

from search._workers import identity, is_dead_here


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _other(pid: int, **worker) -> dict:
    me = identity()
    return {**me, "pid": pid, "worker": {**me["worker"], "token": "other", **worker}}


def test_this_process_is_alive():
    assert not is_dead_here(identity())
    me = identity()
    assert not is_dead_here({"host": me["host"], "pid": me["pid"]})  # an older release's trial


def test_an_ended_process_of_this_machine_is_dead():
    assert is_dead_here(_other(_ended_pid(), started=None))
    me = identity()
    assert is_dead_here({"host": me["host"], "pid": _ended_pid()})  # an older release's trial


def test_same_host_name_in_another_container_is_left_to_the_heartbeat():
    for key in ("boot_id", "pid_ns"):
        assert not is_dead_here(_other(_ended_pid(), **{key: "another"})), key


def test_a_reused_pid_is_not_the_trials_worker():
    parent = os.getppid()  # alive, but it started long before the recorded start time
    started = identity()["worker"]["started"]
    assert is_dead_here(_other(parent, started=started + 10**6))
    assert not is_dead_here(_other(parent, started=None))  # unknown start time: a live pid counts as alive


@pytest.mark.parametrize("storage", ["sqlite:///{}/study.db", "{}/study.journal"])
def test_trial_killed_before_it_recorded_its_worker(tmp_path, storage):
    from search.storage import create_study, fail_dead_trials
    from search.study import make_sampler

    study = create_study(
        storage=storage.format(tmp_path),
        study_name="s",
        objectives=("quality", "latency"),
        sampler=make_sampler("random", seed=0),
        config={},
    )
    trial = study.ask()  # RUNNING, no pid, no heartbeat: as a kill right after Optuna's ask leaves it
    assert fail_dead_trials(study) == []  # fresh: its worker may be about to record itself
    assert fail_dead_trials(study, exclusive=True) == [trial.number]
    frozen = study.trials[trial.number]
    assert frozen.state.name == "FAIL" and "before it recorded itself" in frozen.user_attrs["fail_reason"]
