"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt in whatever Python code runs next after SIGINT, and when that
code is a finalizer (a `__del__`, a weakref callback: torch runs many during training) the
exception is printed as "Exception ignored" and dropped, and the command runs on as if the
key had not been pressed. The CLI installs `on_sigint`, which also remembers the request, and
every progress bar update calls `check`, so a dropped interrupt is raised again at the next
step of the long stage it hit.

    install()   # the CLI, once
    check()     # raises KeyboardInterrupt if Ctrl-C was pressed; else nothing
"""

import signal
from types import FrameType

_requested = False


def install() -> None:
    """Handle SIGINT with `on_sigint` (from the main thread)."""
    signal.signal(signal.SIGINT, on_sigint)


def on_sigint(signum: int, frame: FrameType | None) -> None:
    """Remember the request, then interrupt as Python's own handler does."""
    global _requested
    _requested = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed and has not stopped the command yet."""
    if _requested:
        raise KeyboardInterrupt
