"""Two processes (`distil train --num-processes 2`: accelerate launch, gloo on CPU): the logged
loss is the whole step's, the weights equal one process with the same global batch (live
teacher and from a store), and a run killed with SIGKILL resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

from distil.capture import capture
from distil.errors import OutputError
from distil.launch import free_port
from distil.recipe import validate_recipe
from distil.runlock import hold_run_folder
from distil.train import train
from tests.conftest import recipe_dict

pytestmark = pytest.mark.slow


def _launch(args: list[str], cwd: Path) -> subprocess.Popen:
    """`distil train ARGS --num-processes 2`, docs/scale.md's command, in a process group of its
    own (as a shell starts a command)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "distil.cli", "train", *args, "--num-processes", "2"],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _run(args: list[str], cwd: Path) -> None:
    process = _launch(args, cwd)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def _one_process(raw: dict, out: Path, **changes) -> None:
    train(validate_recipe({**raw, "output_dir": str(out), **changes}))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "student" / "model.safetensors")


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _close(a: Path, b: Path) -> None:
    for name, tensor in _weights(a).items():
        torch.testing.assert_close(_weights(b)[name], tensor, rtol=0, atol=1e-5)


def test_two_processes_log_the_whole_step_and_equal_one_process(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 6, "save_every": 3, "log_every": 1})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    _run(["recipe.yaml", "--out", "two"], tmp_path)  # 2 x 8 rows per step
    two, one = tmp_path / "two", tmp_path / "one"
    _one_process(raw, one, train={**raw["train"], "batch_size": 16})
    assert {p.name for p in (two / "checkpoints" / "step-000003" / "accelerate").glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    # the logged loss is the step's token mean over both processes, not one process's share
    for a, b in zip(_log(two), _log(one), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-6)
    summary = json.loads((two / "train_summary.json").read_text())
    assert summary["tokens_seen"] == json.loads((one / "train_summary.json").read_text())["tokens_seen"]
    assert summary["fused"] and summary["engine"] == {  # what ran, as accelerate set it up
        "distributed_type": "MULTI_CPU",
        "processes": 2,
        "sharded": False,
        "device": "cpu",
        "mixed_precision": "no",
    }
    _close(one, two)


def test_a_bare_fsdp_launch_on_cpu_is_refused_by_every_process(tmp_path, dataset):
    """accelerate runs FSDP on GPUs only; on CPU it trained plain DDP (whole students, an
    unsharded checkpoint, `fused: true`) and exited 0. `distil train --accelerate-config`
    refuses before launching (tests/test_launch.py); a bare launch is refused in each process."""
    raw = recipe_dict(tmp_path, dataset, train={"max_steps": 2})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    config = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "fsdp2.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config),
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port()),
            "-m",
            "distil.cli",
            "train",
            "recipe.yaml",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert done.returncode != 0
    refusals = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(refusals) == 2 and all(
        "asks for FSDP, which accelerate runs on GPUs only: here it would train as MULTI_CPU" in line
        for line in refusals
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_from_a_store_two_processes_equal_one_and_a_killed_run_resumes_exactly(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path,
        dataset,
        train={"max_steps": 40, "save_every": 4, "grad_accum": 2, "batch_size": 4, "log_every": 10},
        capture={"top_k": 16},
        signals={"path": "capture"},
    )
    raw["capture"]["output"] = str(tmp_path / "store")
    capture(validate_recipe(raw))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    killed, straight = tmp_path / "killed", tmp_path / "straight"

    process = _launch(["recipe.yaml", "--out", "killed"], tmp_path)
    first = killed / "checkpoints" / "step-000004" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not first.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    # a second command on the same run folder is refused while the first one trains there
    with (
        pytest.raises(
            OutputError,
            match=rf"in use by another distil process \(pid {process.pid}: "
            "`distil train`",
        ),
        hold_run_folder(killed, "distil train"),
    ):
        pass
    # kill -9 of the command's process group: the launcher and both training processes,
    # which torchrun starts in sessions of their own, all die with it
    members = psutil.Process(process.pid).children(recursive=True)
    assert len([m for m in members if "distil.cli" in " ".join(m.cmdline())]) >= 2
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    _, alive = psutil.wait_procs(members, timeout=15)
    assert not alive, f"orphaned after the kill: {[m.cmdline() for m in alive]}"
    assert not (killed / "student").exists(), "the run ended before it could be killed"

    _run(["recipe.yaml", "--out", "killed", "--resume"], tmp_path)
    _run(["recipe.yaml", "--out", "straight"], tmp_path)
    for name, tensor in _weights(straight).items():
        assert torch.equal(_weights(killed)[name], tensor), f"{name} differs after resuming"
    steps = [line["step"] for line in _log(killed)]
    assert steps == list(range(10, 41, 10)), "log lines after the checkpoint were not dropped"
    _one_process(raw, tmp_path / "one", train={**raw["train"], "batch_size": 8})
    _close(tmp_path / "one", straight)
