"""Recipe section of the eval stage: `eval:`."""

from typing import Annotated

from pydantic import Field, field_validator

from distil.recipe.section import TEACHER_IDENTITY, Section, StageInputs
from distil.tasks import unknown_tasks_error


class EvalSection(Section):
    """Held-out evaluation of the student against the teacher."""

    batch_size: Annotated[int, Field(ge=1)] = 16
    """Rows per evaluation batch."""
    max_samples: Annotated[int, Field(ge=1)] | None = 256
    """Evaluate on at most this many held-out rows; empty uses all of them."""
    tasks: list[str] = []
    """Task families (`distil.tasks`; `all` for every default family, `[all, between]` adds an
    opt-in one) whose held-out prompts teacher and student answer by greedy generation, graded
    by each family's checker; empty: no task accuracy."""
    per_task: Annotated[int, Field(ge=1)] = 50
    """Held-out prompts per task family."""
    max_new_tokens: Annotated[int, Field(ge=1)] = 64
    """Longest generated answer, in tokens."""
    generation_batch_size: Annotated[int, Field(ge=1)] = 64
    """Prompts generated together (batched, with a KV cache)."""
    baseline: bool = True
    """Also evaluate the recipe's student before training on the same rows and prompts (KL,
    top-1 agreement, perplexity, task accuracy, sample answers), as `untrained_student` in
    eval.json: the floor training is measured from. Costs one more student load, forward
    pass over the held-out rows and round of generated answers."""
    sample_answers: Annotated[int, Field(ge=0)] = 8
    """Held-out rows whose prompts teacher and student (and the untrained student) answer
    greedily, shown side by side in the report (`sample_answers` in eval.json); 0: none."""

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        if problem := unknown_tasks_error(tasks, "eval.tasks"):
            raise ValueError(problem)
        return tasks


INPUTS = StageInputs(fields=("seed", *TEACHER_IDENTITY, "data", "eval"), reads=("train",))
"""What decides eval.json's quality figures: the student trained, the held-out rows, the tasks."""
