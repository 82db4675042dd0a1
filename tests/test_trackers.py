"""train.report_to: logged steps reach accelerate's trackers (tensorboard offline here), and
what a tracker keeps locally goes under RUN/trackers/ (mlflow and wandb: stand-in modules that
record what accelerate's trackers ask of them, as neither is installed here)."""

import importlib.machinery
import json
import sys
import types
from types import SimpleNamespace

import pytest
from accelerate.utils import LoggerType

from distil.errors import RecipeError
from distil.recipe import validate_recipe
from distil.train import train
from distil.train.trackers import RunFolderMLflow
from tests.conftest import recipe_dict


def test_tensorboard_receives_every_logged_step(tmp_path, dataset):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = validate_recipe(
        recipe_dict(tmp_path, dataset, train={"max_steps": 6, "log_every": 2, "report_to": ["tensorboard"]})
    )
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
    wants = validate_recipe(
        recipe_dict(
            tmp_path,
            dataset,
            output_dir=str(tmp_path / "other"),
            train={"max_steps": 2, "report_to": ["wandb"]},
        )
    )
    with pytest.raises(RecipeError, match="train.report_to: wandb is not installed; pip install wandb"):
        train(wants)
    assert not (tmp_path / "other" / "checkpoints").exists()


def _stand_in(name: str, calls: list[tuple[str, tuple, dict]], **results) -> types.ModuleType:
    """A module `name` whose functions record their calls and return `results[function]`."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # found by find_spec

    def recorder(function: str):
        def call(*args, **kwargs):
            calls.append((f"{name}.{function}", args, kwargs))
            return results.get(function)

        return call

    for function in (
        "set_tracking_uri",
        "search_experiments",
        "create_experiment",
        "start_run",
        "log_params",
        "log_metrics",
        "end_run",
        "init",
    ):
        setattr(module, function, recorder(function))
    module.utils = SimpleNamespace(
        validation=SimpleNamespace(MAX_PARAM_VAL_LENGTH=6000, MAX_PARAMS_TAGS_PER_BATCH=100)
    )
    module.config = SimpleNamespace(update=recorder("config.update"))
    return module


def test_mlflow_and_wandb_keep_their_runs_under_the_run_folder(tmp_path, dataset, monkeypatch):
    calls: list[tuple[str, tuple, dict]] = []
    run = SimpleNamespace(
        log=lambda values, step: calls.append(("wandb.log", (), {"step": step})), finish=lambda: None
    )
    monkeypatch.setitem(
        sys.modules, "mlflow", _stand_in("mlflow", calls, search_experiments=[], create_experiment="1")
    )
    monkeypatch.setitem(sys.modules, "wandb", _stand_in("wandb", calls, init=run))
    monkeypatch.setattr(
        "accelerate.tracking.get_available_trackers",  # without a package's
        lambda: [LoggerType.MLFLOW, LoggerType.WANDB],
    )  # metadata it drops it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # mlflow's default store would be ./mlflow.db here
    recipe = validate_recipe(
        recipe_dict(
            tmp_path, dataset, train={"max_steps": 2, "log_every": 1, "report_to": ["mlflow", "wandb"]}
        )
    )
    train(recipe)
    trackers = recipe.run_dir / "trackers"
    names = [name for name, _, _ in calls]
    assert calls[0] == ("mlflow.set_tracking_uri", (f"sqlite:///{trackers / 'mlflow.db'}",), {})
    assert names.index("mlflow.set_tracking_uri") < names.index("mlflow.search_experiments")
    (created,) = [kwargs for name, _, kwargs in calls if name == "mlflow.create_experiment"]
    assert created["artifact_location"] == (trackers / "mlflow-artifacts").as_uri()
    (wandb_init,) = [kwargs for name, _, kwargs in calls if name == "wandb.init"]
    assert wandb_init == {"project": recipe.name, "dir": str(trackers)}
    for tracker in ("mlflow.log_metrics", "wandb.log"):
        assert [kwargs["step"] for name, _, kwargs in calls if name == tracker] == [1, 2]
    assert list((tmp_path / "work").iterdir()) == []


def test_an_mlflow_store_named_in_the_environment_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    tracker = RunFolderMLflow("run", tmp_path / "trackers")
    assert tracker.tracking_uri == "http://mlflow.example:5000"
    assert tracker.logging_dir is None  # the server's own artifact store
