"""One writer per run folder: a command that writes RUN holds RUN/.distil.lock while it runs.

    with hold_run_folder(recipe.run_dir, "distil train"):
        ...                                  # a second command on RUN fails at once, exit 2

The lock is an advisory `flock` on that file, so the kernel releases it when the holder dies,
even by SIGKILL: no stale lock outlives its process. The file names the holder (pid and
command) for the refusal message, and is removed when the holder is done. Processes started
by a holder (the training processes of `--num-processes N`) inherit the environment variable
`DISTIL_RUN_LOCK`, the folder their launcher holds, and do not lock it again; the processes
of a bare `accelerate launch -m distil.cli ...` lock it from their main process only.
"""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from distil.errors import OutputError

LOCK_NAME = ".distil.lock"
HELD_ENV = "DISTIL_RUN_LOCK"
"""Set by a holder for the processes it starts: the resolved run folder it holds."""


@contextmanager
def hold_run_folder(run_dir: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold RUN's lock for the block; OutputError naming the holder when another process has it.

    Without fcntl (not a POSIX system) nothing is locked.
    """
    folder = Path(run_dir).resolve()
    if os.environ.get(HELD_ENV) == str(folder) or not _main_process() or not _has_flock():
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = _acquire(folder / LOCK_NAME, command)
    previous = os.environ.get(HELD_ENV)
    os.environ[HELD_ENV] = str(folder)
    try:
        yield
    finally:
        _restore_env(previous)
        _release(folder / LOCK_NAME, fd)
        if created:
            with suppress(OSError):  # only when the command left nothing in it
                folder.rmdir()


def _acquire(path: Path, command: str) -> int:
    """Lock `path` (created if missing) and write the holder into it; its descriptor."""
    import fcntl

    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            os.close(fd)
            raise OutputError(
                f"{path.parent} is in use by another distil process ({holder}); "
                "wait for it to end or stop it, or pass --out DIR to use another "
                "run folder"
            ) from None
        if _same_file(fd, path):  # not a file the previous holder removed meanwhile
            os.ftruncate(fd, 0)
            os.write(
                fd,
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "command": command,
                        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    }
                ).encode(),
            )
            return fd
        os.close(fd)
    raise OutputError(
        f"could not lock {path}: it keeps being replaced; is another distil "
        "process starting on the same run folder?"
    )


def _release(path: Path, fd: int) -> None:
    with suppress(OSError):
        if _same_file(fd, path):
            path.unlink()  # while still locked: a waiting process then makes a new file
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(path: Path) -> str:
    """`pid N: COMMAND since TIME`, or what is known of it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}: `{info['command']}` since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _main_process() -> bool:
    """False in the non-main processes of a distributed launch (they rely on rank 0's lock)."""
    return os.environ.get("RANK", "0") == "0"


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(HELD_ENV, None)
    else:
        os.environ[HELD_ENV] = previous
