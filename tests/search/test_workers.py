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


def test_journal_left_by_a_killed_writer_is_repaired_by_the_sole_process(tmp_path):
    """A SIGKILL inside Optuna's journal write leaves its lock and a last line without newline: the run
    directory's sole process (exclusive) clears both, instead of waiting 30 s and writing into the torn line."""
    import time

    from search.storage import create_study, load_study
    from search.study import make_sampler

    path = str(tmp_path / "study.journal")
    kw = dict(study_name="s", objectives=("quality", "latency"), config={})
    study = create_study(storage=path, sampler=make_sampler("random", seed=0), **kw)
    study.tell(study.ask(), [0.5, 3.0])
    with open(path, "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"x","trial_id":')  # torn: the writer died mid-line
    os.symlink(path, path + ".lock")  # its lock, held by nobody

    started = time.monotonic()
    study = create_study(storage=path, sampler=make_sampler("random", seed=0), exclusive=True, **kw)
    study.tell(study.ask(), [0.6, 2.0])
    assert time.monotonic() - started < 10  # no wait for Optuna's 30 s grace period
    assert not os.path.lexists(path + ".lock")
    trials = load_study(path, "s").trials  # a new reader parses every line
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.values for t in trials] == [[0.5, 3.0], [0.6, 2.0]]
