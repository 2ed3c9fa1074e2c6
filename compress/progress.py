"""Progress on stderr (rich): the one way every long step of the toolkit shows how far it is.

- :class:`Bar`: a bar over ``total`` steps with an optional info text (losses, the search's best so far).
  A *transient* bar (data, final training) is drawn only on a terminal and leaves nothing behind; a lasting
  one (the supernet, the search) also prints its final state once into a log when stderr is not a terminal.
- :func:`step_bar` (a transient :class:`Bar` as a context manager) and :func:`track` (an iterable counted
  by one) for the common cases.

Results go to stdout; progress never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["Bar", "step_bar", "track"]

T = TypeVar("T")


class Bar:
    """A progress bar on stderr; every method is a no-op when disabled (``-q``, or a transient bar off a
    terminal)."""

    def __init__(
        self, description: str, *, total: int, enabled: bool, done: int = 0, transient: bool = True,
        elapsed: bool = False,
    ) -> None:  # fmt: skip
        self._progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True)
        if transient and not console.is_terminal:  # a transient bar leaves blank lines in logs
            return
        clock = TimeElapsedColumn() if elapsed else TimeRemainingColumn()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            clock,
            TextColumn("{task.fields[info]}", markup=False),
            console=console,
            transient=transient,
        )
        self._progress.start()
        # a run directory or file name in the description may hold "[/x]"
        self._task = self._progress.add_task(escape(description), total=total, completed=done, info="")

    def update(self, done: int | None = None, *, advance: int = 0, info: str | None = None) -> None:
        """Set ``done`` (or advance by ``advance``) steps; ``info`` replaces the text after the bar."""
        if self._progress is None:
            return
        fields: dict[str, Any] = {} if info is None else {"info": info}
        if done is not None:
            self._progress.update(self._task, completed=done, **fields)
        else:
            self._progress.update(self._task, advance=advance, **fields)

    def set_total(self, total: int) -> None:
        """Change the bar's length (a training that fixed its step count after it began)."""
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def step_bar(description: str, *, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transient bar over ``total`` steps; yields ``advance(done)`` that sets how many are done."""
    with Bar(description, total=total, enabled=enabled) as bar:
        yield lambda done: bar.update(done)


def track(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Yield ``items`` while a transient progress bar counts them (when ``enabled``)."""
    with Bar(description, total=total, enabled=enabled) as bar:
        for i, item in enumerate(items):
            yield item
            bar.update(i + 1)
