"""The ``compress`` command line: a thin Typer layer over the public API.

Each command parses its options, makes one library call and prints the result. Errors the user can cause
(``CompressError``, ``profiles.ProfileError`` among them) print as one line on stderr with exit code 2 (bad usage or
configuration) or 1 (runtime failure); ``--debug`` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

import typer

try:  # recent typer vendors click as typer._click; older releases use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException  # type: ignore[no-redef,assignment]

__all__ = ["app", "main"]

app = typer.Typer(
    name="compress",
    help="Hardware-aware compression and architecture search for multi-task on-device vision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_QUIET = {"on": False}


def quiet() -> bool:
    """Whether ``--quiet`` was given: no progress bars and no summaries, only errors and warnings."""
    return _QUIET["on"]


def _print_version(value: bool) -> None:
    if value:
        from compress import __version__

        typer.echo(f"compress {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    quiet_: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars or summaries; errors and warnings only (on stderr)."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback instead of the one-line error (anywhere on the line)."
    ),
) -> None:
    """Hardware-aware compression and architecture search for multi-task on-device vision.

    Progress bars and warnings go to stderr; results and summaries to stdout.
    """
    _QUIET["on"] = quiet_


def _register() -> None:
    import importlib

    for module, attr, name in (
        ("compress.cli.train", "train_cmd", "train"),
        ("compress.cli.pretrain", "pretrain_cmd", "pretrain"),
        ("compress.cli.search", "search_cmd", "search"),
        ("compress.cli.report", "report_cmd", "report"),
        ("compress.cli.export", "export_cmd", "export"),
        ("compress.cli.profile", "app", "profile"),
        ("compress.cli.calibrate", "calibrate_quality_cmd", "calibrate-quality"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        if name == "profile":
            app.add_typer(mod.app, name=name)
        else:
            app.command(name)(getattr(mod, attr))


_register()


def _user_errors() -> tuple[type[BaseException], ...]:
    from compress.errors import CompressError

    return (CompressError,)  # profiles.ProfileError is one too


def _redact(message: str) -> str:
    """``message`` without storage passwords (URLs redacted, remembered passwords masked)."""
    from search.redaction import redact_text

    return redact_text(message)


def _remember_secrets(args: list[str]) -> None:
    """Note the passwords of storage URLs on the command line or in COMPRESS_STORAGE, to mask them in errors."""
    from search.redaction import redact_argv

    redact_argv([*args, os.environ.get("COMPRESS_STORAGE", "")])


def _os_error(exc: OSError) -> str:
    import errno

    where = " ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or " ".join(str(exc).split())
    hint = {
        errno.ENOSPC: "free some space or choose another --out",
        errno.EDQUOT: "free some space or choose another --out",
        errno.EACCES: "check its permissions or choose another --out",
        errno.EPERM: "check its permissions or choose another --out",
        errno.EROFS: "choose a writable --out",
        errno.ENOTDIR: "a part of the path is a file; choose another path",
    }.get(exc.errno or 0, "nothing was deleted; fix the cause and rerun the same command")
    return f"{reason}{': ' + where if where else ''} ({hint})"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Toolkit warnings (``compress.errors.DataWarning``) as one line on stderr; others as Python shows them."""
    from compress.errors import DataWarning

    if issubclass(category, DataWarning):
        print(f"compress: warning: {_redact(' '.join(str(message).split()))}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning

#: ``time.monotonic()`` at which this process started, set by :func:`main` when the process runs as the
#: ``compress`` command: ``compress search``'s time goal counts from it, so the interpreter's start and the
#: imports before the search (about 4 s of torch, coremltools and NNCF) lie inside the goal, as they lie inside
#: the wall time a user sees. None when the commands run in a longer-lived process (a test calling ``main`` with
#: arguments, an API user): the goal then counts from the search's own start.
STARTED: float | None = None


def _process_start() -> float | None:
    """``time.monotonic()`` at this process's creation (psutil, from the OS's process table); None where the
    table cannot be read."""
    import time

    try:
        import psutil

        age = time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - no readable process table: the goal counts from the search's start
        return None
    return time.monotonic() - max(0.0, age)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``compress`` console script; returns the exit code (and exits with it)."""
    global STARTED
    if argv is None:  # the console script: this process was started to run the command
        STARTED = _process_start()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("COMPRESS_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    _remember_secrets(args)
    warnings.showwarning = _show_warning
    command = typer.main.get_command(app)
    user_errors = _user_errors()
    try:
        command.main(args=args, prog_name="compress", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        print("compress: aborted", file=sys.stderr)
        code = 130
    except ClickException as exc:
        if debug:
            raise
        message = _redact(exc.format_message())
        if message:  # "no args is help" has already printed the help
            print(f"compress: error: {message}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print(
            "compress: interrupted; finished work is kept (rerun the same command to continue)",
            file=sys.stderr,
        )
        code = 130
    except user_errors as exc:
        if debug:
            raise
        message = _redact(" ".join(str(exc).split()))
        print(f"compress: error: {message}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    except OSError as exc:  # an unwritable folder, a full disk: the system's reason and the file, one line
        if debug:
            raise
        print(f"compress: error: {_redact(_os_error(exc))}", file=sys.stderr)
        code = 1
    else:
        code = 0
    if argv is None:
        sys.exit(code)
    return code
