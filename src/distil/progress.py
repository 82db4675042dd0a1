"""The shared console: progress bars for every long stage (one look, ETA included), wide
tables (parity, efficiency) that stay readable in logs too, and other libraries' chatter
kept off it (`quiet_libraries`).

On a terminal a stage shows a live rich bar. Elsewhere (a log file, a pipe, CI) rich draws
nothing until the stage ends, so the bar prints plain lines instead: one each time a task
passes a tenth of its total, and at least every PLAIN_EVERY_S seconds while it advances,
each with the stage, done/total, rate, elapsed time and ETA.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from distil import interrupt

console = Console(stderr=True)

PLAIN_EVERY_S = 30.0
"""Without a terminal, the longest gap between two progress lines of a task that advances."""


class _Progress(Progress):
    """A rich progress bar whose every update first checks for a Ctrl-C that a finalizer
    swallowed (`distil.interrupt`): each long stage updates its bar as it goes. Without a
    terminal it prints plain progress lines (module docstring)."""

    def __init__(self, *columns: Any, fields: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._fields = fields
        self._plain = False
        self._last_line: dict[TaskID, tuple[float, int | None, float]] = {}
        """Per task: when its last line was printed, the tenth of the total it was in, and
        how much was done."""

    def start(self) -> None:
        self._plain = not self.disable and not self.console.is_terminal
        if not self._plain:
            super().start()

    def stop(self) -> None:
        if not self._plain:
            super().stop()
            return
        for task in self.tasks:  # the last state of each, unless a line said it already
            if task.id in self._last_line and self._last_line[task.id][2] != task.completed:
                self._print_line(task)

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        interrupt.check()
        super().update(task_id, *args, **kwargs)
        self._maybe_line(task_id)

    def advance(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        interrupt.check()
        super().advance(task_id, *args, **kwargs)
        self._maybe_line(task_id)

    def _maybe_line(self, task_id: TaskID) -> None:
        """A plain line when the task entered a new tenth of its total or PLAIN_EVERY_S
        passed since its last line (it must have advanced since)."""
        if not self._plain:
            return
        task = self._tasks[task_id]
        when, tenth, done = self._last_line.get(task_id, (time.monotonic(), -1, 0.0))
        if task.completed == done:
            return
        if _tenth(task) != tenth or time.monotonic() - when >= PLAIN_EVERY_S:
            self._print_line(task)

    def _print_line(self, task: Task) -> None:
        self._last_line[task.id] = (time.monotonic(), _tenth(task), task.completed)
        self.console.print(plain_line(task, self._fields), markup=False, highlight=False, soft_wrap=True)


def _tenth(task: Task) -> int | None:
    return int(10 * task.completed / task.total) if task.total else None


def plain_line(task: Task, fields: tuple[str, ...] = ()) -> str:
    """'train: 120/1,200 (10%) · 2.1/s · elapsed 0:57 · eta 8:34 · loss 0.5312'."""
    done = f"{task.completed:,.0f}"
    if task.total:
        done += f"/{task.total:,.0f} ({100 * task.completed / task.total:.0f}%)"
    parts = [f"{task.description}: {done}"]
    speed = task.speed or (task.completed / task.elapsed if task.elapsed else None)
    if speed:
        parts.append(f"{speed:,.1f}/s" if speed >= 1 else f"{1 / speed:,.1f} s each")
    parts.append(f"elapsed {_clock(task.elapsed)}")
    if task.total and speed and task.completed < task.total:
        parts.append(f"eta {_clock((task.total - task.completed) / speed)}")
    parts += [f"{name} {task.fields[name]}" for name in fields if name in task.fields]
    return " · ".join(parts)


def _clock(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_bar(*extra_fields: str) -> Progress:
    """A progress bar showing done/total, elapsed, ETA and the named task fields."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in extra_fields]
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return _Progress(*columns, fields=extra_fields, console=console, transient=False)


def download_bar() -> Progress:
    """A progress bar in bytes: done/total, speed and ETA."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    return _Progress(*columns, console=console, transient=False)


@contextmanager
def amount_bar(description: str, total: int | None, unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A progress bar for a long read or count, in rows or `bytes`; gives `advance(amount)`,
    cheap to call per row: the bar moves in steps of a thousandth of `total` (every call
    without one)."""
    step = max(1, (total or 0) // 1000)
    done, shown = 0, 0
    with download_bar() if unit == "bytes" else progress_bar() as bar:
        task = bar.add_task(description, total=total)

        def advance(amount: int) -> None:
            nonlocal done, shown
            done += amount
            if done - shown >= step:
                bar.update(task, completed=done)
                shown = done

        yield advance
        bar.update(task, completed=done)


def print_table(table: Any, width: int = 150) -> None:
    """Print on the shared console; when stderr is not a terminal, at `width` columns.

    Rich squeezes tables to 80 columns when it cannot see a terminal (CI logs, pipes), which
    wraps every header of a ten-column table.
    """
    target = console if console.is_terminal else Console(stderr=True, width=width)
    target.print(table)


def quiet_libraries() -> None:
    """Hugging Face's own progress bars and advisory warnings off: distil's console is the one
    a user reads."""
    import os

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
