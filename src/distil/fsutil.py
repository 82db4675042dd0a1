"""Safe file writes: a reader sees the old file or the new one, never half of one; an output
location is checked before the work, and what a user put there is never silently deleted."""

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from distil.errors import OutputError


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a fsynced temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically. NaN and infinity are refused (ValueError):
    they are not JSON, and other tools cannot read a file holding them."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no way to read it but to set it: restore at once
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(path: str | os.PathLike[str],
                     keep_old_at: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved to `keep_old_at` when given, else deleted (pass it unless
    `path` holds only what this tool wrote). A `path` that is a file is refused. On an
    exception (or a kill) the temporary folder is removed or left behind under a dot-name
    that readers ignore; `path` itself is never half-written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; choose another output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~current_umask())
        yield tmp
        if path.exists() and keep_old_at is not None:
            os.replace(path, keep_old_at)
            os.replace(tmp, path)
        elif path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (made if missing) for the block, so that one
    process at a time builds a shared thing (a download, a converted model); the others wait,
    then find it built."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_writable_dir(path: str | os.PathLike[str], what: str = "output folder",
                        fix: str = "pass --out a folder you can write to") -> Path:
    """Check that files can be created in folder `path` (made if missing); OutputError if not.

    Called before a command loads models, so that a bad output location fails in a second,
    not after the work. Leaves nothing behind: folders it had to create are removed again.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder; {fix}")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        _probe(path)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise OutputError(f"cannot write to {what} {path} ({reason}); {fix}") from None
    finally:
        for created in missing:  # innermost first
            _remove_empty(created)
    return path


def ensure_writable_file(path: str | os.PathLike[str], what: str = "output file",
                         fix: str = "pass a file path in a folder you can write to") -> Path:
    """Check that file `path` can be written (its folder writable, itself not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file; {fix}")
    ensure_writable_dir(path.parent, f"folder of the {what}", fix)
    return path


def _probe(path: Path, attempts: int = 5) -> None:
    """Create and remove a file in `path`, making the folder first. Another process checking
    the same new folder (the ranks of one launch) may remove it between the two steps: then
    the folder is made again."""
    for attempt in range(attempts):
        path.mkdir(parents=True, exist_ok=True)
        try:
            fd, probe = tempfile.mkstemp(dir=path, prefix=".distil-write-check.")
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            continue
        os.close(fd)
        os.unlink(probe)
        return


def _remove_empty(folder: Path) -> None:
    with suppress(OSError):  # not empty, or not ours to remove
        folder.rmdir()


def aside_path(path: Path) -> Path:
    """A free name beside `path` to move it to: NAME.old, NAME.old-2, ..."""
    return free_name(path.with_name(f"{path.name}.old"))


def free_name(path: Path) -> Path:
    """`path`, or the first of PATH-2, PATH-3, ... that does not exist yet."""
    target, number = path, 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}-{number}")
    return target


def move_aside(folder: Path, names: tuple[str, ...], label: str) -> Path | None:
    """Move the named files or folders inside `folder` into folder/previous/LABEL-<UTC time>/
    (never deleting what a run made); that folder, or None when none of them exists."""
    present = [name for name in names if (folder / name).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = free_name(folder / "previous" / f"{label}-{stamp}")
    target.mkdir(parents=True)
    for name in present:
        (folder / name).rename(target / name)
    return target
