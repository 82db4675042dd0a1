"""Printing wide tables (parity, efficiency) so that they stay readable in logs too."""

from typing import Any


def print_table(table: Any, width: int = 150) -> None:
    """Print on the shared console; when stderr is not a terminal, at `width` columns.

    Rich squeezes tables to 80 columns when it cannot see a terminal (CI logs, pipes), which
    wraps every header of a ten-column table.
    """
    from rich.console import Console

    from distil.progress import console

    target = console if console.is_terminal else Console(stderr=True, width=width)
    target.print(table)
