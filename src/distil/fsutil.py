"""Safe file writes: a reader sees the old file or the new one, never half of one; an output
location is checked before the work, and what a user put there is never silently deleted.

A write that fills the disk (or the user's quota) is undone and raised as one DiskFullError
naming the folder, by every writer here (`space_checked` for the others), so a full disk
leaves no half-written output behind and says so in one line.
"""

import errno
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from distil.errors import DiskFullError, OutputError

SPACE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
"""The errors of a write that found no room, and how the one-line message names them."""

LOW_SPACE = 64 * 1024
"""Free bytes under which a write that failed without an errno (torch's zip writer says only
"unexpected pos") is taken to have filled the disk."""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a fsynced temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    with space_checked(path.parent, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with space_checked(path.parent, path.name, undo=lambda: Path(tmp).unlink(missing_ok=True)):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append `text` (UTF-8) to the file `path` whole or not at all (append_whole)."""
    path = Path(path)
    with space_checked(path.parent, path.name):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        append_whole(fd, text.encode("utf-8"), path)
    finally:
        os.close(fd)


def append_whole(fd: int, data: bytes, path: Path, sync: bool = False) -> None:
    """Append `data` to `path`, open for appending as `fd`, whole or not at all: what a full
    disk let through of it is cut off again, so a log never ends in half a line. `sync`:
    fsync before returning."""
    start = os.fstat(fd).st_size
    with space_checked(path.parent, path.name, undo=lambda: os.ftruncate(fd, start)):
        rest = memoryview(data)
        while rest:
            rest = rest[os.write(fd, rest) :]
        if sync:
            os.fsync(fd)


@contextmanager
def space_checked(
    folder: str | os.PathLike[str], what: str, undo: Callable[[], object] = lambda: None
) -> Iterator[None]:
    """Run a write of `what` into `folder`. When it fails, `undo` what it left; a failure
    for want of room (judged before `undo` frees it) becomes one DiskFullError."""
    try:
        yield
    except BaseException as err:
        full = err if isinstance(err, DiskFullError) else _disk_full(err, Path(folder), what)
        undo()
        if full is None or full is err:
            raise
        raise full from err


def _disk_full(err: BaseException, folder: Path, what: str) -> DiskFullError | None:
    """The DiskFullError for `err` when writing `what` into `folder` failed for want of room:
    ENOSPC or EDQUOT anywhere in its chain (by number or in its text: safetensors gives
    only text), or a RuntimeError (torch.save) with the disk all but full; else None."""
    code = _space_errno(err)
    if code is None and isinstance(err, RuntimeError) and _free_bytes(folder) < LOW_SPACE:
        code = errno.ENOSPC
    if code is None:
        return None
    return DiskFullError(
        f"{SPACE_ERRORS[code]} in {folder} (writing {what}); free space on "
        "that disk and rerun the same command (with --resume for train): "
        "the unfinished write was removed, finished work is kept"
    )


def _space_errno(err: BaseException) -> int | None:
    seen: BaseException | None = err
    for _ in range(8):  # the chain of causes, a few deep
        if not isinstance(seen, Exception):
            return None
        if isinstance(seen, OSError) and seen.errno in SPACE_ERRORS:
            return seen.errno
        found = [code for code in SPACE_ERRORS if os.strerror(code) in str(seen)]
        if found:
            return found[0]
        seen = seen.__cause__ or seen.__context__
    return None


def _free_bytes(folder: Path) -> int:
    try:
        usage = os.statvfs(folder)
    except OSError:
        return LOW_SPACE
    return usage.f_bavail * usage.f_frsize


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
def atomic_directory(
    path: str | os.PathLike[str], keep_old_at: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved to `keep_old_at` when given, else deleted (pass it unless
    `path` holds only what this tool wrote). A `path` that is a file is refused. On an
    exception (or a kill) the temporary folder is removed or left behind under a dot-name
    that readers ignore; `path` itself is never half-written. Its files get at least the
    mode a new file gets (follow_umask).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; choose another output folder")
    tmp = staging_dir(path)
    with space_checked(path.parent, f"{path.name}/", undo=lambda: shutil.rmtree(tmp, ignore_errors=True)):
        yield tmp
        follow_umask(tmp)
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


def staging_dir(path: Path) -> Path:
    """A new empty folder beside `path` to write it in, under a dot-name that readers
    ignore, with the mode any new folder gets (0777 less the umask), not mkdtemp's 0700."""
    with space_checked(path.parent, f"{path.name}/"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def follow_umask(folder: Path) -> None:
    """Give every file under `folder` at least the mode a new file gets (0666 less the
    umask): safetensors writes its files 0600 whatever the umask (safetensors#782)."""
    mode = 0o666 & ~current_umask()
    for file in folder.rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod(stat.S_IMODE(file.stat().st_mode) | mode)


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


def ensure_writable_dir(
    path: str | os.PathLike[str],
    what: str = "output folder",
    fix: str = "pass --out a folder you can write to",
) -> Path:
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


def ensure_writable_file(
    path: str | os.PathLike[str],
    what: str = "output file",
    fix: str = "pass a file path in a folder you can write to",
) -> Path:
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
