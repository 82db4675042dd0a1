"""Output locations: written files get the usual permissions, JSON stays JSON, a bad output
folder fails before any work, and what a user put at an output path is never deleted."""

import json
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


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoints_and_the_student_follow_the_umask(tmp_path, dataset, umask):
    """Checkpoint folders were made 0700 (mkdtemp) and safetensors files 0600 whatever the
    umask; every folder and file training writes gets the umask's mode now."""
    from distil.recipe import validate_recipe
    from distil.train import train
    from tests.conftest import recipe_dict

    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={"max_steps": 2, "save_every": 2}))
    old = os.umask(umask)
    try:
        train(recipe)
    finally:
        os.umask(old)
    written = [recipe.run_dir / "checkpoints", recipe.run_dir / "student"]
    written += [p for folder in written for p in folder.rglob("*")]
    modes = {str(p.relative_to(recipe.run_dir)): _mode(p) for p in written}
    assert "checkpoints/step-000002/accelerate/model.safetensors" in modes
    assert "student/model.safetensors" in modes
    wanted = {str(p.relative_to(recipe.run_dir)): (0o777 if p.is_dir() else 0o666) & ~umask for p in written}
    assert modes == wanted


def test_the_synthesised_parquet_follows_the_umask(tmp_path, umask_027):
    import pyarrow.parquet as pq

    from distil.synth.output import write_train

    write_train(tmp_path / "train.parquet", [], with_logprobs=False)  # mkstemp alone gave 0600
    assert _mode(tmp_path / "train.parquet") == 0o640
    assert pq.read_table(tmp_path / "train.parquet").num_rows == 0
    assert [p.name for p in tmp_path.iterdir()] == ["train.parquet"]  # no temporary file left


def test_a_new_folder_removed_by_another_process_mid_check_is_made_again(tmp_path, monkeypatch):
    """Two ranks of one launch check the same new --out folder: one removes it (it made it,
    it is empty) between the other's mkdir and its probe file. That is no error."""
    import tempfile

    real, calls = tempfile.mkstemp, []

    def racing(*args, **kwargs):
        calls.append(kwargs["dir"])
        if len(calls) == 1:
            os.rmdir(kwargs["dir"])  # the other process's clean-up
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", racing)
    ensure_writable_dir(tmp_path / "run")
    assert len(calls) == 2 and not (tmp_path / "run").exists()  # checked, and left as it was


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


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="permission bits do not bind root")
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


# --- the commands: a bad output location fails first, in one line -------------------------


def _recipe_file(tmp_path, dataset, **sections) -> str:
    import yaml

    from tests.conftest import recipe_dict

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, dataset, **sections)))
    return str(path)


def _no_model_loads(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    import distil.loading  # imported before the patch, so that it binds the real load_model
    import distil.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output folder was checked")

    monkeypatch.setattr(distil.models, "load_model", refuse)
    monkeypatch.setattr(distil.loading, "load_model", refuse)


COMMANDS = {
    "train": ["train", "{recipe}"],
    "eval": ["eval", "{recipe}", "--student", "recipe"],
    "capture": ["capture", "{recipe}"],
    "run": ["run", "{recipe}"],
    "synth": ["synth", "{recipe}", "synth.prompts.tasks=[reverse]"],
}


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_out_fails_before_any_model_loads(tmp_path, dataset, monkeypatch, capsys, command, where):
    from tests.cli_helpers import assert_one_error_line, run_cli

    _no_model_loads(monkeypatch)
    (tmp_path / "taken").write_text("mine")
    out = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "run"
    args = [a.format(recipe=_recipe_file(tmp_path, dataset)) for a in COMMANDS[command]]
    result = run_cli(monkeypatch, capsys, *args, "--out", str(out))
    line = assert_one_error_line(result, str(out))
    assert "pass --out a folder you can write to" in line
    assert (tmp_path / "taken").read_text() == "mine"


def test_eval_output_that_is_a_folder_fails_before_any_model_loads(tmp_path, dataset, monkeypatch, capsys):
    from tests.cli_helpers import assert_one_error_line, run_cli

    _no_model_loads(monkeypatch)
    result = run_cli(
        monkeypatch,
        capsys,
        "eval",
        _recipe_file(tmp_path, dataset),
        "--student",
        "recipe",
        "--output",
        str(tmp_path),
    )
    assert_one_error_line(result, "is a folder, not a file; pass --output a file path")


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not bind root")
def test_train_into_a_read_only_folder_fails_first(tmp_path, dataset, monkeypatch, capsys):
    from tests.cli_helpers import assert_one_error_line, run_cli

    _no_model_loads(monkeypatch)
    (tmp_path / "locked").mkdir(mode=0o500)
    try:
        result = run_cli(
            monkeypatch,
            capsys,
            "train",
            _recipe_file(tmp_path, dataset),
            "--out",
            str(tmp_path / "locked" / "run"),
        )
        assert_one_error_line(result, "Permission denied")
    finally:
        (tmp_path / "locked").chmod(0o700)


# --- distil export: never destroys what --out held; the run's recipe gives the defaults ----


def test_export_refuses_a_folder_of_other_files_and_a_file(tiny_models, tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import assert_one_error_line, run_cli

    _no_model_loads(monkeypatch)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    result = run_cli(
        monkeypatch, capsys, "export", str(tiny_models["tiny-student"]), "--out", str(tmp_path / "mine")
    )
    assert_one_error_line(result, "already holds files that are not an export")
    assert "--overwrite" in result.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]
    (tmp_path / "notes.txt").write_text("keep")
    result = run_cli(
        monkeypatch, capsys, "export", str(tiny_models["tiny-student"]), "--out", str(tmp_path / "notes.txt")
    )
    assert_one_error_line(result, "notes.txt is a file")
    assert (tmp_path / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]


def test_export_overwrite_moves_the_old_folder_aside(tiny_models, tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import run_cli

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    result = run_cli(
        monkeypatch,
        capsys,
        "export",
        str(tiny_models["tiny-student"]),
        "--out",
        str(tmp_path / "mine"),
        "--overwrite",
        "--format",
        "hf",
        "--prompts-per-task",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mine.old" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "mine" / "parity.json").is_file()
    again = run_cli(
        monkeypatch,
        capsys,
        "export",
        str(tiny_models["tiny-student"]),
        "--out",
        str(tmp_path / "mine"),
        "--format",
        "hf",
        "--prompts-per-task",
        "1",
    )
    assert again.returncode == 0, again.stderr  # an earlier export is replaced without a flag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mine.old"]


def _run_with_recipe(tmp_path, recipe_text: str):
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "student" / "config.json").write_text("{}")
    (run / "recipe.yaml").write_text(recipe_text)
    return run


@pytest.mark.parametrize(
    "options,expected",
    [
        ([], {"prompts_per_task": 3, "formats": ["hf"], "dtype": "bfloat16", "seed": 7}),
        (
            ["--prompts-per-task", "5", "--dtype", "fp16"],
            {"prompts_per_task": 5, "formats": ["hf"], "dtype": "float16", "seed": 7},
        ),
    ],
)
def test_export_takes_its_defaults_from_the_run_recipe(tmp_path, monkeypatch, capsys, options, expected):
    from distil.export import stage
    from tests.cli_helpers import run_cli

    run = _run_with_recipe(
        tmp_path, "seed: 7\nexport:\n  prompts_per_task: 3\n  formats: [hf]\n  dtype: bfloat16\n  seed: 0\n"
    )
    seen = {}

    def record(source, config, out=None, overwrite=False):
        seen.update(config.model_dump())
        return stage.ExportResult(tmp_path / "x", {}, {"passed": True})

    monkeypatch.setattr(stage, "export_run", record)
    result = run_cli(monkeypatch, capsys, "export", str(run), *options)
    assert result.returncode == 0, result.stderr
    assert {key: seen[key] for key in expected} == expected


def test_export_without_a_recipe_section_keeps_the_defaults(tmp_path, monkeypatch, capsys):
    from distil.export import stage
    from tests.cli_helpers import run_cli

    run = _run_with_recipe(tmp_path, "seed: 7\nexport: null\n")
    seen = {}
    monkeypatch.setattr(
        stage,
        "export_run",
        lambda source, config, **kw: (
            seen.update(config.model_dump()) or stage.ExportResult(tmp_path / "x", {}, {"passed": True})
        ),
    )
    assert run_cli(monkeypatch, capsys, "export", str(run)).returncode == 0
    assert seen["prompts_per_task"] == 25 and seen["formats"] == ["hf", "onnx", "onnx-int8", "gguf"]


# --- training's outputs: strict JSON on a resumed finished run; Ctrl-C says how to go on --


def _strict_json(text: str):
    import json

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_resuming_a_finished_run_writes_the_last_logged_loss(tmp_path, dataset):
    from distil.recipe import validate_recipe
    from distil.train import train
    from tests.conftest import recipe_dict

    recipe = validate_recipe(
        recipe_dict(
            tmp_path, dataset, train={"max_steps": 2, "batch_size": 4, "log_every": 1, "save_every": 2}
        )
    )
    first = train(recipe)
    logged = _strict_json((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[-1])
    again = train(recipe, resume=True)
    summary = _strict_json((tmp_path / "run" / "train_summary.json").read_text())
    assert again.steps == first.steps == 2
    assert summary["final_loss"] == again.final_loss == logged["loss"]


SWALLOWED_CTRL_C = """
import os, signal, sys, time
from distil.cli import main

class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))  # Python runs: the KeyboardInterrupt is raised here, and dropped

def command():
    from distil.progress import progress_bar
    with progress_bar() as bar:
        task = bar.add_task("work", total=None)
        Finalizer()  # freed at once: its __del__ runs
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            bar.update(task, advance=1)
    sys.exit(3)  # ran on: Ctrl-C was lost

import distil.cli
distil.cli.app = command
main()
"""


def test_ctrl_c_lost_in_a_finalizer_still_stops_the_command():
    # Python drops a KeyboardInterrupt raised inside __del__ ("Exception ignored"); torch runs
    # finalizers all through training, so a Ctrl-C there once let `distil train` run on
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", SWALLOWED_CTRL_C], capture_output=True, text=True, timeout=120
    )
    assert "Exception ignored" in done.stderr  # the interrupt was indeed dropped once
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr


def test_the_cli_leaves_the_sigint_handler_and_no_request_behind():
    # commands run in one process in turn (the in-process CLI tests): each starts clean
    import signal

    from distil import interrupt

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupt.handled():
        assert signal.getsignal(signal.SIGINT) is interrupt.on_sigint
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    interrupt.check()  # the request was forgotten: nothing raised


def test_ctrl_c_exits_130_and_says_how_to_continue(tmp_path, dataset):
    import signal
    import subprocess
    import time

    recipe = _recipe_file(
        tmp_path, dataset, train={"max_steps": 100000, "log_every": 1, "save_every": 100000}
    )
    log = tmp_path / "run" / "train_log.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "distil.cli", "train", recipe],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (log.is_file() and log.read_text().strip()) and process.poll() is None:
            assert time.monotonic() < deadline, "training logged no step"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "rerun the same command (with --resume for train)" in lines[0]


# --- a second export never deletes what the user added to the first one -------------------


def _export_hf(monkeypatch, capsys, model, out, *extra):
    from tests.cli_helpers import run_cli

    return run_cli(
        monkeypatch,
        capsys,
        "export",
        str(model),
        "--out",
        str(out),
        "--format",
        "hf",
        "--prompts-per-task",
        "1",
        *extra,
    )


def test_reexport_keeps_files_the_user_added_to_an_earlier_export(tiny_models, tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import assert_one_error_line

    out = tmp_path / "E"
    first = _export_hf(monkeypatch, capsys, tiny_models["tiny-student"], out)
    assert first.returncode == 0, first.stderr
    written = json.loads((out / "parity.json").read_text())["files"]
    assert sorted(p.name for p in out.iterdir()) == written
    (out / "MY_NOTES.md").write_text("notes")
    (out / "mydir").mkdir()
    again = _export_hf(monkeypatch, capsys, tiny_models["tiny-student"], out)
    line = assert_one_error_line(again, "also holds files the export did not write")
    assert "MY_NOTES.md, mydir" in line and "--overwrite" in line
    assert (out / "MY_NOTES.md").read_text() == "notes" and (out / "mydir").is_dir()
    moved = _export_hf(monkeypatch, capsys, tiny_models["tiny-student"], out, "--overwrite")
    assert moved.returncode == 0, moved.stderr
    assert (tmp_path / "E.old" / "MY_NOTES.md").read_text() == "notes"
    assert (tmp_path / "E.old" / "mydir").is_dir()
    assert not (out / "MY_NOTES.md").exists()


def test_an_export_written_before_the_file_list_is_still_told_from_user_files(tmp_path):
    from distil.errors import OutputError
    from distil.export.stage import check_export_target

    out = tmp_path / "E"
    (out / "hf-float16").mkdir(parents=True)
    (out / "onnx-int8").mkdir()
    (out / "gguf-q8_0").mkdir()
    (out / "parity.json").write_text('{"passed": true}')
    assert check_export_target(out) is None  # only what an export writes: replaced
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match=r"did not write \(thesis.tex\)"):
        check_export_target(out)
    assert check_export_target(out, overwrite=True) == tmp_path / "E.old"


def _make_unwritable(folder) -> bool:
    """Make `folder` unwritable for this process; False when this machine cannot."""
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o500)
        return True
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    return done.returncode == 0


def _make_writable(folder) -> None:
    import subprocess

    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o700)


def test_export_into_an_unwritable_earlier_export_fails_before_any_work(
    tiny_models, tmp_path, monkeypatch, capsys
):
    from tests.cli_helpers import assert_one_error_line, run_cli

    out = tmp_path / "immutable"
    out.mkdir()
    (out / "parity.json").write_text('{"passed": true, "files": ["parity.json"]}')
    if not _make_unwritable(out):
        pytest.skip("cannot make a folder unwritable here (no chattr)")
    try:
        _no_model_loads(monkeypatch)
        result = run_cli(
            monkeypatch,
            capsys,
            "export",
            str(tiny_models["tiny-student"]),
            "--out",
            str(out),
            "--format",
            "hf",
        )
        assert_one_error_line(result, f"cannot write to export folder {out}")
    finally:
        _make_writable(out)
