"""The ``compress`` command line: a thin Typer layer over the public API.

Each command parses its options, makes one library call and prints the result. Errors the user can cause
(``CompressError``, ``profiles.ProfileError``) print as one line on stderr with exit code 2 (bad usage or
configuration) or 1 (runtime failure); ``--debug`` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
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
)


def _register() -> None:
    import importlib

    for module, attr, name in (
        ("compress.cli.train", "train_cmd", "train"),
        ("compress.cli.pretrain", "pretrain_cmd", "pretrain"),
        ("compress.cli.search", "search_cmd", "search"),
        ("compress.cli.report", "report_cmd", "report"),
        ("compress.cli.export", "export_cmd", "export"),
        ("compress.cli.profile", "app", "profile"),
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

    errors: list[type[BaseException]] = [CompressError]
    try:
        from profiles import ProfileError

        errors.append(ProfileError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``compress`` console script; returns the exit code (and exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("COMPRESS_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
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
        message = exc.format_message()
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
        message = " ".join(str(exc).split())
        print(f"compress: error: {message}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    else:
        code = 0
    if argv is None:
        sys.exit(code)
    return code
