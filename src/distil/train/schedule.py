"""The learning-rate schedule (train.lr_scheduler): transformers' schedules, by name.

    scheduler = make_scheduler(optimizer, recipe.train, total_steps)

`transformers.get_scheduler` builds it: the warm-up is `train.warmup_ratio` of the steps
(for the schedules that warm up), the decay spans all steps, and
`train.lr_scheduler_kwargs` are its `scheduler_specific_kwargs`. The default, `cosine`, is
the linear warm-up and cosine to 0 that distil always used. The scheduler steps once per
optimizer step and is checkpointed with the rest of the training state.
"""

from typing import Any

import torch

from distil.errors import RecipeError
from distil.recipe.train import TrainSection


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainSection, total: int) -> Any:
    """The recipe's schedule over `total` optimizer steps; RecipeError naming the fields when
    transformers refuses its arguments."""
    from transformers import get_scheduler

    try:
        return get_scheduler(
            train.lr_scheduler,
            optimizer,
            num_warmup_steps=round(train.warmup_ratio * total),
            num_training_steps=total,
            scheduler_specific_kwargs=dict(train.lr_scheduler_kwargs),
        )
    except (TypeError, ValueError) as err:
        raise RecipeError(
            f"train.lr_scheduler {train.lr_scheduler!r} with train.lr_scheduler_kwargs "
            f"{dict(train.lr_scheduler_kwargs)}: {str(err).splitlines()[0]}; set the arguments "
            f"transformers' {train.lr_scheduler} schedule takes in train.lr_scheduler_kwargs "
            "(docs/training.md)"
        ) from None


def check_schedule(train: TrainSection) -> None:
    """Build the schedule once over a throwaway parameter: a bad one fails before any model
    loads."""
    make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), train, 10)
