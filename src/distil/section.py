"""The base of every recipe section, and the constrained number types sections share.

Kept apart from `distil.recipe` so that sections may live next to the component they
configure (`distil.recipe_api`, `distil.recipe_synth`) and still be assembled there.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, docstrings document fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
