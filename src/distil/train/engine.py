"""Training on accelerate's engine: how the accelerator is built, where the teacher sits,
whether the fused loss can read the student's head, and per-process checkpoints.

    Accelerator(**accelerator_kwargs(recipe))        # trackers + gradient accumulation
    teacher = place_teacher(accelerator, teacher, recipe.teacher.placement)
    save_state_checkpoint(accelerator, folder, state, keep)    # every process calls it

Checkpoints go through `accelerator.save_state` / `load_state`, which write and read each
process's own part (the model and optimizer shards under FSDP or DeepSpeed, every
process's RNG states); distil adds `trainer_state.json`, the step and data position. Under
DDP (and on one process) they are exact: a resumed run ends with the same weights as an
uninterrupted one (tested on CPU, gloo). FSDP and DeepSpeed are untested here (no GPU).
accelerate runs them on GPUs only: a launch that asked for one and got something else (on
CPU, plain DDP with the whole student on every process) is refused (`check_engine`), and
train_summary.json's `engine` says what ran (`engine_summary`).
"""

import dataclasses
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list, parse_flag_from_env

from distil.errors import ModelError
from distil.fsutil import follow_umask, space_checked, staging_dir
from distil.launch import SHARDING_ENGINES, LaunchError, unsharded_message
from distil.models import LoadedModel
from distil.progress import console
from distil.recipe import Recipe
from distil.train.checkpoint import TrainerState, list_checkpoints
from distil.train.trackers import accelerator_options

STATE_DIR = "accelerate"
"""The subfolder of a checkpoint that accelerate's save_state writes."""

LAUNCHED_ENGINES = {
    "ACCELERATE_USE_FSDP": DistributedType.FSDP,
    "ACCELERATE_USE_DEEPSPEED": DistributedType.DEEPSPEED,
}
"""What `accelerate launch` sets in each process when its config asks for a sharding engine."""


def accelerator_kwargs(recipe: Recipe) -> dict[str, Any]:
    """`Accelerator(...)` keywords: the trackers, and accumulation over `train.grad_accum`
    micro-batches (`accelerator.accumulate` syncs gradients on the last one only)."""
    return {**accelerator_options(recipe), "gradient_accumulation_steps": recipe.train.grad_accum}


def sharded(accelerator: Accelerator) -> bool:
    """Whether parameters are split over processes (FSDP, or DeepSpeed ZeRO stage 3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        plugin = accelerator.state.deepspeed_plugin
        return plugin is not None and plugin.zero_stage == 3
    return False


def fused_allowed(accelerator: Accelerator, wanted: bool, mode: str) -> bool:
    """The fused loss reads the whole output-head weight outside the wrapped forward, which a
    sharded student does not hold: fall back to the unfused loss there, saying so."""
    if not wanted or not sharded(accelerator):
        return wanted
    if mode == "always":
        raise ModelError(
            "distill.fused=always, but the student is sharded (FSDP / ZeRO-3) and "
            "the fused loss needs its whole output head; set distill.fused=auto"
        )
    console.print(
        "[yellow]the student is sharded (FSDP / ZeRO-3): the fused loss needs its "
        "whole output head, so training uses the unfused loss (same values, more "
        "memory for the logits)"
    )
    return False


def check_supported(accelerator: Accelerator, recipe: Recipe) -> None:
    """Refuse what this engine setup cannot do, before any model loads."""
    check_engine(accelerator)
    if recipe.student.lora is not None and sharded(accelerator):
        raise ModelError(
            "student.lora with a sharded student (FSDP / ZeRO-3) is not supported: "
            "the adapters are merged into whole weights at the end; train a LoRA "
            "student with DDP (recipes/accelerate/ddp.yaml) or ZeRO-2"
        )
    on_policy = recipe.distill.on_policy
    if on_policy.lmbda > 0 and on_policy.generator == "vllm" and sharded(accelerator):
        raise ModelError(
            "distill.on_policy.generator=vllm with a sharded student (FSDP / ZeRO-3) is not "
            "supported: each process's vLLM engine takes the whole student's weights; train "
            "with DDP (recipes/accelerate/ddp.yaml) or ZeRO-2, or set "
            "distill.on_policy.generator=hf"
        )


def check_engine(accelerator: Accelerator) -> None:
    """Refuse a launch whose accelerate config asked for FSDP or DeepSpeed where accelerate
    set up something else (on CPU: plain DDP, every process holding the whole student): a
    bare `accelerate launch --config_file fsdp2.yaml` without a GPU."""
    for variable, asked in LAUNCHED_ENGINES.items():
        if parse_flag_from_env(variable) and accelerator.distributed_type != asked:
            raise LaunchError(
                unsharded_message(SHARDING_ENGINES[asked.value], accelerator.distributed_type.value)
            )


def engine_summary(accelerator: Accelerator) -> dict[str, Any]:
    """What the training ran on, as accelerate set it up (for train_summary.json)."""
    return {
        "distributed_type": accelerator.distributed_type.value,
        "processes": accelerator.num_processes,
        "sharded": sharded(accelerator),
        "device": accelerator.device.type,
        "mixed_precision": accelerator.mixed_precision,
    }


def gathered_student_state(accelerator: Accelerator, module: Any) -> dict[str, Any] | None:
    """The whole student's weights gathered from its shards (every process calls it), keyed
    as the student's own state dict; None when it is not sharded (read it directly)."""
    if not sharded(accelerator):
        return None
    state = accelerator.get_state_dict(module)
    return {key.removeprefix("model."): value for key, value in state.items()}


def place_teacher(
    accelerator: Accelerator, teacher: LoadedModel | None, placement: str
) -> LoadedModel | None:
    """`replicated`: a whole copy on every process (as loaded). `sharded`: split over the
    processes by FSDP for inference, when the launch uses FSDP; kept out of checkpoints."""
    if teacher is None or placement == "replicated":
        return teacher
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ModelError(
            "teacher.placement=sharded is not supported under DeepSpeed (it would "
            "need a second DeepSpeed engine); use FSDP, teacher.placement="
            "replicated, or capture the teacher into a store (signals.path)"
        )
    if accelerator.distributed_type != DistributedType.FSDP:
        console.print(
            "[yellow]teacher.placement=sharded needs an FSDP launch (--accelerate-config "
            "recipes/accelerate/fsdp2.yaml); the teacher is replicated"
        )
        return teacher
    for parameter in teacher.model.parameters():
        parameter.requires_grad_(False)
    wrapped = accelerator.prepare_model(teacher.model)
    # inference only: not part of the training state that save_state writes
    accelerator._models[:] = [m for m in accelerator._models if m is not wrapped and m is not teacher.model]
    return dataclasses.replace(teacher, model=wrapped.eval())


def save_state_checkpoint(accelerator: Accelerator, folder: Path, state: TrainerState, keep: int) -> Path:
    """Write step-NNNNNN through `accelerator.save_state` (every process its part), then
    `trainer_state.json`; the folder appears in one rename once complete, with the modes the
    umask gives. A full disk removes the unfinished folder and raises DiskFullError. Called
    on every process."""
    target = folder / f"step-{state.step:06d}"
    staging: list[Path | None] = [staging_dir(target) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(staging)
    written = Path(staging[0])
    undo = (
        (lambda: shutil.rmtree(written, ignore_errors=True))
        if accelerator.is_main_process
        else (lambda: None)
    )
    with space_checked(folder, f"checkpoint {target.name}", undo):
        accelerator.save_state(str(written / STATE_DIR))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (written / "trainer_state.json").write_text(json.dumps(asdict(state), indent=2))
            follow_umask(written)
            if target.exists():
                shutil.rmtree(target)
            os.replace(written, target)
    if accelerator.is_main_process:
        for old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def has_state(path: Path) -> bool:
    """Whether a checkpoint was written by save_state_checkpoint (not the older layout)."""
    return (path / STATE_DIR).is_dir()


def load_state_checkpoint(accelerator: Accelerator, path: Path) -> TrainerState:
    """Restore this process's part of a checkpoint; return the trainer state."""
    from distil.errors import CheckpointError

    try:
        accelerator.load_state(str(path / STATE_DIR))
        return TrainerState(**json.loads((path / "trainer_state.json").read_text()))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be restored ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); move it aside "
            "to resume from the one before, or start a new run"
        ) from None
