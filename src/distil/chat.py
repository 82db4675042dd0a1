"""Chat rows: conversations read from a dataset, rendered and tokenised with assistant-only labels.

Three row layouts hold a chat (`detect_format` picks one from the columns):

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}, ...]}
    {"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}   # TRL's
    {"prompt": "text", "response": "text"}     # a single turn (column names are configurable)

A conversation is encoded turn by turn: the text before each assistant turn (the template's
rendering of the conversation so far, with the generation prompt) is masked, the assistant's
text and an end-of-turn token are labelled. Only assistant turns are learned, every one of
them; system, user and tool turns are context. A single user/assistant turn encodes exactly
as a prompt/response pair does.

Tool use, in the layout TRL and transformers read: an assistant message's `tool_calls`
(OpenAI format), `tool` messages with the results, and a `tools` column of function
schemas. Both go to the tokenizer's chat template (`apply_chat_template(..., tools=...)`);
an assistant turn that calls tools is learned as the template renders it, up to its
end-of-turn token, which is what TRL's assistant-only loss learns with a template that marks
assistant text with `{% generation %}`. A template that does not render the calls or the
schemas (most small models' templates) is refused, naming the row: nothing is dropped
silently.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distil.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
Format = Literal["auto", "pairs", "messages", "prompt_completion"]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    content: str
    tool_calls: str | None = None
    """An assistant turn's tool calls, the message's `tool_calls` list as JSON."""
    tool_call_id: str | None = None
    """A tool turn: the call it answers."""
    name: str | None = None
    """A tool turn: the tool that answered."""

    @property
    def learned(self) -> bool:
        """An assistant turn with something to learn: text, tool calls or both."""
        return self.role == "assistant" and bool(self.content or self.tool_calls)

    def message(self) -> dict[str, Any]:
        """The message as a chat template reads it."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls is not None:
            message["tool_calls"] = json.loads(self.tool_calls)
        for key in ("tool_call_id", "name"):
            if getattr(self, key) is not None:
                message[key] = getattr(self, key)
        return message

    def identity(self) -> list[Any]:
        """What the sample id hashes: [role, content], then the tool fields it has."""
        extra = [
            [k, v]
            for k, v in (
                ("tool_calls", self.tool_calls),
                ("tool_call_id", self.tool_call_id),
                ("name", self.name),
            )
            if v is not None
        ]
        return [self.role, self.content, *extra]


def detect_format(
    columns: Sequence[str],
    prompt_field: str,
    response_field: str,
    messages_field: str,
    wanted: Format = "auto",
) -> Format:
    """The row layout: `wanted` unless auto, else from which columns the data has."""
    if wanted != "auto":
        return wanted
    if prompt_field in columns and response_field in columns:
        return "pairs"
    if messages_field in columns:
        return "messages"
    if "prompt" in columns and "completion" in columns:
        return "prompt_completion"
    return "pairs"


def parse_messages(value: Any, where: str) -> tuple[Turn, ...]:
    """An OpenAI-format message list as (role, content) turns; DataError naming the row."""
    if not isinstance(value, list | tuple) or not value:
        raise DataError(
            f"{where}: messages must be a non-empty list of {{role, content}} objects "
            f"(got {type(value).__name__})"
        )
    turns = []
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(f"{where}: message {number} is not a {{role, content}} object")
        role = message["role"]
        if role not in ROLES:
            raise DataError(f"{where}: message {number} has role {role!r}; use one of {', '.join(ROLES)}")
        calls = _tool_calls(message.get("tool_calls"), role, where, number)
        turns.append(
            Turn(
                role,
                _content_text(message.get("content"), where, number),
                calls,
                _optional_text(message, "tool_call_id"),
                _optional_text(message, "name"),
            )
        )
    return tuple(turns)


def _tool_calls(value: Any, role: str, where: str, number: int) -> str | None:
    """An assistant message's tool calls as JSON (None when it makes none)."""
    if value is None or (isinstance(value, list | tuple) and not value):
        return None
    calls = value if isinstance(value, list | tuple) else None
    if (
        role != "assistant"
        or calls is None
        or not all(
            isinstance(c, dict)
            and isinstance(c.get("function"), dict)
            and isinstance(c["function"].get("name"), str)
            for c in calls
        )
    ):
        raise DataError(
            f"{where}: message {number} has tool_calls that are not an assistant's "
            "list of {type: function, function: {name, arguments}} objects; write "
            "them in the OpenAI format"
        )
    return json.dumps(list(calls), ensure_ascii=False)


def _optional_text(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    return None if value is None else str(value)


def parse_tools(value: Any, where: str) -> str | None:
    """A row's `tools` (function schemas: a list, or that list as a JSON string) as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, list | tuple) or not all(isinstance(t, dict) for t in value):
        raise DataError(
            f"{where}: 'tools' is not a list of function schemas (objects, or that "
            "list as a JSON string); fix the column or remove it"
        )
    return json.dumps(list(value), ensure_ascii=False) if value else None


def _content_text(content: Any, where: str, number: int) -> str:
    """Message content as text: a string, or a list of {type: text, text} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise DataError(
                    f"{where}: message {number} has a {kind!r} content part; only "
                    "text parts can be trained on"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise DataError(f"{where}: message {number} content is a {type(content).__name__}, not text")


def with_system_prompt(turns: tuple[Turn, ...], system_prompt: str | None) -> tuple[Turn, ...]:
    """Turns with `system_prompt` first, unless the conversation brings its own system turn."""
    if not system_prompt or (turns and turns[0].role == "system"):
        return turns
    return (Turn("system", system_prompt), *turns)


def check_trainable(turns: tuple[Turn, ...], where: str) -> None:
    """A conversation must hold an assistant turn with text or tool calls, after a user turn."""
    if not any(turn.learned for turn in turns):
        raise DataError(
            f"{where}: the conversation has no assistant turn with text or tool "
            "calls; nothing to learn from it (give it one, or remove the row)"
        )
    first = next(i for i, turn in enumerate(turns) if turn.role == "assistant")
    if not any(turn.role == "user" for turn in turns[:first]):
        raise DataError(f"{where}: the first assistant turn comes before any user turn")


def last_exchange(turns: tuple[Turn, ...]) -> tuple[str, str]:
    """(prompt, response): the last learned assistant turn's text and the user turn before it."""
    last = max(i for i, turn in enumerate(turns) if turn.learned)
    prompt = next(turn.content for turn in reversed(turns[:last]) if turn.role == "user")
    return prompt, turns[last].content


def conversation_id(turns: tuple[Turn, ...], tools: str | None = None) -> str:
    """A stable sample id from a conversation's text (when the data has no `id` column)."""
    identity = [turn.identity() for turn in turns] + ([["tools", tools]] if tools else [])
    text = json.dumps(identity, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_single_turn(turns: tuple[Turn, ...]) -> bool:
    """One user turn then one assistant text turn, nothing else (encodes like a plain pair)."""
    return [turn.role for turn in turns] == ["user", "assistant"] and not any(
        turn.tool_calls for turn in turns
    )


def uses_chat(tokenizer: Any, template: str) -> bool:
    """Whether prompts go through the tokenizer's chat template (data.template)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has:
        raise DataError(
            "data.template is 'chat' but the tokenizer has no chat template; "
            "set data.template=plain or data.chat_template=FILE"
        )
    return template == "chat" or (template == "auto" and has)


def render_context(tokenizer: Any, turns: Sequence[Turn], chat: bool, tools: list[Any] | None = None) -> str:
    """The text a model sees before its next assistant turn."""
    if chat:
        return tokenizer.apply_chat_template(
            [turn.message() for turn in turns], tools=tools, tokenize=False, add_generation_prompt=True
        )
    return plain_context(turns)


def plain_context(turns: Sequence[Turn]) -> str:
    """Without a chat template: the system prompt, a blank line, then the other texts one a
    line; an assistant turn is its text right after the prompt and the end token ("\\x00"
    stands for it here, it is never tokenised). One user turn renders as its bare text."""
    text, previous = "", None
    for turn in turns:
        if turn.role == "assistant":
            text += turn.content + "\x00"
        else:
            text += {"system": "\n\n", "user": "\n", "tool": "\n"}.get(previous or "", "") + turn.content
        previous = turn.role
    return text


def encode_turns(
    tokenizer: Any,
    turns: tuple[Turn, ...],
    template: str,
    max_length: int,
    *,
    tools: str | None = None,
    open_end: bool = False,
    where: str = "a conversation",
) -> tuple[list[int], list[int]]:
    """input ids and labels of a conversation: each assistant turn (its text, or its tool
    calls as the template renders them) and its end token labelled, the rest masked; cut at
    `max_length`, keeping at least one labelled token. `tools`: the row's function schemas
    (JSON); `open_end`: the last assistant turn was cut at the length limit, so it gets no
    end token (the teacher never ended it); `where` names the row in errors."""
    from distil.losses import IGNORE_INDEX

    chat = uses_chat(tokenizer, template)
    schemas = _check_tools(tokenizer, turns, tools, chat, where)
    eos, eos_text = tokenizer.eos_token_id, tokenizer.eos_token or ""
    last = max(i for i, turn in enumerate(turns) if turn.learned)
    segments: list[tuple[list[int], list[int]]] = []  # (context ids, response ids)
    covered = ""
    for index, turn in enumerate(turns):
        if not turn.learned:
            continue
        context = render_context(tokenizer, turns[:index], chat, schemas)
        if not context.startswith(covered):
            raise DataError(
                f"{where}: the chat template rewrites earlier turns of a conversation "
                "(the text before a turn is not the text before the previous one plus "
                "what came after it), so the turns cannot be labelled one by one; set "
                "data.chat_template to a template that does not, or give one turn a row"
            )
        delta = context[len(covered) :]
        if chat and segments and eos_text and delta.startswith(eos_text):
            delta = delta[len(eos_text) :]  # the end token was already emitted after the turn
        text = (
            _tool_turn_text(tokenizer, turns[: index + 1], schemas, context, where)
            if turn.tool_calls
            else turn.content
        )
        end = [] if open_end and index == last else [eos]
        segments.append(
            (
                _context_ids(tokenizer, delta, chat, first=not segments),
                tokenizer(text, add_special_tokens=False).input_ids + end,
            )
        )
        covered = context + text + ("" if chat else "\x00")
    first_context, first_response = segments[0]
    ids = [t for context, response in segments for t in context + response]
    labels = [t for context, response in segments for t in [IGNORE_INDEX] * len(context) + response]
    if len(ids) > max_length and len(first_context) >= max_length - 1:
        # the first answer would be cut away entirely: keep its prompt's end and its start
        context = first_context[-(max_length - 1) :]
        ids = (context + first_response)[:max_length]
        labels = ([IGNORE_INDEX] * len(context) + first_response)[:max_length]
    return ids[:max_length], labels[:max_length]


def _check_tools(
    tokenizer: Any, turns: tuple[Turn, ...], tools: str | None, chat: bool, where: str
) -> list[Any] | None:
    """The row's function schemas, refused where the template would drop them or the calls."""
    calls = any(turn.tool_calls for turn in turns)
    if not chat and (calls or tools):
        raise DataError(
            f"{where}: the row uses tools, which only a chat template can render, and "
            "data.template is plain (or the tokenizer has no chat template); set "
            "data.chat_template to a template that renders tools and tool_calls, or "
            "remove the row"
        )
    schemas = json.loads(tools) if tools else None
    if schemas:
        first = [turns[0].message()]
        if tokenizer.apply_chat_template(
            first, tools=schemas, tokenize=False
        ) == tokenizer.apply_chat_template(first, tokenize=False):
            raise DataError(
                f"{where}: the row gives 'tools' (function schemas), but the chat "
                "template does not render them, so the student would learn calls to "
                "tools it was never shown; set data.chat_template to a template that "
                "renders tools, or remove the column"
            )
    return schemas


def _tool_turn_text(
    tokenizer: Any, turns: tuple[Turn, ...], tools: list[Any] | None, context: str, where: str
) -> str:
    """The last turn (an assistant's, calling tools) as the template renders it after
    `context`, up to its end-of-turn token: what is learned of it."""
    full = tokenizer.apply_chat_template([turn.message() for turn in turns], tools=tools, tokenize=False)
    eos_text = tokenizer.eos_token or ""
    text, end, _ = full[len(context) :].partition(eos_text or "\x00")
    names = [call["function"]["name"] for call in json.loads(turns[-1].tool_calls or "[]")]
    if not full.startswith(context) or not end or not all(name in text for name in names):
        raise DataError(
            f"{where}: message {len(turns)}, an assistant turn, calls tools "
            f"({', '.join(names)}), but the chat template does not render the calls "
            "(their names are not in its text of the turn, before the end token); set "
            "data.chat_template to a template that renders tool_calls, or remove the row"
        )
    return text


def _context_ids(tokenizer: Any, text: str, chat: bool, first: bool) -> list[int]:
    if not text:
        return []
    return tokenizer(text, add_special_tokens=first and not chat).input_ids
