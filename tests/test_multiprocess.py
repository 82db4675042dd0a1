"""Two processes (torchrun, gloo on CPU): the logged loss is the whole step's, the weights
equal one process with the same global batch, and an interrupted run resumes exactly."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import recipe_dict

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, processes: int) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                 str(processes), "-m"] if processes > 1 else [sys.executable, "-m"])
    result = subprocess.run([*launcher, "distil.cli", "train", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "student" / "model.safetensors")


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_two_processes_log_the_whole_step_and_resume_exactly(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 8, "save_every": 4, "log_every": 1,
                                                "keep_checkpoints": 3})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    _run(["recipe.yaml", "--out", "two"], tmp_path, 2)  # 2 x 8 rows per step
    _run(["recipe.yaml", "--out", "one", "train.batch_size=16"], tmp_path, 1)
    two, one = tmp_path / "two", tmp_path / "one"
    assert {p.name for p in (two / "checkpoints" / "step-000004").glob("rng-*.pt")} == {
        "rng-0.pt", "rng-1.pt"}
    # the logged loss is the step's token mean over both processes, not one process's share
    for a, b in zip(_log(two), _log(one), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-6)
    assert json.loads((two / "train_summary.json").read_text())["tokens_seen"] == json.loads(
        (one / "train_summary.json").read_text())["tokens_seen"]
    for name, tensor in _weights(one).items():
        torch.testing.assert_close(_weights(two)[name], tensor, rtol=0, atol=1e-5)

    # a run stopped right after its first checkpoint, resumed by two processes
    stopped = tmp_path / "stopped"
    shutil.copytree(two, stopped)
    shutil.rmtree(stopped / "checkpoints" / "step-000008")
    shutil.rmtree(stopped / "student")
    (stopped / "train_summary.json").unlink()
    _run(["recipe.yaml", "--out", "stopped", "--resume"], tmp_path, 2)
    for name, tensor in _weights(two).items():
        assert torch.equal(_weights(stopped)[name], tensor), f"{name} differs after resuming"
