"""The base of every recipe section, and the constrained number types sections share.

Every module of `distil.recipe` builds on it; it imports nothing of distil's.
"""

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, docstrings document fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def with_recipe_seed(section: Section, seed: int) -> Section:
    """`section` with `seed` set to the recipe's, unless the recipe set the section's own."""
    if "seed" in section.model_fields_set:
        return section
    return section.model_copy(update={"seed": seed})


@dataclass(frozen=True)
class StageInputs:
    """A stage's own recipe fields (dotted keys; a section means all its fields) and the
    stages whose outputs it reads (their inputs are its inputs too)."""

    fields: tuple[str, ...]
    reads: tuple[str, ...] = ()


TEACHER_IDENTITY = ("teacher.model", "teacher.revision", "teacher.dtype", "teacher.trust_remote_code",
                    "teacher.api.base_url", "teacher.api.endpoint", "teacher.api.tokenizer")
"""The teacher that answers; how it is reached (keys, pacing, retries, prices, caps) is not.
A teacher held in a GGUF file also counts by the file's sha256 (`inputs.input_values`)."""
