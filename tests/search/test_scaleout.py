"""Scale-out and fault tolerance of the search: many workers on one study, SIGKILL and resume, failing trials.

The PostgreSQL test needs a server: ``COMPRESS_TEST_POSTGRES_URL=postgresql://USER:PASS@HOST:PORT/DB``
(``.ci/run`` installs Debian's PostgreSQL, starts it on loopback and exports the variable).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pandas as pd
import pytest

from search import load_space, run_search
from search.storage import create_study, fail_dead_trials
from search.study import make_sampler

ROOT = Path(__file__).resolve().parents[2]
PROC = Path(__file__).with_name("search_proc.py")
POSTGRES_URL = os.environ.get("COMPRESS_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def base(tiny_search_config, tiny_run):
    """The tiny search config with finalize off; ``_fresh`` copies the tiny run's supernet (same hash)."""
    return dataclasses.replace(tiny_search_config, finalize=False)


def _fresh(base, out: Path, **changes):
    """``base`` writing to ``out``, with its supernet copied there (reused: same config hash)."""
    out.mkdir(parents=True)
    shutil.copy(base.run_dir / "supernet.safetensors", out / "supernet.safetensors")  # the session's tiny run
    return dataclasses.replace(base, out=out, **changes)


def _start(cfg, tmp: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    path = tmp / f"{uuid.uuid4().hex}.pkl"
    path.write_bytes(pickle.dumps(cfg))
    return subprocess.Popen(
        [sys.executable, str(PROC), str(path)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]


def _trials_now(cfg) -> list:
    """The study's trials as a new reader sees them now (empty while the study does not exist yet)."""
    from search.storage import load_study

    try:
        return load_study(cfg.storage_url, cfg.name).get_trials(deepcopy=False)
    except KeyError:  # no study yet
        return []


def _states(cfg) -> dict[int, str]:
    """Trial number -> state."""
    return {t.number: t.state.name for t in _trials_now(cfg)}


def _running_recorded(cfg) -> bool:
    """Whether the RUNNING trial has recorded its worker's pid (a kill before that is another case)."""
    return any(t.state.name == "RUNNING" and "pid" in t.user_attrs for t in _trials_now(cfg))


def _load(url: str, name: str):
    from search.storage import load_study

    return load_study(url, name)


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_keeps_finished_trials(base, tmp_path):
    cfg = _fresh(base, tmp_path / "run", trials=2)
    assert cfg.storage_url.endswith("study.journal")
    # Every trial sleeps 2 s while scoring, so the second trial is surely running when we look.
    proc = _start(cfg, tmp_path, env={"SEARCH_PROC_TRIAL_DELAY": "2"})
    deadline = time.time() + 180
    states: dict[int, str] = {}
    while time.time() < deadline and proc.poll() is None:
        states = _states(cfg)
        if "COMPLETE" in states.values() and "RUNNING" in states.values() and _running_recorded(cfg):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert "RUNNING" in states.values(), states
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed = [n for n, s in _states(cfg).items() if s == "RUNNING"]
    assert len(killed) == 1
    before = {
        t.number: t.values for t in _load(cfg.storage_url, cfg.name).trials if t.state.name == "COMPLETE"
    }
    assert before

    _finish(_start(cfg, tmp_path))  # the same command again

    trials = _load(cfg.storage_url, cfg.name).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = {t.number: t for t in trials if t.state.name == "COMPLETE"}
    assert len(complete) == 2
    for number, values in before.items():  # kept, counted once, not recomputed
        assert complete[number].values == values
    dead = trials[killed[0]]
    assert dead.state.name == "FAIL" and killed[0] not in complete
    assert f"worker process {proc.pid} died during the trial" in dead.user_attrs["fail_reason"]
    table = pd.read_csv(cfg.run_dir / "trials.csv")
    assert sorted(table["trial"]) == sorted(complete)


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_study_goes_on(base, tmp_path, monkeypatch):
    from search.scorer import Scorer

    score, calls = Scorer.score, []

    def flaky(self, candidate, **kw):
        calls.append(candidate)
        if len(calls) == 1:
            raise RuntimeError("Core ML export failed:\nunsupported op")
        if len(calls) == 3:
            raise MemoryError("out of memory")
        return score(self, candidate, **kw)

    monkeypatch.setattr(Scorer, "score", flaky)
    cfg = _fresh(base, tmp_path / "run", trials=2)
    result = run_search(cfg, progress=False)
    trials = _load(cfg.storage_url, cfg.name).trials
    states = [t.state.name for t in trials]
    assert states == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"], states
    reasons = [t.user_attrs["fail_reason"] for t in trials if t.state.name == "FAIL"]
    assert reasons == ["RuntimeError: Core ML export failed: unsupported op", "MemoryError: out of memory"]
    assert sorted(result.trials["trial"]) == [1, 3]


@pytest.mark.slow
def test_local_workers_share_one_study(base, tmp_path, monkeypatch):
    from search.scorer import Scorer

    cfg = _fresh(base, tmp_path / "run", trials=4, workers=2)
    assert cfg.storage_url.endswith("study.journal")  # Optuna's storage for several local processes
    score = Scorer.score

    def after_the_worker_started(self, candidate, **kw):  # this process only, not the spawned worker
        deadline = time.time() + 120
        while time.time() < deadline and not _other_pids(cfg):
            time.sleep(0.2)
        return score(self, candidate, **kw)

    monkeypatch.setattr(Scorer, "score", after_the_worker_started)
    result = run_search(cfg, progress=False)
    trials = _load(cfg.storage_url, cfg.name).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len({t.number for t in trials}) == len(trials)
    pids = {t.user_attrs["pid"] for t in complete}
    assert os.getpid() in pids and len(pids) == 2, pids
    assert sorted(result.trials["trial"]) == sorted(t.number for t in complete)
    assert result.trials["trial"].is_unique and not (cfg.run_dir / "study.db").exists()


def _other_pids(cfg) -> set[int]:
    """Pids of other processes that have started a trial in the study."""
    return {t.user_attrs["pid"] for t in _trials_now(cfg) if "pid" in t.user_attrs} - {os.getpid()}


@pytest.mark.slow
def test_run_made_before_the_journal_resumes_on_its_sqlite(base, tmp_path):
    cfg = _fresh(base, tmp_path / "run", trials=1, budget_ms=1000.0)  # any candidate is feasible
    db = f"sqlite:///{cfg.run_dir.resolve() / 'study.db'}"
    run_search(dataclasses.replace(cfg, storage=db), progress=False)  # as the release before wrote it
    before = {t.number: t.values for t in _load(db, cfg.name).trials if t.state.name == "COMPLETE"}
    assert len(before) == 1 and cfg.storage_url == db  # no --storage: the run directory's study.db

    result = run_search(dataclasses.replace(cfg, trials=2), progress=False)  # resumed without --storage

    assert not (cfg.run_dir / "study.journal").exists()
    complete = {t.number: t.values for t in _load(db, cfg.name).trials if t.state.name == "COMPLETE"}
    assert len(complete) == 2 and all(complete[n] == v for n, v in before.items())
    assert sorted(result.trials["trial"]) == sorted(complete)


def test_dead_remote_worker_fails_after_its_heartbeat_stops(base, tmp_path):
    cfg = _fresh(base, tmp_path / "run")  # an RDB storage (a journal has no heartbeat: local workers only)
    cfg = dataclasses.replace(cfg, storage=f"sqlite:///{cfg.run_dir.resolve() / 'study.db'}")
    space = load_space(cfg.space_file, num_classes=12)
    study = create_study(
        storage=cfg.storage_url,
        study_name=cfg.name,
        objectives=cfg.objectives,
        sampler=make_sampler("random", seed=0),
        config=cfg.study_config(space),
    )
    trial = study.ask()
    trial.set_user_attr("host", "elsewhere")
    trial.set_user_attr("pid", 4242)
    study._storage.record_heartbeat(trial._trial_id)
    assert fail_dead_trials(study) == []  # alive: a fresh heartbeat
    with sqlite3.connect(cfg.run_dir / "study.db") as con:  # ten minutes of silence
        con.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-600 seconds')")
    assert fail_dead_trials(study) == [trial.number]
    frozen = study.trials[trial.number]
    assert frozen.state.name == "FAIL"  # by Optuna's public fail_stale_trials (it records no reason)


def test_postgres_driver_is_a_declared_dependency():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("psycopg2-binary") for d in meta["postgres"])
    assert any(d.startswith("psycopg2-binary") for d in meta["dev"])
    from search.storage import _engine_url

    url = _engine_url("postgresql://u:p@db:5432/optuna")
    assert url.endswith("://u:p@db:5432/optuna") and url.startswith("postgresql")
    assert _engine_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def _pareto(rows: pd.DataFrame) -> set[int]:
    """Feasible trials no other feasible trial beats on quality (higher) and worst latency (lower)."""
    feas = rows[rows["feasible"]]
    out = set()
    for _, r in feas.iterrows():
        beaten = (
            (feas["quality"] >= r["quality"])
            & (feas["worst_latency_ms"] <= r["worst_latency_ms"])
            & ((feas["quality"] > r["quality"]) | (feas["worst_latency_ms"] < r["worst_latency_ms"]))
        )
        if not beaten.any():
            out.add(int(r["trial"]))
    return out


@pytest.mark.skipif(
    not POSTGRES_URL,
    reason="no PostgreSQL: set COMPRESS_TEST_POSTGRES_URL=postgresql://USER:PASS@HOST:PORT/DB (.ci/run does)",
)
def test_two_workers_on_one_postgres_study(base, tmp_path):
    k, name = 2, f"test-{uuid.uuid4().hex[:12]}"
    go = tmp_path / "go"
    procs = []
    for i in range(2):  # two "machines": own run directories, same storage and study name
        cfg = _fresh(base, tmp_path / f"worker{i}", trials=2 * k, storage=POSTGRES_URL, study_name=name)
        procs.append(_start(cfg, tmp_path, env={"SEARCH_PROC_GO": str(go), "SEARCH_PROC_TRIAL_DELAY": "1"}))
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.ready*"))) < 2 and time.time() < deadline:
        assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-2000:]
        time.sleep(0.1)
    go.touch()  # both imported: start together
    for p in procs:
        _finish(p)
    try:
        trials = _load(POSTGRES_URL, name).trials
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        complete = {t.number: t for t in trials if t.state.name == "COMPLETE"}
        assert len(complete) == 2 * k
        assert {t.user_attrs["pid"] for t in complete.values()} == {p.pid for p in procs}
        assert {t.user_attrs["host"] for t in complete.values()} == {socket.gethostname()}
        for i in range(2):
            run = tmp_path / f"worker{i}"
            table = pd.read_csv(run / "trials.csv")
            assert sorted(table["trial"]) == sorted(complete)
            front = pd.read_csv(run / "front.csv")
            assert set(front["trial"]) == _pareto(table)
    finally:
        import optuna

        from search.storage import _engine_url

        optuna.delete_study(study_name=name, storage=_engine_url(POSTGRES_URL))
