"""Several training processes from one command, through accelerate's own launcher.

    distil train RECIPE --num-processes 2                      # = the accelerate command below
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m distil.cli train RECIPE
    distil train RECIPE --num-processes 8 --accelerate-config recipes/accelerate/fsdp2.yaml

`accelerate launch --cpu --num_processes N` starts ONE process whatever N is: with `--cpu`
accelerate uses its simple launcher, whose only multi-process CPU mode is mpirun (with
`--mpirun_hostfile`). Its torchrun launcher (`--multi_gpu`) starts N processes, and
`ACCELERATE_USE_CPU=true` makes each of them join a gloo group on CPU. `check_launch`
refuses the one-process case loudly instead of training silently on one process, and
`check_config` an accelerate config for FSDP or DeepSpeed on a machine without a GPU:
accelerate runs those on GPUs only, and on CPU would train as plain DDP, unsharded.

The processes die with the command. torchrun starts each training process in a session of its
own, so a kill of the command's process group (Ctrl-C in a shell, `kill -9 -PGID`, a job
scheduler) would not reach them and they would train on, orphaned. On Linux each link of the
chain asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG): the launcher through
`run_launched`, each training process through `die_with_launcher` as it starts.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from distil.errors import DistilError


class LaunchError(DistilError):
    """The processes were not started the way the launch asked for."""


def inside_launch() -> bool:
    """Whether this process was started by a distributed launcher (torchrun, accelerate, MPI)."""
    return any(
        name in os.environ
        for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    )


def check_launch() -> None:
    """Refuse `accelerate launch --cpu --num_processes N>1`, which would train on one process."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cpu and "MASTER_ADDR" in os.environ and not inside_launch():
        raise LaunchError(
            "`accelerate launch --cpu` started one process, whatever --num_processes "
            "says (its CPU launcher is mpirun); use `distil train RECIPE "
            "--num-processes N`, or `ACCELERATE_USE_CPU=true accelerate launch "
            "--multi_gpu --num_processes N -m distil.cli train RECIPE`"
        )


SHARDING_ENGINES = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}
"""accelerate's distributed types that shard the student, and their names."""


def check_config(config_file: Path | None) -> None:
    """Refuse, before any work, an accelerate config that cannot run here as written: a
    missing or unreadable file, or FSDP / DeepSpeed on a machine without a GPU."""
    import torch

    if config_file is None:
        return
    if not config_file.is_file():
        raise LaunchError(
            f"accelerate config {config_file} not found; pass a file written "
            "by `accelerate config`, e.g. one of recipes/accelerate/"
        )
    engine = configured_engine(config_file)
    if engine in SHARDING_ENGINES and not torch.cuda.is_available():
        raise LaunchError(unsharded_message(SHARDING_ENGINES[engine], "MULTI_CPU"))


def configured_engine(config_file: Path) -> str:
    """The `distributed_type` of an accelerate config file (FSDP, MULTI_GPU, ...)."""
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        return str(load_config_from_file(str(config_file)).distributed_type.value)
    except (OSError, ValueError, AttributeError, TypeError, yaml.YAMLError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LaunchError(
            f"accelerate config {config_file} cannot be read ({reason}); pass a "
            "file written by `accelerate config`, e.g. one of "
            "recipes/accelerate/"
        ) from None


def unsharded_message(engine: str, ran: str) -> str:
    """Why a launch asking for `engine` is refused where accelerate would run `ran` instead."""
    return (
        f"the accelerate config asks for {engine}, which accelerate runs on GPUs only: "
        f"here it would train as {ran}, every process holding the whole student (nothing "
        "sharded); on CPU leave out --accelerate-config (--num-processes N trains with "
        "DDP over gloo), or run on GPUs"
    )


def free_port() -> int:
    """A TCP port nobody listens on now (so that two launches on one machine do not collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(
    arguments: list[str], num_processes: int, config_file: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """`accelerate launch` of `distil.cli ARGUMENTS` on `num_processes` processes on this
    machine, and its environment. Without a GPU the processes run on CPU (gloo)."""
    import torch

    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        check_config(config_file)
        command += ["--config_file", str(config_file)]
    else:
        command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(free_port()),
        "-m",
        "distil.cli",
        *arguments,
    ]
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
    return command, env


LAUNCHER_ENV = "DISTIL_LAUNCHER_PID"
"""The pid of the `distil` command that launched the training processes."""

PR_SET_PDEATHSIG = 1


def run_launched(arguments: list[str], num_processes: int, config_file: Path | None = None) -> int:
    """Run `distil.cli ARGUMENTS` on `num_processes` processes; their exit status. The
    launcher is killed if this process dies, and it kills its processes in turn."""
    command, env = launch_command(arguments, num_processes, config_file)
    env[LAUNCHER_ENV] = str(os.getpid())
    prctl = _prctl()  # looked up here: the child between fork and exec only calls it
    process = subprocess.Popen(command, env=env, preexec_fn=lambda: _kill_me_with_parent(prctl))
    try:
        return process.wait()
    except BaseException:  # Ctrl-C: the launcher got it too; wait for it to stop its processes
        process.wait()
        raise


def die_with_launcher() -> None:
    """In a training process: be killed when the launcher that started it dies, and exit now if
    the `distil` command that launched it is gone already (killed before this line ran)."""
    _kill_me_with_parent(_prctl())
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher and launcher.isdigit() and not _alive(int(launcher)):
        os._exit(1)


def _prctl():
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def _kill_me_with_parent(prctl) -> None:
    """Ask Linux to send this process SIGKILL when its parent exits (nothing without prctl)."""
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
