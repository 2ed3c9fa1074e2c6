"""A progress bar on stderr (rich) that disappears when done, or nothing at all when disabled."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["track"]

T = TypeVar("T")


def track(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Yield ``items`` while a transient progress bar counts them (when ``enabled``)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:  # a transient bar leaves only a blank line in a log
        yield from items
        return
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(escape(description), total=total)  # a file name may hold "[/x]"
        for item in items:
            yield item
            progress.advance(task)
