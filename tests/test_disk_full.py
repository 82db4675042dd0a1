"""A full disk (or quota) during training, synth and capture: one line `error: no space left
on device in FOLDER ...`, exit 2, the unfinished write removed (no partial checkpoint, student,
log line, journal line or shard left behind), and the same command continues once there is
room.

The faults are injected where the bytes go: the system call on a named file (os.write,
os.fsync), or the library writer that reports no errno (torch's zip writer: "unexpected pos";
safetensors: only text). One test fills a real tmpfs, where this process may mount one."""

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file

from distil.errors import DiskFullError
from distil.fsutil import space_checked
from distil.recipe import validate_recipe
from tests.cli_helpers import CliResult, run_cli
from tests.conftest import recipe_dict, write_jsonl

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="the faults find a file by its /proc/self/fd link"
)

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
"""What torch.save says when its file could not be written whole (no errno)."""


def _no_room(code: int = errno.ENOSPC) -> OSError:
    return OSError(code, os.strerror(code))


def _path_of(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _fail_writes(monkeypatch, fails: Callable[[str, bytes], bool]) -> None:
    """os.write of `data` into the file at `path` writes half of it, then finds no room, when
    `fails(path, data)`."""
    real = os.write

    def write(fd: int, data) -> int:
        if fails(_path_of(fd), bytes(data)):
            real(fd, bytes(data[: len(data) // 2]))
            raise _no_room()
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def _fail_fsync(monkeypatch, fails: Callable[[str], bool]) -> None:
    """os.fsync of the file at `path` reports no room (as NFS and delayed allocation do)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if fails(_path_of(fd)):
            raise _no_room()
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _recipe_file(tmp_path: Path, dataset: Path, run: Path, **train) -> str:
    raw = recipe_dict(tmp_path, dataset, output_dir=str(run))
    raw["train"].update(train)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _assert_disk_full(result: CliResult, message: str) -> None:
    """Exit 2, no traceback, and one `error:` line (the last; a progress line may precede it)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.error_lines()
    assert [line for line in lines if line.startswith("error")] == [lines[-1]], lines
    assert message in lines[-1], lines[-1]
    assert "free space on that disk and rerun" in lines[-1]


def _steps(run: Path) -> list[int]:
    text = (run / "train_log.jsonl").read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line)["step"] for line in text.splitlines()]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".distil.lock")


def _resume(monkeypatch, capsys, recipe: str, run: Path) -> None:
    monkeypatch.undo()  # room again
    result = run_cli(monkeypatch, capsys, "train", recipe, "--resume")
    assert result.returncode == 0, result.stderr
    assert _steps(run) == [2, 4, 6, 8, 10, 12]
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 12


CHECKPOINT_FAULTS = {
    "ENOSPC": (_no_room(), "no space left on device"),
    "EDQUOT": (_no_room(errno.EDQUOT), "disk quota exceeded"),
    "torch's zip writer on a full disk": (RuntimeError(TORCH_FULL), "no space left on device"),
}


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_a_checkpoint_that_fills_the_disk_is_removed_and_training_resumes(
    tmp_path, dataset, monkeypatch, capsys, fault
):
    error, message = CHECKPOINT_FAULTS[fault]
    run = tmp_path / "run"
    recipe = _recipe_file(tmp_path, dataset, run)
    save_state = Accelerator.save_state

    def save_part_of_step_8(self, output_dir=None, **kwargs):
        if "step-000008" not in str(output_dir):
            return save_state(self, output_dir, **kwargs)
        Path(output_dir).mkdir(parents=True)
        (Path(output_dir) / "optimizer.bin").write_bytes(b"\0" * 1000)  # as far as it got
        raise error

    monkeypatch.setattr(Accelerator, "save_state", save_part_of_step_8)
    if fault.startswith("torch"):
        monkeypatch.setattr("distil.fsutil._free_bytes", lambda folder: 0)
    result = run_cli(monkeypatch, capsys, "train", recipe)
    _assert_disk_full(result, f"{message} in {run / 'checkpoints'} (writing checkpoint step-000008)")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000004"]
    assert _leftovers(run) == [] and _steps(run) == [2, 4, 6, 8]
    assert not (run / "student").exists() and not (run / "train_summary.json").exists()
    _resume(monkeypatch, capsys, recipe, run)


def test_an_error_of_a_writer_with_room_to_spare_is_not_called_a_full_disk(tmp_path):
    undone = []
    with (
        pytest.raises(RuntimeError, match="unexpected pos"),
        space_checked(tmp_path, "a checkpoint", undo=lambda: undone.append(True)),
    ):
        raise RuntimeError(TORCH_FULL)
    assert undone == [True]


def test_a_student_that_fills_the_disk_is_removed_and_the_run_finishes_on_resume(
    tmp_path, dataset, monkeypatch, capsys
):
    run = tmp_path / "run"
    recipe = _recipe_file(tmp_path, dataset, run)

    def save_part(tensors, filename, metadata=None):  # safetensors: the errno only in its text
        Path(filename).write_bytes(b"\0" * 64)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", save_part)
    result = run_cli(monkeypatch, capsys, "train", recipe)
    _assert_disk_full(result, f"no space left on device in {run} (writing student/)")
    assert not (run / "student").exists() and not (run / "train_summary.json").exists()
    assert _leftovers(run) == []
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000008", "step-000012"]
    _resume(monkeypatch, capsys, recipe, run)
    assert (run / "student" / "model.safetensors").is_file()


def test_a_log_line_that_fills_the_disk_is_cut_off_whole(tmp_path, dataset, monkeypatch, capsys):
    run = tmp_path / "run"
    recipe = _recipe_file(tmp_path, dataset, run)
    _fail_writes(
        monkeypatch, lambda path, data: path.endswith("/train_log.jsonl") and data.startswith(b'{"step": 6,')
    )
    result = run_cli(monkeypatch, capsys, "train", recipe)
    _assert_disk_full(result, f"no space left on device in {run} (writing train_log.jsonl)")
    assert _steps(run) == [2, 4]  # the half of step 6's line is cut off again
    _resume(monkeypatch, capsys, recipe, run)


def test_distil_run_says_the_same_one_line(tmp_path, dataset, monkeypatch, capsys):
    run = tmp_path / "run"
    recipe = _recipe_file(tmp_path, dataset, run, max_steps=4)
    _fail_fsync(monkeypatch, lambda path: Path(path).name.startswith(".train_summary.json."))
    result = run_cli(monkeypatch, capsys, "run", recipe)
    _assert_disk_full(result, f"no space left on device in {run} (writing train_summary.json)")
    assert not (run / "train_summary.json").exists() and _leftovers(run) == []


def _synth_recipe(tmp_path: Path) -> dict:
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl",
        [{"prompt": f"Reverse the word: {word}"} for word in ("lantern", "harbour", "meadow", "pebble")],
    )
    return validate_recipe(
        {
            "name": "synth-test",
            "output_dir": str(tmp_path / "run"),
            "teacher": {"model": "tiny-teacher"},
            "student": {"model": "tiny-student"},
            "synth": {
                "prompts": {"file": str(seeds)},
                "sampling": {"max_new_tokens": 6, "temperature": 0.0},
                "filters": {"drop_truncated": False},
            },
            "data": {"eval_fraction": 0.2, "max_length": 64},
        }
    )


def test_synth_on_a_full_disk_keeps_whole_journal_lines_and_no_partial_dataset(tmp_path, monkeypatch):
    from distil.synth.stage import run_synth

    recipe = _synth_recipe(tmp_path)
    journal, data = tmp_path / "run" / "synth" / "journal.jsonl", tmp_path / "run" / "data"
    written = []

    def third_entry(path: str, line: bytes) -> bool:
        if path.endswith("/journal.jsonl") and b'"key"' in line:
            written.append(line)
        return len(written) == 3 and written[-1] == line

    _fail_writes(monkeypatch, third_entry)
    with pytest.raises(DiskFullError, match=f"in {journal.parent} \\(writing journal.jsonl\\)"):
        run_synth(recipe)
    lines = journal.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line) for line in lines)
    assert sum(b'"key"' in line for line in lines) == 2
    monkeypatch.undo()

    _fail_fsync(monkeypatch, lambda path: Path(path).name.startswith(".train.parquet."))
    with pytest.raises(DiskFullError, match=f"in {data} \\(writing train.parquet\\)"):
        run_synth(recipe)
    assert not (data / "train.parquet").exists() and _leftovers(data) == []
    monkeypatch.undo()
    assert run_synth(recipe).kept == 4


def test_capture_on_a_full_disk_leaves_whole_shards_and_resumes(tmp_path, dataset, monkeypatch):
    from distil.capture import capture, capture_dir
    from distil.signals import SignalStore

    recipe = validate_recipe(
        recipe_dict(
            tmp_path,
            dataset,
            capture={"top_k": 8, "logprob_dtype": "float32", "batch_size": 5, "shard_tokens": 300},
        )
    )
    store = capture_dir(recipe)
    _fail_fsync(monkeypatch, lambda path: Path(path).name.startswith(".shard-000001."))
    with pytest.raises(DiskFullError, match=f"in {store} \\(writing shard-000001.safetensors\\)"):
        capture(recipe)
    assert _leftovers(store) == []
    with SignalStore(store) as signals:
        partial = len(list(signals.sample_ids()))
    monkeypatch.undo()
    result = capture(recipe)
    assert 0 < partial < result.samples and result.captured == result.samples - partial


@pytest.fixture
def small_disk(tmp_path):
    """A 700 KiB tmpfs: room for one checkpoint of the test recipe, not two."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: a failed test may
    # still hold a file there until its traceback is dropped


def test_a_real_full_disk_then_room_again_ends_as_an_uninterrupted_run(
    tmp_path, dataset, small_disk, monkeypatch, capsys
):
    run = small_disk / "run"
    recipe = _recipe_file(tmp_path, dataset, run, max_steps=8)
    result = run_cli(monkeypatch, capsys, "train", recipe)
    _assert_disk_full(
        result, f"no space left on device in {run / 'checkpoints'} (writing checkpoint step-000008)"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000004"]
    assert _leftovers(run) == []
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    assert run_cli(monkeypatch, capsys, "train", recipe, "--resume").returncode == 0
    whole = tmp_path / "whole"
    assert run_cli(monkeypatch, capsys, "train", recipe, "--out", str(whole)).returncode == 0
    resumed = load_file(run / "student" / "model.safetensors")
    for name, tensor in load_file(whole / "student" / "model.safetensors").items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
