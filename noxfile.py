"""Nox sessions: ``tests``, ``lint``, ``typecheck``, ``e2e``, ``newest`` (CI calls ``nox -s NAME``; ``nox -R`` reuses envs)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def _install(session: nox.Session) -> None:
    # torch from the pinned range in pyproject.toml: pip takes the CPU build that lies on disk.
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the unit and integration tests (pytest)."""
    _install(session)
    session.run("pytest", *session.posargs, env={"OMP_NUM_THREADS": "2"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy on search/, profiles/ and reports/ (what they import from compress is read, not reported)."""
    _install(session)
    session.run("mypy", "--follow-imports=silent", "search", "profiles", "reports", *session.posargs)


@nox.session(python=PYTHON, default=False)
def e2e(session: nox.Session) -> None:
    """The README's main job at a tiny size (short training, few trials), then the report."""
    _install(session)
    run = f"{session.create_tmp()}/runs/e2e"
    small = ["--trials", "4", "--train-steps", "10", "--finetune-steps", "2", "--eval-images", "50"]
    session.run("compress", "search", "--budget", "10ms", *small, "--out", run, *session.posargs)
    session.run("compress", "report", run)


@nox.session(python=PYTHON, default=False)
def newest(session: nox.Session) -> None:
    """The tests against the newest release of every dependency inside pyproject.toml's ranges."""
    # --upgrade-strategy eager: every dependency, not only the project, moves to the newest allowed release.
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", ".[dev,postgres,parquet]")
    session.run("python", "-m", "pip", "list", "--format=freeze")  # the versions this run tested, in the log
    session.run("pytest", "-m", "not slow", *session.posargs, env={"OMP_NUM_THREADS": "2"})
