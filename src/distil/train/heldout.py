"""Held-out loss during training (train.eval_every), on a fixed few rows of the eval split.

    held_out = held_out_evaluation(...)          # when the session is prepared
    metrics = held_out.evaluate(session.module)  # {"eval_ce": 1.93, "eval_loss": ..., ...}

Three token means over the response tokens of the first `train.eval_rows` held-out rows,
from one student forward per batch:

- `eval_ce`: cross-entropy on the data's responses, always;
- `eval_loss`: the training objective (divergence, hard-label and hidden-state terms, on the
  data's responses, never on-policy samples), where the teacher's side of those rows is at
  hand: a live teacher (same tokenizer or not), a store that holds them;
- `eval_kl`: KL(teacher || student) at distill.temperature, where a teacher of the student's
  tokenizer gives distributions (live, or a store that holds the rows); its mean is over
  the positions with a teacher distribution (a store's absent positions are left out, while
  `eval_loss` counts them as training does: with their hard-label term only).

`distil capture` stores the training rows only, so from a store (the demo's case) only
`eval_ce` is logged unless the store also holds the held-out rows. The evaluation runs
without gradients, in eval mode (dropout off), under a forked RNG, and the train mode is
restored: the trained weights are those of a run without it, bit for bit.
"""

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from distil.data import Example
from distil.losses import Objective
from distil.progress import console
from distil.recipe import Recipe, TeacherSignal
from distil.signals import SignalStore
from distil.train.batch import BatchLayout
from distil.train.signals import (
    HardLabels,
    LiveTeacher,
    StoredTopK,
    StudentSide,
    TrainingSignal,
    off_policy_signal,
)
from distil.train.step import response_rows


@dataclass
class HeldOut:
    """The held-out rows, and what grades them for each logged figure."""

    examples: list[Example]
    batch_size: int
    figures: dict[str, TrainingSignal]
    """eval_ce, eval_loss, eval_kl -> the signal whose batches and grader give its sum."""

    def evaluate(self, module: Any) -> dict[str, float]:
        """Each figure's token mean over the rows, with `module` (the prepared student) in
        eval mode; its mode, the RNG and the gradients are left as they were."""
        totals = dict.fromkeys(self.figures, 0.0)
        counts = dict.fromkeys(self.figures, 0)
        with _untouched(module):
            for start in range(0, len(self.examples), self.batch_size):
                rows = self.examples[start : start + self.batch_size]
                batches = {name: signal.batch(rows, 0) for name, signal in self.figures.items()}
                first = next(iter(batches.values()))
                out = response_rows(module(**first.model_inputs()), first.token_index)
                for name, batch in batches.items():
                    totals[name] += float(batch.grader.loss(out, batch))
                    counts[name] += _counted(name, batch)
        return {name: round(total / max(counts[name], 1), 6) for name, total in totals.items()}


def _counted(name: str, batch: Any) -> int:
    """The positions figure `name` averages over: all counted ones, but for `eval_kl` only
    those where the teacher gave a distribution."""
    present = getattr(batch.teacher, "present", None)
    if name == "eval_kl" and present is not None:
        return int(present.sum())
    return batch.token_index.numel()


@contextmanager
def _untouched(module: Any) -> Iterator[None]:
    """No gradients, eval mode, a forked RNG; the module's mode restored after."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    training = module.training
    module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        module.train(training)


@dataclass(frozen=True)
class TeacherParts:
    """What the session opened for the teacher's signal, as the held-out figures use it."""

    model: Any
    """The teacher in process, of the student's tokenizer (None otherwise)."""
    live: LiveTeacher | None
    """The training's live teacher (with its hidden-state matcher), if any."""
    stored: Any
    """The StoredTeacher of a store, if any."""
    cross: Any
    """The cross-tokenizer teacher, if any."""


def held_out_evaluation(
    recipe: Recipe,
    plan: TeacherSignal,
    student: StudentSide,
    layout: BatchLayout,
    examples: list[Example],
    teacher: TeacherParts,
) -> HeldOut:
    """The figures the recipe's signal allows on `examples` (see the module docstring); says
    which are logged."""
    d = recipe.distill
    hard = dataclasses.replace(student, objective=Objective(d.divergence, kd_weight=0.0, ce_weight=1.0))
    figures: dict[str, TrainingSignal] = {"eval_ce": HardLabels(hard, layout)}
    if _teacher_covers(plan, teacher, examples):
        figures["eval_loss"] = off_policy_signal(
            plan.source, student, layout, teacher.live, teacher.stored, teacher.cross
        )
        kl = dataclasses.replace(
            student,
            objective=Objective("forward_kl", d.temperature, kd_weight=1 / d.temperature**2, ce_weight=0.0),
        )
        if teacher.model is not None:
            figures["eval_kl"] = LiveTeacher(kl, layout, teacher.model)
        elif teacher.stored is not None:
            figures["eval_kl"] = StoredTopK(kl, layout, teacher.stored)
    missing = (
        ""
        if "eval_loss" in figures or plan.source == "none"
        else " (the store holds no signals of the held-out rows: `distil capture` stores "
        "the training rows only)"
    )
    console.print(
        f"held-out loss every {recipe.train.eval_every} steps on {len(examples)} "
        f"rows: {', '.join(figures)}{missing}"
    )
    return HeldOut(examples, recipe.train.batch_size, figures)


def _teacher_covers(plan: TeacherSignal, teacher: TeacherParts, examples: list[Example]) -> bool:
    """Whether the teacher's side of every held-out row can be had."""
    if plan.source in ("store", "api-store"):
        return _holds(teacher.stored.store, examples)
    if plan.source == "cross-store":
        return _holds(teacher.cross.store, examples)
    return True


def _holds(store: SignalStore, examples: list[Example]) -> bool:
    return all(example.sample_id in store for example in examples)
