"""Recipe section of the training data: `data:` (prompt/response pairs and how prompts are rendered)."""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Probability, Section


class DataSection(Section):
    """Prompt/response pairs to distil on."""

    train: str | None = None
    """Parquet, JSONL or JSON file, a folder of `.parquet` shards, a `save_to_disk` folder, a
    hub-layout folder (data/train-*.parquet) or a hub dataset id, one row per pair or chat.
    Required, except with a synth: section, where it defaults to RUN/data/train.parquet."""
    eval: str | None = None
    """Held-out file in the same format. When empty, `eval_fraction` of `train` is held out."""
    split: str = "train"
    """Split of `train` to read, for sources that have splits (save_to_disk, hub)."""
    eval_split: str = "test"
    """Split of `eval` to read, for sources that have splits."""
    eval_fraction: Probability = 0.05
    """Share of `train` rows held out for evaluation when `eval` is not given (seeded split;
    with `streaming`, each row by a hash of its id, so about this share)."""
    streaming: bool = False
    """Read `train` and `eval` as streams while training (JSONL line by line, Parquet batch by
    batch, or an IterableDataset passed in Python), so memory stays flat however large the
    data. Each epoch's order is then the file's through a seeded shuffle buffer
    (`shuffle_buffer`) and the held-out rows are picked by a hash of each row's id: another
    order and split than in memory, as reproducible. `train.epochs` costs one counting pass
    first (`train.max_steps` none); a resumed run re-reads up to its position. Not with
    signals.path, cross_tokenizer, on-policy scoring through teacher.api or compare."""
    shuffle_buffer: Annotated[int, Field(ge=1)] = 10_000
    """Rows held in the shuffle buffer with `streaming` (more mixes better and holds more)."""
    prompt_field: str = "prompt"
    """Column holding the prompt (user message)."""
    response_field: str = "response"
    """Column holding the response the student is trained on (teacher text or reference)."""
    format: Literal["auto", "pairs", "messages", "prompt_completion"] = "auto"
    """Row layout: `pairs` (prompt_field/response_field strings), `messages` (an OpenAI-format
    chat; every assistant turn is trained on, nothing else; assistant `tool_calls`, `tool`
    turns and a `tools` column of function schemas go through the chat template, which must
    render them), `prompt_completion` (TRL's: two strings, or two message lists). `auto`
    picks from the columns in that order. A `finish_reason` column of `length` marks a
    response cut at the length limit: it is learned without an end-of-turn token."""
    messages_field: str = "messages"
    """Column holding the chat of `messages` rows."""
    system_prompt: str | None = None
    """System message put first in every row that has none of its own."""
    chat_template: str | None = None
    """Jinja chat template file used instead of the tokenizer's own (saved with the student);
    empty keeps the tokenizer's. `template: plain` uses none."""
    max_length: Annotated[int, Field(ge=8)] = 512
    """Longest prompt+response in tokens; longer rows are cut from the end of the response."""
    template: Literal["auto", "chat", "plain"] = "auto"
    """How a prompt is rendered: `chat` applies the tokenizer's chat template, `plain` uses the
    text as is, `auto` picks `chat` when the tokenizer has a template, except for TRL's
    prompt/completion rows of plain text, which are used as they are (as TRL does; docs/trl.md)."""
