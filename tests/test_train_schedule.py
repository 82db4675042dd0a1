"""train.lr_scheduler: every named schedule gives the learning rates transformers' schedule of
that name gives (and the common ones the textbook formulas), cosine stays the default, bad
arguments are refused before any model loads."""

import json
import math

import pytest
import torch
from transformers import get_scheduler

from distil.errors import RecipeError
from distil.recipe import validate_recipe
from distil.recipe.train import TrainSection, scheduler_names
from distil.train.schedule import make_scheduler
from distil.train.session import prepare_session
from distil.train.stage import train
from tests.conftest import recipe_dict

KWARGS = {
    "cosine_with_restarts": {"num_cycles": 2},
    "polynomial": {"lr_end": 1e-5, "power": 2.0},
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
    "cosine_warmup_with_min_lr": {"min_lr": 1e-4},
    "warmup_stable_decay": {"num_decay_steps": 6},
    "inverse_sqrt": {"timescale": 4},
}
TOTAL, PEAK, WARMUP_RATIO = 20, 3e-3, 0.15


def _rates(scheduler, optimizer, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=PEAK)


def _textbook(name: str, step: int) -> float | None:
    """The rate at `step` from the formula, for the schedules that have a simple one."""
    warmup = round(WARMUP_RATIO * TOTAL)
    if name == "constant":
        return PEAK
    if step < warmup and name in ("linear", "cosine", "constant_with_warmup"):
        return PEAK * step / warmup
    progress = (step - warmup) / (TOTAL - warmup)
    return {
        "linear": PEAK * max(0.0, 1 - progress),
        "cosine": PEAK * 0.5 * (1 + math.cos(math.pi * progress)),
        "constant_with_warmup": PEAK,
    }.get(name)


def test_the_default_is_the_cosine_distil_always_used():
    assert TrainSection().lr_scheduler == "cosine"
    assert "reduce_lr_on_plateau" not in scheduler_names()  # driven by a metric, not the step


@pytest.mark.parametrize("name", scheduler_names())
def test_each_schedule_is_transformers_own(tmp_path, dataset, name):
    raw = recipe_dict(
        tmp_path,
        dataset,
        train={
            "max_steps": TOTAL,
            "learning_rate": PEAK,
            "warmup_ratio": WARMUP_RATIO,
            "lr_scheduler": name,
            "lr_scheduler_kwargs": KWARGS.get(name, {}),
        },
    )
    section = validate_recipe(raw).train
    got = _rates(make_scheduler(optimizer := _optimizer(), section, TOTAL), optimizer, TOTAL)
    reference_optimizer = _optimizer()
    reference = _rates(
        get_scheduler(
            name,
            reference_optimizer,
            num_warmup_steps=round(WARMUP_RATIO * TOTAL),
            num_training_steps=TOTAL,
            scheduler_specific_kwargs=KWARGS.get(name),
        ),
        reference_optimizer,
        TOTAL,
    )
    assert got == reference
    assert len(set(got)) > 1 or name == "constant"
    for step, rate in enumerate(got):
        if (expected := _textbook(name, step)) is not None:
            assert rate == pytest.approx(expected, rel=1e-9, abs=1e-15), step


def test_training_steps_the_schedule_once_per_optimizer_step(tmp_path, dataset):
    recipe = validate_recipe(
        recipe_dict(
            tmp_path,
            dataset,
            train={
                "max_steps": 6,
                "log_every": 1,
                "learning_rate": PEAK,
                "warmup_ratio": 0.0,
                "lr_scheduler": "linear",
                "grad_accum": 2,
                "batch_size": 4,
            },
        )
    )
    train(recipe)
    logged = [
        json.loads(line)["lr"] for line in (recipe.run_dir / "train_log.jsonl").read_text().splitlines()
    ]
    # the rate after step s (the one the next step uses): linear from the peak to 0
    assert logged == pytest.approx([PEAK * (1 - s / 6) for s in range(1, 7)], rel=1e-9, abs=1e-15)


def test_arguments_a_schedule_does_not_take_are_refused_before_any_model_loads(
    tmp_path, dataset, monkeypatch
):
    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("distil.train.session.load_models", no_models)
    raw = recipe_dict(tmp_path, dataset, train={"lr_scheduler": "cosine_with_min_lr"})
    with pytest.raises(
        RecipeError,
        match="train.lr_scheduler 'cosine_with_min_lr' with train.lr_scheduler_kwargs {}: .*min_lr",
    ):
        prepare_session(validate_recipe(raw))
    raw = recipe_dict(
        tmp_path, dataset, train={"lr_scheduler": "linear", "lr_scheduler_kwargs": {"num_cycles": 2}}
    )
    with pytest.raises(RecipeError, match="unexpected keyword argument 'num_cycles'"):
        prepare_session(validate_recipe(raw))


def test_an_unknown_schedule_names_the_ones_there_are(tmp_path, dataset):
    raw = recipe_dict(tmp_path, dataset, train={"lr_scheduler": "cosine_annealing"})
    with pytest.raises(RecipeError, match="train.lr_scheduler.*'linear', 'cosine'"):
        validate_recipe(raw)
