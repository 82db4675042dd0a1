"""Whether a training run resumes, starts afresh or is refused: one policy for every command.

    resume = resume_policy(recipe, resume=False, restart=True)   # before any model loads
    restore_or_start(session, RUN / "checkpoints", resume)        # after the session is ready

Checkpoints carry the values of the recipe fields the weights depend on (distil.recipe.inputs).
Checkpoints of the same inputs are resumed when the command asks to continue (`--resume`,
`--restart`, and `distil run` always). Checkpoints written under other inputs are refused,
naming the fields that changed, or with `--restart` moved aside into RUN/previous/ with the
rest of the earlier training (never deleted), and training starts from step 0. So `--restart`
never throws work away: what can be resumed is resumed, what cannot is kept aside.

`--resume PATH` resumes one chosen checkpoint of the run instead of the newest
(`rewind_to`): the checkpoints after it, and the student, adapter, summary and stage marker
they led to, are moved into RUN/previous/train-<time>/ with a copy of the whole log (never
deleted); the log is cut to the chosen step, and training goes on from there.
"""

import json
import shutil
import time
from pathlib import Path

from distil.errors import CheckpointError
from distil.fsutil import atomic_write_text, free_name, move_aside
from distil.progress import console
from distil.recipe import Recipe, dump_recipe
from distil.recipe.inputs import changed_fields, input_values, same_inputs
from distil.train import engine
from distil.train.checkpoint import (
    checkpoint_fingerprint,
    checkpoint_inputs,
    list_checkpoints,
    load_checkpoint,
)
from distil.train.session import TrainingSession

TRAIN_OUTPUTS = ("checkpoints", "student", "adapter", "train_log.jsonl", "train_summary.json")
"""What the training stage writes in the run folder."""
FINISHED = ("student", "adapter", "train_summary.json", "stages/train.json")
"""What a finished training leaves besides checkpoints (and the pipeline's marker of it)."""


def resume_policy(recipe: Recipe, resume: bool = False, restart: bool = False) -> bool:
    """Whether to resume the run's checkpoints (see the module docstring); moves them aside
    with the earlier training when `restart` meets checkpoints of other inputs."""
    found = list_checkpoints(recipe.run_dir / "checkpoints")
    if not found:
        return False
    if not (resume or restart):
        raise CheckpointError(_holds_checkpoints(recipe.run_dir, found[-1]))
    if written_under(found[-1], recipe):
        return True
    if not restart:
        raise CheckpointError(other_inputs_message(recipe, found[-1]))
    moved = move_aside(recipe.run_dir, TRAIN_OUTPUTS, "train")
    console.print(f"[yellow]earlier training moved to {moved}; training from scratch")
    return False


def rewind_to(recipe: Recipe, checkpoint: Path) -> None:
    """Make `checkpoint`, one of the run's, its newest: what came after it is moved aside
    (see the module docstring). CheckpointError when it is not a checkpoint of this run or
    was written under other training inputs."""
    folder = recipe.run_dir / "checkpoints"
    chosen = _own_checkpoint(folder, checkpoint)
    if not written_under(chosen, recipe):
        raise CheckpointError(other_inputs_message(recipe, chosen))
    later = list_checkpoints(folder)
    later = later[later.index(chosen) + 1 :]
    if not later:
        return
    target = free_name(recipe.run_dir / "previous" / f"train-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    (target / "checkpoints").mkdir(parents=True)
    for path in later:
        path.rename(target / "checkpoints" / path.name)
    for name in FINISHED:
        if (recipe.run_dir / name).exists():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (recipe.run_dir / name).rename(target / name)
    if (recipe.run_dir / "train_log.jsonl").is_file():
        shutil.copy2(recipe.run_dir / "train_log.jsonl", target / "train_log.jsonl")
    console.print(
        f"[yellow]resuming {chosen.name}: {', '.join(p.name for p in later)} and what "
        f"they led to moved to {target}",
        highlight=False,
    )


def _own_checkpoint(folder: Path, checkpoint: Path) -> Path:
    """`checkpoint` as one of the run's complete checkpoints, or CheckpointError saying why not."""
    found = list_checkpoints(folder)
    names = ", ".join(p.name for p in found) or "none"
    if not (checkpoint / "trainer_state.json").is_file():
        raise CheckpointError(
            f"--resume {checkpoint}: not a complete checkpoint (a step-NNNNNN "
            f"folder holding trainer_state.json); this run's: {names}"
        )
    matching = [p for p in found if p.resolve() == checkpoint.resolve()]
    if not matching:
        raise CheckpointError(
            f"--resume {checkpoint}: not a checkpoint of the run folder "
            f"{folder.parent} (its checkpoints: {names}); pass --out "
            f"{checkpoint.resolve().parent.parent} to resume the run it belongs to"
        )
    return matching[0]


def written_under(checkpoint: Path, recipe: Recipe) -> bool:
    """Whether `checkpoint` was written under the recipe's training inputs (fields added to
    distil since, at their defaults, included: distil.recipe.inputs.same_inputs)."""
    return same_inputs(
        checkpoint_fingerprint(checkpoint), checkpoint_inputs(checkpoint), input_values(recipe, "train")
    )


def other_inputs_message(recipe: Recipe, checkpoint: Path) -> str:
    """What changed since `checkpoint` was written, and the user's ways on."""
    old = checkpoint_inputs(checkpoint)
    changes = changed_fields(old, input_values(recipe, "train")) if old else []
    what = "; ".join(changes) if changes else "written by an earlier distil, which did not record them"
    return (
        f"{checkpoint} was written under other training inputs ({what}); restore those "
        "values to resume it, pass --out DIR to start a new run elsewhere, or pass "
        "--restart to move the old checkpoints aside into RUN/previous/ and train afresh"
    )


def _holds_checkpoints(run_dir: Path, newest: Path) -> str:
    return (
        f"{run_dir} already holds checkpoints (newest: {newest.name}); pass --resume to "
        "continue that run, or --out DIR for a new one"
    )


def restore_or_start(session: TrainingSession, checkpoints: Path, resume: bool) -> None:
    """Restore the newest checkpoint into the session (`resume`), or start a fresh run:
    the resolved recipe written, the log emptied."""
    found = list_checkpoints(checkpoints)
    run_dir = session.recipe.run_dir
    for leftover in checkpoints.glob(".step-*"):  # from a run killed while saving
        shutil.rmtree(leftover, ignore_errors=True)
    if found and not resume:
        raise CheckpointError(_holds_checkpoints(run_dir, found[-1]))
    if not found:
        if resume:
            console.print(f"[yellow]no checkpoint in {checkpoints}: starting from step 0")
        atomic_write_text(run_dir / "recipe.yaml", dump_recipe(session.recipe))
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)
        return
    if not written_under(found[-1], session.recipe):
        raise CheckpointError(other_inputs_message(session.recipe, found[-1]))
    fresh = session.state
    if engine.has_state(found[-1]):
        session.state = engine.load_state_checkpoint(session.accelerator, found[-1])
    else:  # written by an earlier distil
        session.state = load_checkpoint(
            found[-1],
            session.unwrapped(),
            session.optimizer,
            session.scheduler,
            session.accelerator.scaler,
            rank=session.accelerator.process_index,
        )
    # later checkpoints are written under this distil's record of the same inputs
    session.state.fingerprint, session.state.inputs = fresh.fingerprint, fresh.inputs
    _truncate_log(run_dir / "train_log.jsonl", session.state.step)
    console.print(
        f"resuming from {found[-1].name} (step {session.state.step} of {session.state.total_steps})"
    )


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from."""
    if path.is_file():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
