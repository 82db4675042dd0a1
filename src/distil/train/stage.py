"""The train stage: the student learns the teacher's signal. One entry for every command.

    distil train recipes/tiny.yaml              # fresh run into runs/NAME
    distil train recipes/tiny.yaml --resume     # continue from the newest checkpoint
    distil train recipes/tiny.yaml --resume runs/tiny/checkpoints/step-000040   # from that one
    distil train recipes/tiny.yaml --restart    # continue, or set checkpoints of other inputs aside
    distil train recipes/tiny.yaml --num-processes 2      # under accelerate launch

`run_training` is what `distil train` and `distil run` both call: it checks and holds the run
folder, applies the one resume policy (distil.train.resume), and trains in this process or
launches the training processes with the arguments built here. `train` is the stage itself:
prepare the session (distil.train.session), restore or start, run the loop
(distil.train.loop), write the student (distil.train.outputs).
"""

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distil import launch
from distil.errors import CheckpointError
from distil.fsutil import ensure_writable_dir
from distil.generators import check_on_policy_generator
from distil.recipe import Recipe, dump_recipe
from distil.runlock import hold_run_folder
from distil.train.callbacks import Callbacks
from distil.train.loop import train_loop
from distil.train.outputs import TrainResult, finish, last_logged_loss
from distil.train.resume import restore_or_start, resume_policy, rewind_to
from distil.train.session import prepare_session
from distil.train.trackers import start_trackers


def run_training(
    recipe: Recipe,
    resume: bool | Path = False,
    restart: bool = False,
    num_processes: int = 1,
    accelerate_config: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult | None:
    """Train the recipe's student into its run folder, the way both commands do.

    `resume`: continue checkpoints of the same inputs (without it, a run folder holding
    checkpoints is refused), from the newest, or from the checkpoint folder it names (later
    ones are moved aside); `restart`: checkpoints of other inputs are moved aside and
    training starts afresh, those of the same inputs resumed (distil.train.resume). With
    `num_processes` > 1 or an accelerate config, the training runs in processes started by
    `accelerate launch` (distil.launch) and this returns None once they end. `callbacks`
    (distil.train.callbacks) hear of the training in this process only."""
    if launch.inside_launch():  # one of the processes a launch started: the launcher decided
        launch.die_with_launcher()
        return train(recipe, resume=bool(resume) or restart)
    launch.check_config(accelerate_config)
    check_on_policy_generator(recipe)
    check_run_folder(recipe.run_dir)
    with hold_run_folder(recipe.run_dir, "distil train"):
        if isinstance(resume, Path):
            if restart:
                raise CheckpointError(
                    "--resume CHECKPOINT continues a checkpoint of these "
                    "training inputs, --restart sets aside those of other "
                    "inputs: pass one of them"
                )
            rewind_to(recipe, resume)
        resume = resume_policy(recipe, bool(resume), restart)
        if num_processes > 1 or accelerate_config is not None:
            launch_training(recipe, resume, num_processes, accelerate_config)
            return None
        launch.check_launch()
        return train(recipe, resume, callbacks)


def check_run_folder(run_dir: Path) -> None:
    """Fail now, not after the work, when the run folder cannot be written."""
    ensure_writable_dir(
        run_dir, "run folder", "pass --out a folder you can write to, or fix output_dir in the recipe"
    )


def launch_arguments(recipe_file: Path, run_dir: Path, resume: bool) -> list[str]:
    """The `distil` arguments of each launched training process."""
    return ["train", str(recipe_file), "--out", str(run_dir), *(["--resume"] if resume else [])]


def launch_training(recipe: Recipe, resume: bool, num_processes: int, accelerate_config: Path | None) -> None:
    """Train on several processes: `distil train` under accelerate launch, on the recipe as
    this command resolved it (overrides included); LaunchError when they fail."""
    with tempfile.TemporaryDirectory() as folder:
        resolved = Path(folder) / "recipe.yaml"
        resolved.write_text(dump_recipe(recipe), encoding="utf-8")
        status = launch.run_launched(
            launch_arguments(resolved, recipe.run_dir, resume), num_processes, accelerate_config
        )
    if status != 0:
        raise launch.LaunchError(
            f"the {num_processes} training processes exited with status {status} "
            "(their messages are above); fix that and rerun, training resumes"
        )


def train(recipe: Recipe, resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run (or resume) the training stage of `recipe`; return where the student is."""
    session = prepare_session(recipe)
    session.callbacks = Callbacks(tuple(callbacks))
    checkpoints = recipe.run_dir / "checkpoints"
    restore_or_start(session, checkpoints, resume)
    start_trackers(session.accelerator, recipe)
    try:
        final_loss: float | None = train_loop(session, checkpoints)
        if math.isnan(final_loss):  # no step ran: the run was finished already
            final_loss = last_logged_loss(recipe.run_dir / "train_log.jsonl")
        return finish(session, final_loss)
    finally:
        session.accelerator.end_training()
        session.close()
