"""Experiment trackers for training (`train.report_to`), through accelerate's own trackers.

    train: {report_to: [tensorboard]}        # events under RUN/trackers/NAME/

Each logged step (train.log_every) sends loss, learning rate, gradient norm and throughput
to every tracker, beside train_log.jsonl; the training inputs go along as hyperparameters.
Each tracker needs its package (`pip install tensorboard`, or `distil[track]`); a missing
one is named before any model loads.
"""

import importlib.util
from typing import Any

from distil.errors import RecipeError
from distil.recipe import Recipe
from distil.recipe.inputs import input_values

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
            "trackio": "trackio"}
"""The package each tracker needs."""


def accelerator_options(recipe: Recipe) -> dict[str, Any]:
    """`Accelerator(...)` keyword arguments for the recipe's trackers (none: empty)."""
    names = recipe.train.report_to
    if not names:
        return {}
    missing = [n for n in names if importlib.util.find_spec(PACKAGES[n]) is None]
    if missing:
        raise RecipeError(f"train.report_to: {', '.join(missing)} is not installed; pip install "
                          f"{' '.join(PACKAGES[n] for n in missing)}, or remove it from "
                          "train.report_to")
    return {"log_with": list(names), "project_dir": str(recipe.run_dir / "trackers")}


def start_trackers(accelerator: Any, recipe: Recipe) -> None:
    """Open the trackers under the run's name, with the training inputs as hyperparameters."""
    if recipe.train.report_to:
        accelerator.init_trackers(recipe.name, config=hyperparameters(recipe))


def hyperparameters(recipe: Recipe) -> dict[str, int | float | str | bool]:
    """The training inputs as trackers take them: scalars only, lists as text, no empties."""
    values = {}
    for key, value in input_values(recipe, "train").items():
        if isinstance(value, bool | int | float | str):
            values[key] = value
        elif isinstance(value, list):
            values[key] = str(value)
    return values
