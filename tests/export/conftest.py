"""A run folder whose tiny student was exported once per session, through the CLI."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROMPTS = ["Reverse the word: cat", "Reverse the word: export", "hello", "x y z, 1 2 3!"]


def distil(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distil.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def exported_run_dir(tmp_path_factory: pytest.TempPathFactory, student: Path) -> Path:
    """runs/NAME with student/ and recipe.yaml, exported by `distil export RUN` (built once)."""
    run = tmp_path_factory.getbasetemp() / "exported-run"
    if (run / "export" / "parity.json").is_file():
        return run
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(student, run / "student")
    (run / "recipe.yaml").write_text("seed: 0\nteacher:\n  model: tiny-teacher\n")
    result = distil("export", str(run), "--prompts-per-task", "6")
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, tiny_models) -> Path:
    return exported_run_dir(tmp_path_factory, tiny_models["tiny-student"])


@pytest.fixture(scope="session")
def student(tiny_models):
    from distil.models import load_model

    return load_model(str(tiny_models["tiny-student"]), "student", dtype="float32")
