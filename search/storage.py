"""The study's storage: by default an Optuna journal file in the run directory (``study.journal``, Optuna's
recommended storage for several processes on one machine: ``--workers N``), or the run directory's SQLite
``study.db`` for a run made before the journal (so it resumes where it stopped), or any Optuna storage URL
(PostgreSQL for many machines: the same command on each, same ``--storage`` and ``--study-name``); opening,
creating or resuming the study (a study made with other settings is refused); and failing the trials of dead
workers: a trial left RUNNING by a process that died (SIGKILL, power loss) is marked FAIL with its reason when
the study is next opened (same host: the process is gone; RDB storages also get a heartbeat, so trials of dead
remote workers fail after the grace period; Optuna's journal storage has no heartbeat, and needs none: all
its workers are local processes)."""

from __future__ import annotations

import random
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from compress.errors import ConfigError, RunError
from search.redaction import normalize_url, redact, redact_text
from search.rundir import OBJECTIVE_COLUMNS

if TYPE_CHECKING:
    import optuna

__all__ = [
    "HEARTBEAT_S",
    "STUDY_DB",
    "STUDY_JOURNAL",
    "check_storage",
    "create_study",
    "fail_dead_trials",
    "is_journal",
    "load_study",
    "local_storage",
]

HEARTBEAT_S, GRACE_S = 30, 120  # RDB storages: a trial without a heartbeat for GRACE_S fails
STUDY_JOURNAL, STUDY_DB = "study.journal", "study.db"  # in the run directory; study.db: runs made before


def local_storage(run_dir: str | Path) -> str:
    """The storage of a run without ``--storage``: the path of the run directory's journal file, or the
    ``sqlite:///`` URL of its ``study.db`` when the run was made before (so resuming it keeps its trials)."""
    run_dir = Path(run_dir).resolve()
    if (run_dir / STUDY_DB).exists():
        return f"sqlite:///{run_dir / STUDY_DB}"
    return str(run_dir / STUDY_JOURNAL)


def is_journal(url: str) -> bool:
    """Whether ``url`` is the path of an Optuna journal file (``local_storage``), not a database URL."""
    return "://" not in url and url.endswith(".journal")


def load_study(url: str, study_name: str) -> optuna.Study:
    """Open an existing study read-write without checking its settings (reports, tests, tools)."""
    import optuna

    return optuna.load_study(study_name=study_name, storage=_storage(url))


def _db_error(exc: BaseException) -> str:
    """A database error as one short line, without SQLAlchemy's help link or any password."""
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", " ".join(str(exc).split()))
    return redact_text(text).strip()[:240]


def _engine_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed (SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3;
    the ``postgres`` extra installs psycopg2)."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    raise RunError(
        f"the storage {redact(url)} needs a PostgreSQL driver: pip install 'compress-toolkit[postgres]'"
    )


def _storage(url: str) -> Any:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if is_journal(url):
        return _journal(url)
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        engine_kwargs: dict[str, Any] | None = None
        if url.startswith("postgresql"):  # fail in seconds, not minutes, when the server is unreachable
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        elif url.startswith("mysql"):
            engine_kwargs = {"pool_pre_ping": True}
        import sqlalchemy.exc

        engine_url = _engine_url(normalize_url(url))
        _sqlite_folder(engine_url)
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    engine_url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    engine_kwargs=engine_kwargs,
                )
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
                # Workers opening a fresh database at once race to create its tables: retry.
                if attempt == 4:
                    raise RunError(f"cannot open the storage {redact(url)}: {_db_error(exc)}") from None
                time.sleep(0.2 + random.random())
            except Exception as exc:
                raise RunError(f"cannot open the storage {redact(url)}: {_db_error(exc)}") from None
    return url


def _journal(path: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    except OSError as exc:
        raise RunError(f"cannot open the study journal {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a line that does not parse (the file was edited or is not a journal)
        raise RunError(
            f"cannot read the study journal {path}: {exc}; restore it or choose another --out"
        ) from None


def _repair_journal(path: str) -> None:
    """Undo what a process killed while writing the journal left: its lock (Optuna waits 30 s before it takes
    a stale one over) and a last line without its newline (the next write would run into it). Only for the
    run directory's sole process (``exclusive``): any other writer's lock or line is in use."""
    file = Path(path)
    Path(path + ".lock").unlink(missing_ok=True)  # optuna.storages.journal's lock file: PATH + ".lock"
    try:
        with open(file, "r+b") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def _sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (a fresh ``--out`` does not exist yet)."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite:"):
        return
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(
                f"cannot create the folder of the SQLite storage {database}: {exc.strerror}"
            ) from None


def check_storage(url: str) -> None:
    """Open the storage once and close it: a bad or unreachable URL fails before any slow work."""
    storage = _storage(url)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def create_study(
    *,
    storage: str,
    study_name: str,
    objectives: tuple[str, ...],
    sampler: optuna.samplers.BaseSampler,
    config: dict[str, Any],
    exclusive: bool = False,
) -> optuna.Study:
    """Create or load the study; a study made with another configuration is refused (naming the keys).

    ``exclusive``: the caller is the only process on this storage (the run directory's own journal or SQLite,
    its lock held, no worker started yet), so a RUNNING trial that never recorded its worker is dead at once,
    and a journal's stale lock and torn last line are cleared.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if exclusive and is_journal(storage):
        _repair_journal(storage)
    directions: list[Literal["maximize", "minimize"]] = [
        "maximize" if o == "quality" else "minimize" for o in objectives
    ]
    try:
        study = optuna.create_study(
            storage=_storage(storage),
            study_name=study_name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except RunError:
        raise
    except Exception as exc:
        raise RunError(
            f"cannot open the study {study_name!r} in {redact(storage)}: {_db_error(exc)}"
        ) from None
    saved = study.user_attrs.get("config")
    if saved is None:
        study.set_user_attr("config", config)
    else:
        differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        if differ:
            raise ConfigError(
                f"study {study_name!r} was created with other settings ({', '.join(differ)}); rerun with the "
                "same settings to continue it, or choose another --out / --study-name"
            )
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {study_name!r} has other objectives; choose another --study-name")
    if study.metric_names is None:  # named objectives in optuna-dashboard and study.trials_dataframe()
        study.set_metric_names([OBJECTIVE_COLUMNS[o] for o in objectives])
    fail_dead_trials(study, exclusive=exclusive)
    return study


def fail_dead_trials(study: Any, *, exclusive: bool = False) -> list[int]:
    """Mark RUNNING trials of dead workers as FAIL; return their numbers.

    Dead: a process of this machine (same host, boot and pid namespace; see ``search._workers``) that no
    longer exists, marked with its reason; or any worker whose heartbeat stopped for over ``GRACE_S``
    (RDB storages, Optuna's public ``fail_stale_trials``; a journal has no heartbeat, and only local workers); or a trial that never recorded its worker (killed
    between Optuna's ``ask`` and its first heartbeat, which no heartbeat check ever catches) once it is
    ``GRACE_S`` old, or at once when ``exclusive``.
    """
    import datetime as dt

    import optuna
    from optuna.trial import TrialState

    from search._workers import is_dead_here

    failed = []
    storage = study._storage  # no public API sets an attribute of another process's trial
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in running:
        age = (dt.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        if is_dead_here(t.user_attrs):
            pid = t.user_attrs["pid"]
            reason = (
                f"worker process {pid} died during the trial (killed or crashed); the trial was not finished"
            )
        elif "pid" not in t.user_attrs and (exclusive or age > GRACE_S):
            reason = (
                "the worker stopped before it recorded itself (killed as the trial started); not finished"
            )
        else:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker marked it first
        failed.append(t.number)
    if running:
        before = {t.number for t in running} - set(failed)
        optuna.storages.fail_stale_trials(study)
        now = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        failed += sorted(t.number for t in now if t.number in before)
    return failed
