"""train.report_to: logged steps reach accelerate's trackers (tensorboard offline here)."""

import json

import pytest

from distil.errors import RecipeError
from distil.recipe import validate_recipe
from distil.train import train
from tests.conftest import recipe_dict


def test_tensorboard_receives_every_logged_step(tmp_path, dataset):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={
        "max_steps": 6, "log_every": 2, "report_to": ["tensorboard"]}))
    train(recipe)
    # the scalars; add_hparams writes the hyperparameters into a folder below
    (events,) = (recipe.run_dir / "trackers" / recipe.name).glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    logged = [json.loads(line) for line in (recipe.run_dir / "train_log.jsonl").read_text().splitlines()]
    scalars = accumulator.Scalars("loss")
    assert [s.step for s in scalars] == [r["step"] for r in logged] == [2, 4, 6]
    assert [s.value for s in scalars] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert {"lr", "grad_norm", "tokens_per_s"} <= set(accumulator.Tags()["scalars"])


def test_no_tracker_writes_nothing_and_a_missing_one_is_named(tmp_path, dataset, monkeypatch):
    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={"max_steps": 2}))
    train(recipe)
    assert not (recipe.run_dir / "trackers").exists()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    wants = validate_recipe(recipe_dict(tmp_path, dataset, output_dir=str(tmp_path / "other"),
                                        train={"max_steps": 2, "report_to": ["wandb"]}))
    with pytest.raises(RecipeError, match="train.report_to: wandb is not installed; pip install wandb"):
        train(wants)
    assert not (tmp_path / "other" / "checkpoints").exists()
