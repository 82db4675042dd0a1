"""Prompt/response datasets: read Parquet or JSONL, tokenise with masks into examples.

A row becomes an `Example`: the prompt (rendered with the chat template or as plain text)
followed by the response and an end-of-turn token; a chat row (`messages`, or TRL's
conversational prompt/completion, with `tool_calls` and a `tools` column) labels every
assistant turn (distil.chat). A response the teacher did not finish (`finish_reason`
`length`, as synth records it) gets no end-of-turn token: the student is not taught to stop
where the teacher was cut off. Other sources
(JSON arrays, save_to_disk and hub-layout folders, hub ids) are read by distil.sources.
Labels copy the input ids on response tokens and are IGNORE_INDEX on prompt and padding
tokens, so only the response is learned. Examples become micro-batches in distil.batching.
"""

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from distil import chat, inmemory, jsonl, sources
from distil.errors import DataError
from distil.losses import IGNORE_INDEX
from distil.progress import amount_bar

Template = Literal["auto", "chat", "plain"]


@dataclass(frozen=True)
class Pair:
    """One prompt/response row and its stable sample id."""

    sample_id: str
    prompt: str
    response: str
    turns: tuple[chat.Turn, ...] | None = None
    """The whole conversation, when the row is a chat or has a system prompt;
    `prompt`/`response` are then its last user and assistant texts."""
    tools: str | None = None
    """The function schemas the conversation may call (JSON), for the chat template."""
    truncated: bool = False
    """The response was cut at the length limit (`finish_reason` `length`): it is learned
    without an end-of-turn token."""
    where: str = field(default="", compare=False)
    """Where the row is (`FILE line N`), to name it in errors."""
    untemplated: bool = False
    """A TRL prompt/completion row of two strings: under data.template `auto` the prompt is
    used as it is, without the chat template, as TRL does (docs/trl.md)."""


@dataclass(frozen=True)
class Example:
    """A tokenised pair: ids of prompt+response, labels masked on the prompt."""

    sample_id: str
    input_ids: list[int]
    labels: list[int]


def read_table(path: str | Path, split: str = "train") -> pa.Table:
    """Read a dataset into one table: a Parquet file, a folder of Parquet shards, a JSONL
    file or JSON array, a save_to_disk or hub-layout folder, or a hub id (`split` of those).

    JSONL columns are every key of every row (a key a row lacks is null there); a column
    whose rows hold different JSON types is a DataError naming the first line that differs.
    A `memory:` name is a dataset passed in Python (distil.inmemory).
    """
    if inmemory.is_memory_name(path):
        return sources.table_of(inmemory.held(str(path)).value, path)
    if not Path(path).exists() and sources.looks_like_hub_id(str(path)):
        return sources.read_with_datasets(str(path), split)
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset not found: {path}; check data.train / data.eval in the recipe")
    if path.is_dir():
        if sources.is_saved_dataset(path):
            return sources.read_saved(path, split)
        shards = sorted(path.glob("*.parquet"))
        if not shards and sources.is_hub_layout(path):
            return sources.read_with_datasets(str(path), split)
        if not shards:
            raise DataError(
                f"{path} is a folder without .parquet files; point at a Parquet "
                "file, a folder of them, a save_to_disk folder, or a .jsonl file"
            )
        return pa.concat_tables([_read_parquet(s) for s in shards], promote_options="default")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in JSONL_SUFFIXES:
        return jsonl.table_from_rows(path, _json_rows(path))
    raise DataError(f"{path}: unsupported dataset format {suffix!r}; use .parquet, .jsonl or .json")


def _json_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(number, object) of a JSONL file's lines, or of a JSON array's items."""
    array = sources.read_json_array(path) if path.suffix.lower() == ".json" else None
    if array is None:
        return jsonl.read_jsonl(path)
    return list(enumerate(array, 1))


JSONL_SUFFIXES = (".jsonl", ".json")


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path} is not a readable Parquet file ({err})") from None


def load_pairs(
    path: str | Path,
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str = "messages",
    row_format: chat.Format = "auto",
    system_prompt: str | None = None,
    split: str = "train",
) -> list[Pair]:
    """Rows of a dataset as `Pair`s; ids come from an `id` column or a content hash.

    `row_format` (auto picks from the columns): `pairs`, a prompt and a response string per
    row; `messages`, an OpenAI-format conversation; `prompt_completion`, TRL's layout (two
    strings, or two message lists). Every row must hold them: a row without one, or with a
    number there, is a DataError naming how many rows and the first one. Pair rows with an
    empty response are skipped (nothing to learn from them). `system_prompt` goes first in
    every conversation that has no system turn of its own.
    """
    rows = _numbered_rows(path, split)
    if not rows:
        raise DataError(
            f"{path} is empty (no rows); point the recipe at a dataset with prompt/response pairs"
        )
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    kind = chat.detect_format(columns, prompt_field, response_field, messages_field, row_format)
    if kind == "messages":
        return _chat_pairs(path, rows, columns, [messages_field], system_prompt)
    if kind == "prompt_completion" and not all(isinstance(row.get("prompt"), str) for _, row in rows):
        return _chat_pairs(path, rows, columns, ["prompt", "completion"], system_prompt)
    if kind == "prompt_completion":
        prompt_field, response_field = "prompt", "completion"
    missing = [f for f in (prompt_field, response_field) if f not in columns]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(columns) or 'none'}); set data.prompt_field / "
            "data.response_field in the recipe, or data.messages_field for "
            "chat rows"
        )
    for name in (prompt_field, response_field):
        _check_text_field(path, rows, name)
    pairs = [
        text_pair(row, prompt_field, response_field, system_prompt, f"{path} {where}")
        for where, row in rows
        if row[response_field]
    ]
    if kind == "prompt_completion":  # TRL's text rows: not chat-templated
        pairs = [replace(p, untemplated=True) if p.turns is None else p for p in pairs]
    if not pairs:
        raise DataError(
            f"{path} has no usable rows (need non-empty text in {prompt_field!r} and {response_field!r})"
        )
    return pairs


def text_pair(
    row: dict[str, Any], prompt_field: str, response_field: str, system_prompt: str | None, where: str
) -> Pair:
    """A prompt/response row (its two fields checked to be strings) as a Pair."""
    sample_id = _sample_id(row, prompt_field, response_field)
    prompt, response = row[prompt_field], row[response_field]
    if not system_prompt:
        return Pair(sample_id, prompt, response, truncated=_cut_off(row), where=where)
    turns = (chat.Turn("system", system_prompt), chat.Turn("user", prompt), chat.Turn("assistant", response))
    if row.get("id") is None:  # another text than without the system prompt: another id
        sample_id = chat.conversation_id(turns)
    return Pair(sample_id, prompt, response, turns, truncated=_cut_off(row), where=where)


def _cut_off(row: dict[str, Any]) -> bool:
    """Whether the row's response was cut at the length limit (synth's `finish_reason`)."""
    return row.get("finish_reason") == "length"


def _chat_pairs(
    path: str | Path,
    rows: list[tuple[str, dict[str, Any]]],
    columns: list[str],
    fields: list[str],
    system_prompt: str | None,
) -> list[Pair]:
    """Conversation rows: `fields` hold message lists, joined in order."""
    missing = [f for f in fields if f not in columns]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(columns)}); set data.messages_field in the recipe"
        )
    return [chat_pair(row, fields, system_prompt, f"{path} {where}") for where, row in rows]


def chat_pair(row: dict[str, Any], fields: list[str], system_prompt: str | None, where: str) -> Pair:
    """A conversation row (`fields` hold message lists, joined in order) as a Pair."""
    turns = tuple(turn for f in fields for turn in chat.parse_messages(row.get(f), f"{where}: {f!r}"))
    turns = chat.with_system_prompt(turns, system_prompt)
    chat.check_trainable(turns, where)
    tools = chat.parse_tools(row.get("tools"), where)
    prompt, response = chat.last_exchange(turns)
    single = chat.is_single_turn(turns) and not tools  # the same row as a plain pair
    sample_id = (
        str(row["id"])
        if row.get("id") is not None
        else content_id(prompt, response)
        if single
        else chat.conversation_id(turns, tools)
    )
    return Pair(sample_id, prompt, response, None if single else turns, tools, _cut_off(row), where)


def _numbered_rows(path: str | Path, split: str = "train") -> list[tuple[str, dict[str, Any]]]:
    """Each row with where it is: "line N" of a JSONL file, "row N" of Parquet data."""
    file = Path(path)
    if file.is_file() and file.suffix.lower() in JSONL_SUFFIXES:
        kind = "item" if file.suffix.lower() == ".json" and sources.is_json_array(file) else "line"
        return [(f"{kind} {number}", row) for number, row in _json_rows(file)]
    return [(f"row {number}", row) for number, row in enumerate(read_table(path, split).to_pylist(), 1)]


def _check_text_field(path: Path, rows: list[tuple[str, dict[str, Any]]], field: str) -> None:
    lacking = [where for where, row in rows if row.get(field) is None]
    if lacking:
        raise DataError(
            f"{path}: {len(lacking)} of {len(rows)} rows have no {field!r} (first: "
            f"{lacking[0]}); give every row a {field!r} string or remove those rows"
        )
    wrong = [(where, row[field]) for where, row in rows if not isinstance(row[field], str)]
    if wrong:
        where, value = wrong[0]
        raise DataError(
            f"{path} {where}: {field!r} is a {jsonl.json_type(value)} "
            f"({value!r:.40}), not a string ({len(wrong)} such rows); quote it as text"
        )


def _sample_id(row: dict[str, Any], prompt_field: str, response_field: str) -> str:
    if row.get("id") is not None:
        return str(row["id"])
    return content_id(row[prompt_field], row[response_field])


def content_id(prompt: str, response: str) -> str:
    """A stable sample id from the row's text (used when the data has no `id` column)."""
    return hashlib.sha256(f"{prompt}\x00{response}".encode()).hexdigest()[:16]


def split_pairs(pairs: list[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Seeded train/held-out split; the held-out part has at least one row when asked for."""
    if eval_fraction == 0 or len(pairs) < 2:
        return pairs, []
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(pairs) - 1, max(1, round(eval_fraction * len(pairs))))
    held = set(order[:n_eval])
    return ([p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held])


def render_prompt(tokenizer: Any, prompt: str, template: Template) -> tuple[str, bool]:
    """The prompt text the model sees, and whether the tokenizer should add special tokens."""
    use_chat = template == "chat" or (template == "auto" and getattr(tokenizer, "chat_template", None))
    if not use_chat:
        return prompt, True
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "data.template is 'chat' but the tokenizer has no chat template; set data.template=plain"
        )
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False


def encode_pairs(tokenizer: Any, pairs: list[Pair], template: Template, max_length: int) -> list[Example]:
    """Tokenise pairs: prompt ids (masked) + response ids + eos (none after a truncated
    response), cut to `max_length`; conversations label each assistant turn
    (distil.chat.encode_turns)."""
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no eos token to end responses with")
    simple = [p for p in pairs if p.turns is None]
    encoded: dict[int, Example] = {}
    with _encoding_bar(len(simple)) as advance:
        for start in range(0, len(simple), ENCODE_CHUNK):  # the tokenizer's output is large
            chunk = simple[start : start + ENCODE_CHUNK]
            encoded.update(_encode_simple(tokenizer, chunk, template, max_length))
            advance(len(chunk))
    examples = []
    for pair in pairs:
        if pair.turns is None:
            examples.append(encoded[id(pair)])
        else:
            ids, labels = chat.encode_turns(
                tokenizer,
                pair.turns,
                template,
                max_length,
                tools=pair.tools,
                open_end=pair.truncated,
                where=pair.where or f"row {pair.sample_id!r}",
            )
            examples.append(Example(pair.sample_id, ids, labels))
    return examples


ENCODE_CHUNK = 1024
"""Rows tokenised in one call: a fast tokenizer's full output (tokens, offsets, masks) for all
rows at once took 25 KB a row, 1.1 GB for 45,000 short rows."""
ENCODE_PROGRESS_ROWS = 20_000
"""Rows from which tokenising shows a progress bar (it takes seconds)."""


def _encoding_bar(rows: int) -> AbstractContextManager[Callable[[int], None]]:
    """A progress bar over tokenising `rows` rows when there are many (else silent)."""
    if rows < ENCODE_PROGRESS_ROWS:
        return nullcontext(lambda done: None)
    return amount_bar("data: tokenising", rows)


def _encode_simple(
    tokenizer: Any, simple: list[Pair], template: Template, max_length: int
) -> dict[int, Example]:
    """Examples of prompt/response pairs, keyed by id(pair)."""
    prompt_ids = _prompt_ids(
        tokenizer,
        [
            render_prompt(tokenizer, p.prompt, "plain" if p.untemplated and template == "auto" else template)
            for p in simple
        ],
    )
    response_ids = tokenizer([p.response for p in simple], add_special_tokens=False).input_ids
    encoded = {}
    for pair, prompt, response in zip(simple, prompt_ids, response_ids, strict=True):
        response = response + ([] if pair.truncated else [tokenizer.eos_token_id])
        prompt = prompt[-(max_length - 1) :]  # keep at least one response token
        response = response[: max_length - len(prompt)]
        encoded[id(pair)] = Example(
            pair.sample_id, prompt + response, [IGNORE_INDEX] * len(prompt) + response
        )
    return encoded


def _prompt_ids(tokenizer: Any, rendered: list[tuple[str, bool]]) -> list[list[int]]:
    """Token ids of rendered prompts, each with its special tokens or not as its rendering
    says (one batched call for each)."""
    ids = {
        flag: iter(tokenizer(rows, add_special_tokens=flag).input_ids if rows else [])
        for flag in (True, False)
        for rows in [[t for t, f in rendered if f == flag]]
    }
    return [next(ids[flag]) for _, flag in rendered]
