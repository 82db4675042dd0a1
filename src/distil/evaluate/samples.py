"""Sample answers: teacher and students answer the first held-out rows' prompts greedily.

Task accuracy needs graded prompts; a student distilled on free-form instructions has none,
so the report shows what each model says to a few held-out prompts instead, side by side.
They go to eval.json as `sample_answers`: one row per prompt, each model's answer by role.
"""

from typing import Any

from distil.data import Pair
from distil.evaluate.tasks import answer
from distil.models import LoadedModel
from distil.recipe import EvalSection
from distil.signals.scoring import pair_prompt


def sample_answers(
    models: dict[str, LoadedModel], held_out: list[Pair], config: EvalSection
) -> list[dict[str, Any]]:
    """Each model's greedy answer (by role: teacher, student, untrained_student) to the first
    `config.sample_answers` held-out prompts, with the prompt and the row's own response."""
    rows = held_out[: config.sample_answers]
    if not rows:
        return []
    prompts = [pair_prompt(pair) for pair in rows]
    answers = {
        role: answer(model, prompts, config, f"{role.replace('_', ' ')} samples")[0]
        for role, model in models.items()
    }
    return [
        {
            "prompt": pair.prompt,
            "reference": pair.response,
            **{role: texts[index] for role, texts in answers.items()},
        }
        for index, pair in enumerate(rows)
    ]
