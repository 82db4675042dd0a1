"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt in whatever Python code runs next after SIGINT, and when that
code is a finalizer (a `__del__`, a weakref callback: torch runs many during training) the
exception is printed as "Exception ignored" and dropped, and the command runs on as if the
key had not been pressed. The CLI installs `on_sigint`, which also remembers the request, and
every progress bar update calls `check`, so a dropped interrupt is raised again at the next
step of the long stage it hit.

    with interrupt.handled():   # the CLI, around a command
        ...
    check()                     # raises KeyboardInterrupt if Ctrl-C was pressed; else nothing
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = False


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT handled by `on_sigint` inside the block; the previous handler back after it, and
    the request forgotten (a process that runs commands in turn, such as the tests, starts each
    one clean). Outside the main thread, where handlers cannot be set, it changes nothing."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def on_sigint(signum: int, frame: FrameType | None) -> None:
    """Remember the request, then interrupt as Python's own handler does."""
    global _requested
    _requested = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed and has not stopped the command yet."""
    if _requested:
        raise KeyboardInterrupt
