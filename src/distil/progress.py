"""The shared console: progress bars for every long stage (one look, ETA included), and
wide tables (parity, efficiency) that stay readable in logs too."""

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from distil import interrupt

console = Console(stderr=True)


class _Progress(Progress):
    """A rich progress bar whose every update first checks for a Ctrl-C that a finalizer
    swallowed (`distil.interrupt`): each long stage updates its bar as it goes."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        interrupt.check()
        super().update(*args, **kwargs)

    def advance(self, *args: Any, **kwargs: Any) -> None:
        interrupt.check()
        super().advance(*args, **kwargs)


def progress_bar(*extra_fields: str) -> Progress:
    """A progress bar showing done/total, elapsed, ETA and the named task fields."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in extra_fields]
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return _Progress(*columns, console=console, transient=False)


def download_bar() -> Progress:
    """A progress bar in bytes: done/total, speed and ETA."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return _Progress(*columns, console=console, transient=False)


def print_table(table: Any, width: int = 150) -> None:
    """Print on the shared console; when stderr is not a terminal, at `width` columns.

    Rich squeezes tables to 80 columns when it cannot see a terminal (CI logs, pipes), which
    wraps every header of a ten-column table.
    """
    target = console if console.is_terminal else Console(stderr=True, width=width)
    target.print(table)
