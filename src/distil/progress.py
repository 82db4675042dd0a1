"""The shared console: progress bars for every long stage (one look, ETA included), wide
tables (parity, efficiency) that stay readable in logs too, and other libraries' chatter
kept off it (`quiet_libraries`)."""

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
