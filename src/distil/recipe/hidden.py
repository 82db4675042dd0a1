"""Recipe section `distill.hidden:`: distilling intermediate representations.

    distill:
      hidden: {weight: 1.0, loss: cosine}          # uniform layer map
      hidden: {weight: 1.0, layers: [[1, 1], [2, 10]]}   # student state 1 <-> teacher state 1, ...

Hidden states are numbered as transformers returns them: 0 is the embedding output, i the
output of layer i (the last one after the final norm).
"""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Section


class HiddenSection(Section):
    """A loss between chosen student and teacher hidden states (TinyBERT, MiniLM), added to the
    objective at every response token. Needs a live teacher: a signal store holds no hidden
    states."""

    weight: Annotated[float, Field(ge=0)] = 0.0
    """Weight of the hidden-state term in each response token's loss; 0 turns it off."""
    loss: Literal["mse", "cosine"] = "mse"
    """`mse`: mean squared difference over the hidden width; `cosine`: 1 - cosine similarity."""
    layers: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] | None = None
    """Pairs [student state, teacher state] to match. Empty maps student state i of S to
    teacher state round(i * T / S), i = 1..S (uniform; the last states always meet). Where the
    widths differ, a learned linear projection (trained and checkpointed with the student)
    maps the student's state to the teacher's width."""
