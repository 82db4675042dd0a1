"""One writer per run folder: a second command is refused while the first holds the folder,
and the lock dies with its holder, even killed with SIGKILL."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from distil.errors import OutputError
from distil.runlock import HELD_ENV, LOCK_NAME, hold_run_folder

HOLD = """
import sys, time
from distil.runlock import hold_run_folder
with hold_run_folder(sys.argv[1], "distil train"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def no_inherited_lock(monkeypatch):
    monkeypatch.delenv(HELD_ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)


def test_a_second_command_is_refused_until_the_holder_is_killed(tmp_path, no_inherited_lock):
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        message = rf"{run} is in use by another distil process \(pid {holder.pid}: `distil train` "
        with pytest.raises(OutputError, match=message), hold_run_folder(run, "distil train -r"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with hold_run_folder(run, "distil train --resume"):  # the kernel freed it with its holder
        assert (run / LOCK_NAME).is_file()
        assert os.environ[HELD_ENV] == str(run.resolve())
    assert not (run / LOCK_NAME).exists()
    assert HELD_ENV not in os.environ


def test_the_cli_refuses_a_held_run_folder_in_one_line(
    tmp_path, dataset, monkeypatch, capsys, no_inherited_lock
):
    import yaml

    from tests.cli_helpers import assert_one_error_line, run_cli
    from tests.conftest import recipe_dict

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(tmp_path, dataset)))
    holder = _holder(tmp_path / "run")
    try:
        for command in (["train", str(recipe)], ["run", str(recipe)], ["capture", str(recipe)]):
            result = run_cli(monkeypatch, capsys, *command)
            assert_one_error_line(result, "is in use by another distil process")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_processes_started_by_the_holder_and_other_ranks_do_not_lock_again(
    tmp_path, monkeypatch, no_inherited_lock
):
    run = tmp_path / "run"
    with hold_run_folder(run, "distil run"):
        with hold_run_folder(run, "distil train"):  # a process started by the holder
            pass
        assert (run / LOCK_NAME).is_file()
    monkeypatch.setenv("RANK", "1")
    with hold_run_folder(run, "distil train"):
        assert not (run / LOCK_NAME).exists()


def test_a_folder_made_only_for_the_lock_is_removed_again(tmp_path, no_inherited_lock):
    with hold_run_folder(tmp_path / "new" / "run", "distil train"):
        pass
    assert not (tmp_path / "new" / "run").exists()
    with hold_run_folder(tmp_path / "kept", "distil train"):
        (tmp_path / "kept" / "train_log.jsonl").write_text("")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["train_log.jsonl"]
