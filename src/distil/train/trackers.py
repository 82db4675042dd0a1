"""Experiment trackers for training (`train.report_to`), through accelerate's own trackers.

    train: {report_to: [tensorboard]}        # events under RUN/trackers/NAME/

Each logged step (train.log_every) sends loss, learning rate, gradient norm and throughput
to every tracker, beside train_log.jsonl; the training inputs go along as hyperparameters.
What a tracker keeps on this machine goes under RUN/trackers/: tensorboard's events, wandb's
files, and mlflow's runs (RUN/trackers/mlflow.db and mlflow-artifacts/; mlflow's own default
would be mlflow.db in the working directory), unless MLFLOW_TRACKING_URI names a server or
store. trackio keeps its own local store (see its TRACKIO_DIR). Each tracker needs its
package (`pip install tensorboard`, or `distil[track]`); a missing one is named before any
model loads.
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

from accelerate.tracking import MLflowTracker, on_main_process

from distil.errors import RecipeError
from distil.recipe import Recipe
from distil.recipe.inputs import input_values

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
"""The package each tracker needs."""


class RunFolderMLflow(MLflowTracker):
    """accelerate's MLflow tracker with its store in the run folder: the tracking URI
    sqlite:///RUN/trackers/mlflow.db and the artifacts in RUN/trackers/mlflow-artifacts/,
    unless MLFLOW_TRACKING_URI names where runs go."""

    def __init__(self, experiment: str, folder: Path) -> None:
        own = os.environ.get("MLFLOW_TRACKING_URI")
        super().__init__(
            experiment_name=experiment, logging_dir=None if own else (folder / "mlflow-artifacts").as_uri()
        )
        self.folder = folder
        self.tracking_uri = own or f"sqlite:///{folder / 'mlflow.db'}"

    @on_main_process
    def start(self) -> None:
        import mlflow

        self.folder.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)  # before the experiment is looked up
        super().start()


def accelerator_options(recipe: Recipe) -> dict[str, Any]:
    """`Accelerator(...)` keyword arguments for the recipe's trackers (none: empty)."""
    names = recipe.train.report_to
    if not names:
        return {}
    missing = [n for n in names if importlib.util.find_spec(PACKAGES[n]) is None]
    if missing:
        raise RecipeError(
            f"train.report_to: {', '.join(missing)} is not installed; pip install "
            f"{' '.join(PACKAGES[n] for n in missing)}, or remove it from "
            "train.report_to"
        )
    folder = trackers_folder(recipe)
    trackers = [RunFolderMLflow(recipe.name, folder) if name == "mlflow" else name for name in names]
    return {"log_with": trackers, "project_dir": str(folder)}


def trackers_folder(recipe: Recipe) -> Path:
    """RUN/trackers, as an absolute path (a tracker may change the working directory)."""
    return recipe.run_dir.absolute() / "trackers"


def start_trackers(accelerator: Any, recipe: Recipe) -> None:
    """Open the trackers under the run's name, with the training inputs as hyperparameters."""
    if recipe.train.report_to:
        accelerator.init_trackers(
            recipe.name, config=hyperparameters(recipe), init_kwargs=tracker_kwargs(recipe)
        )


def tracker_kwargs(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """What accelerate passes to each tracker by name: wandb writes under RUN/trackers/."""
    if "wandb" not in recipe.train.report_to:
        return {}
    folder = trackers_folder(recipe)
    folder.mkdir(parents=True, exist_ok=True)  # wandb's `dir` must exist
    return {"wandb": {"dir": str(folder)}}


def hyperparameters(recipe: Recipe) -> dict[str, int | float | str | bool]:
    """The training inputs as trackers take them: scalars only, lists as text, no empties."""
    values = {}
    for key, value in input_values(recipe, "train").items():
        if isinstance(value, bool | int | float | str):
            values[key] = value
        elif isinstance(value, list):
            values[key] = str(value)
    return values
