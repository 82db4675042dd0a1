"""The base of every recipe section, and the constrained types sections share.

Every module of `distil.recipe` builds on it; it imports nothing of distil's.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True)
class OneOf:
    """Field metadata, `Annotated[str, OneOf(names)]`: the value must be one of `names()`,
    read when a recipe is validated (so a name a table gains later is accepted), and the
    recipe reference lists them."""

    names: Callable[[], list[str]]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: str) -> str:
        """`value`, or a ValueError worded like pydantic's for a Literal."""
        names = [repr(name) for name in self.names()]
        if repr(value) in names:
            return value
        raise ValueError(f"Input should be {', '.join(names[:-1])} or {names[-1]}")


def _names_a_variable(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise PydanticCustomError(
            "secret_value",
            "must name an environment variable (letters, digits and _, e.g. "
            "OPENAI_API_KEY), not hold the key itself; put the key in that variable",
        )
    return value


def _is_http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:8000/v1")
    return value.rstrip("/")


EnvName = Annotated[str, AfterValidator(_names_a_variable)]
"""The name of an environment variable holding a secret (never the secret itself)."""
HttpUrl = Annotated[str, AfterValidator(_is_http)]
"""An http:// or https:// URL, without a trailing slash."""


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
    not_deciding: tuple[str, ...] = ()
    """Fields inside those sections that do not decide the result (how much memory an
    engine may take, say): left out of the stage's inputs and of every stage reading it."""


TEACHER_IDENTITY = (
    "teacher.model",
    "teacher.revision",
    "teacher.dtype",
    "teacher.trust_remote_code",
    "teacher.api.base_url",
    "teacher.api.endpoint",
    "teacher.api.tokenizer",
)
"""The teacher that answers; how it is reached (keys, pacing, retries, prices, caps) is not.
A teacher held in a GGUF file also counts by the file's sha256 (`inputs.input_values`)."""
