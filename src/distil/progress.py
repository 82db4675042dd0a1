"""The shared console: progress bars for every long stage (one look, ETA included), and
wide tables (parity, efficiency) that stay readable in logs too."""

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_bar(*extra_fields: str) -> Progress:
    """A progress bar showing done/total, elapsed, ETA and the named task fields."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in extra_fields]
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False)


def print_table(table: Any, width: int = 150) -> None:
    """Print on the shared console; when stderr is not a terminal, at `width` columns.

    Rich squeezes tables to 80 columns when it cannot see a terminal (CI logs, pipes), which
    wraps every header of a ten-column table.
    """
    target = console if console.is_terminal else Console(stderr=True, width=width)
    target.print(table)
