"""Launching several processes: `accelerate launch --cpu --num_processes 2` starts one process
(accelerate's simple launcher), which training refuses instead of running alone; the command
`--num-processes` builds is accelerate's torchrun launcher."""

import os

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_simple_launcher_cmd_env

from distil.launch import LaunchError, check_config, check_launch, launch_command


def test_accelerate_cpu_launch_of_two_is_one_process_and_is_refused(monkeypatch):
    args = launch_command_parser().parse_args(
        ["--cpu", "--num_processes", "2", "-m", "distil.cli", "train", "r.yaml"]
    )
    args, _, _ = _validate_launch_command(args)
    command, env = prepare_simple_launcher_cmd_env(args)
    assert "torch.distributed.run" not in command and "WORLD_SIZE" not in env  # one process
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR"):
        monkeypatch.setenv(name, env[name])
    with pytest.raises(LaunchError, match=r"started one process.*--num-processes N"):
        check_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun: fine
    check_launch()


def test_num_processes_builds_accelerates_multi_process_launch(tmp_path, monkeypatch):
    command, env = launch_command(["train", "r.yaml", "--out", "run"], 2)
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in command
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-5:] == ["distil.cli", "train", "r.yaml", "--out", "run"]
    assert env.get("ACCELERATE_USE_CPU") == (
        "true" if not _has_gpu() else os.environ.get("ACCELERATE_USE_CPU")
    )
    with pytest.raises(LaunchError, match="accelerate config .* not found"):
        launch_command(["train"], 2, tmp_path / "missing.yaml")
    config = tmp_path / "fsdp.yaml"
    config.write_text("distributed_type: FSDP\n")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # FSDP runs on GPUs only
    command, _ = launch_command(["train"], 4, config)
    assert command[command.index("--config_file") + 1] == str(config) and "--multi_gpu" not in command


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_a_sharding_config_without_a_gpu_is_refused(tmp_path, monkeypatch, engine):
    """accelerate runs FSDP and DeepSpeed on GPUs only: on CPU it trained plain DDP, whole
    students and an unsharded checkpoint, and exited 0."""
    config = tmp_path / "engine.yaml"
    config.write_text(f"distributed_type: {engine}\n")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(
        LaunchError,
        match="asks for (FSDP|DeepSpeed), which accelerate runs on "
        "GPUs only: here it would train as MULTI_CPU",
    ):
        check_config(config)
    config.write_text("distributed_type: MULTI_GPU\n")
    check_config(config)  # DDP: gloo on CPU


@pytest.mark.parametrize(
    "text", ["distributed_type: [\n", "distributed_type: SOMETHING\n", "- a list\n", "num_processes: 2\n"]
)
def test_an_unreadable_accelerate_config_is_refused(tmp_path, text):
    config = tmp_path / "engine.yaml"
    config.write_text(text)
    with pytest.raises(LaunchError, match="accelerate config .* cannot be read"):
        check_config(config)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def test_run_launches_training_on_the_recipe_as_resolved(tmp_path, dataset, monkeypatch):
    from distil import launch
    from distil.recipe import dump_recipe, load_recipe, validate_recipe
    from distil.train.stage import launch_training
    from tests.conftest import recipe_dict

    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={"learning_rate": 0.5}))
    seen = {}

    def fake(arguments, num_processes, config_file=None):
        seen.update(
            arguments=arguments, processes=num_processes, recipe=dump_recipe(load_recipe(arguments[1]))
        )
        return 3

    monkeypatch.setattr(launch, "run_launched", fake)
    with pytest.raises(LaunchError, match="the 2 training processes exited with status 3"):
        launch_training(recipe, resume=False, num_processes=2, accelerate_config=None)
    assert seen["processes"] == 2 and seen["recipe"] == dump_recipe(recipe)
    assert seen["arguments"][0] == "train" and seen["arguments"][2:] == ["--out", str(recipe.run_dir)]
