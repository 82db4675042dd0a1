"""Output locations: written files get the usual permissions, JSON stays JSON, a bad output
folder fails before any work, and what a user put at an output path is never deleted."""

import math
import os
import stat
import sys

import pytest

from distil.errors import OutputError
from distil.fsutil import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    ensure_writable_dir,
    ensure_writable_file,
)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_and_folders_follow_the_umask(tmp_path, umask_027):
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_directory(tmp_path / "folder") as tmp:
        (tmp / "inside.txt").write_text("y")
    assert _mode(tmp_path / "a.txt") == 0o640
    assert _mode(tmp_path / "folder") == 0o750
    os.umask(0o022)
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    assert _mode(tmp_path / "b.json") == 0o644


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_json_writer_refuses_nan_and_leaves_nothing(tmp_path, value):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "s.json", {"final_loss": value})
    assert list(tmp_path.iterdir()) == []


def test_writable_check_leaves_no_trace(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    assert ensure_writable_dir(target) == target
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    ensure_writable_dir(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []


def test_writable_check_refuses_a_file_and_a_path_under_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(OutputError, match=r"f is a file, not a folder; pass --out"):
        ensure_writable_dir(tmp_path / "f")
    with pytest.raises(OutputError, match=r"cannot write to output folder .*f/sub \(Not a directory\)"):
        ensure_writable_dir(tmp_path / "f" / "sub")
    with pytest.raises(OutputError, match="is a folder, not a file"):
        ensure_writable_file(tmp_path)
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="permission bits do not bind root")
def test_writable_check_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            ensure_writable_dir(locked / "run")
    finally:
        locked.chmod(0o700)


def test_atomic_directory_refuses_a_file_and_can_keep_the_old_folder(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(OutputError), atomic_directory(tmp_path / "f"):
        pass
    assert (tmp_path / "f").read_text() == "mine"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep me")
    with atomic_directory(tmp_path / "d", keep_old_at=tmp_path / "d.old") as tmp:
        (tmp / "new.txt").write_text("new")
    assert (tmp_path / "d.old" / "notes.txt").read_text() == "keep me"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new.txt"]

