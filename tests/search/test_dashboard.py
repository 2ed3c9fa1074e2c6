"""optuna-dashboard opens a run's study (through its WSGI app, as ``optuna-dashboard RUN/study.journal`` serves
it: the CLI opens a journal file path with ``JournalStorage(JournalFileBackend(path))``)."""

from __future__ import annotations

import json
import wsgiref.util

import pytest


def _get(app, path: str) -> tuple[str, dict]:
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ["PATH_INFO"], environ["QUERY_STRING"] = path, "after=0"
    status = {}

    def start_response(line, headers, exc_info=None):
        status["line"] = line

    body = b"".join(app(environ, start_response))
    return status["line"], json.loads(body)


def test_dashboard_shows_named_objectives_and_each_constraint_once(tiny_run, tiny_search_config):
    dashboard = pytest.importorskip("optuna_dashboard")
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = tiny_search_config.run_dir / "study.journal"
    assert tiny_search_config.storage_url == str(path.resolve())  # a new run's study: its journal file
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    # what the README's ``optuna-dashboard runs/NAME/study.journal`` does with the path (no public API for it)
    from optuna_dashboard._storage_url import guess_storage_from_url

    assert isinstance(guess_storage_from_url(str(path)), optuna.storages.JournalStorage)
    app = dashboard.wsgi(storage)
    line, studies = _get(app, "/api/studies")
    assert line.startswith("200"), line
    (summary,) = [s for s in studies["study_summaries"] if s["study_name"] == tiny_search_config.name]
    line, study = _get(app, f"/api/studies/{summary['study_id']}")
    assert line.startswith("200"), line
    assert study["objective_names"] == ["quality", "worst_latency_ms"]
    assert study["directions"] == ["maximize", "minimize"]
    done = [t for t in study["trials"] if t["state"] == "Complete"]
    assert done and all(len(t["values"]) == 2 for t in done)
    # constraints are set once per device with Trial.set_constraint, not a second time by constraints_func
    loaded = optuna.load_study(study_name=tiny_search_config.name, storage=storage)
    for t in loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert set(t.constraints) == {f"latency.{d}" for d in tiny_search_config.devices}
        assert "constraints" not in t.system_attrs
