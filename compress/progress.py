"""Progress on stderr (rich), shown only on a terminal, silent when disabled: one helper for every long step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["step_bar", "track"]

T = TypeVar("T")


def _console(enabled: bool):  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    console = Console(stderr=True)
    return console if enabled and console.is_terminal else None  # a transient bar leaves blank lines in logs


@contextmanager
def step_bar(description: str, *, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transient bar over ``total`` steps; yields ``advance(done)`` that sets how many are done."""
    console = _console(enabled)
    if console is None:
        yield lambda done: None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(escape(description), total=total)  # a file name may hold "[/x]"
        yield lambda done: progress.update(task, completed=done)


def track(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Yield ``items`` while a transient progress bar counts them (when ``enabled``)."""
    with step_bar(description, total=total, enabled=enabled) as advance:
        for i, item in enumerate(items):
            yield item
            advance(i + 1)
