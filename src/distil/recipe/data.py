"""Recipe section of the training data: `data:` (prompt/response pairs and how prompts are rendered).
"""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Probability, Section


class DataSection(Section):
    """Prompt/response pairs to distil on."""

    train: str | None = None
    """Parquet or JSONL file (or a folder of `.parquet` shards) with one prompt/response pair per row.
    Required, except with a synth: section, where it defaults to RUN/data/train.parquet."""
    eval: str | None = None
    """Held-out file in the same format. When empty, `eval_fraction` of `train` is held out."""
    eval_fraction: Probability = 0.05
    """Share of `train` rows held out for evaluation when `eval` is not given (seeded split)."""
    prompt_field: str = "prompt"
    """Column holding the prompt (user message)."""
    response_field: str = "response"
    """Column holding the response the student is trained on (teacher text or reference)."""
    max_length: Annotated[int, Field(ge=8)] = 512
    """Longest prompt+response in tokens; longer rows are cut from the end of the response."""
    template: Literal["auto", "chat", "plain"] = "auto"
    """How a prompt is rendered: `chat` applies the tokenizer's chat template, `plain` uses the
    text as is, `auto` picks `chat` when the tokenizer has a template."""
