"""The base of every recipe section, and the constrained types sections share.

Every module of `distil.recipe` builds on it; it imports nothing of distil's.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True)
class OneOf:
    """Field metadata, `Annotated[str, OneOf(names)]`: the value must be one of `names()`,
    read when a recipe is validated (so a name a table gains later is accepted), and the
    recipe reference lists them."""

    names: Callable[[], list[str]]

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: str) -> str:
        """`value`, or a ValueError worded like pydantic's for a Literal."""
        names = [repr(name) for name in self.names()]
        if repr(value) in names:
            return value
        raise ValueError(f"Input should be {', '.join(names[:-1])} or {names[-1]}")


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
"""The teacher that answers; how it is reached (keys, pacing, retries, prices, caps) is not."""
