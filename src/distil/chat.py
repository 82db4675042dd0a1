"""Chat rows: conversations read from a dataset, rendered and tokenised with assistant-only labels.

Three row layouts hold a chat (`detect_format` picks one from the columns):

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}, ...]}
    {"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}   # TRL's
    {"prompt": "text", "response": "text"}     # a single turn (column names are configurable)

A conversation is encoded turn by turn: the text before each assistant turn (the template's
rendering of the conversation so far, with the generation prompt) is masked, the assistant's
text and an end-of-turn token are labelled. Only assistant turns are learned, every one of
them. A single user/assistant turn encodes exactly as a prompt/response pair does.
"""

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from distil.errors import DataError

Turn = tuple[str, str]
"""(role, content) of one message."""

ROLES = ("system", "user", "assistant", "tool")
Format = Literal["auto", "pairs", "messages", "prompt_completion"]


def detect_format(columns: Sequence[str], prompt_field: str, response_field: str,
                  messages_field: str, wanted: Format = "auto") -> Format:
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
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects "
                        f"(got {type(value).__name__})")
    turns = []
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(f"{where}: message {number} is not a {{role, content}} object")
        role = message["role"]
        if role not in ROLES:
            raise DataError(f"{where}: message {number} has role {role!r}; use one of "
                            f"{', '.join(ROLES)}")
        turns.append((role, _content_text(message.get("content"), where, number)))
    return tuple(turns)


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
                raise DataError(f"{where}: message {number} has a {kind!r} content part; only "
                                "text parts can be trained on")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise DataError(f"{where}: message {number} content is a {type(content).__name__}, not text")


def with_system_prompt(turns: tuple[Turn, ...], system_prompt: str | None) -> tuple[Turn, ...]:
    """Turns with `system_prompt` first, unless the conversation brings its own system turn."""
    if not system_prompt or (turns and turns[0][0] == "system"):
        return turns
    return (("system", system_prompt), *turns)


def check_trainable(turns: tuple[Turn, ...], where: str) -> None:
    """A conversation must end with an assistant turn that has text, after a user turn."""
    if not any(role == "assistant" and content for role, content in turns):
        raise DataError(f"{where}: the conversation has no assistant turn with text; nothing to "
                        "learn from it (give it one, or remove the row)")
    first = next(i for i, (role, _) in enumerate(turns) if role == "assistant")
    if not any(role == "user" for role, _ in turns[:first]):
        raise DataError(f"{where}: the first assistant turn comes before any user turn")


def last_exchange(turns: tuple[Turn, ...]) -> tuple[str, str]:
    """(prompt, response): the last assistant turn and the user turn before it."""
    last = max(i for i, (role, content) in enumerate(turns) if role == "assistant" and content)
    prompt = next(content for role, content in reversed(turns[:last]) if role == "user")
    return prompt, turns[last][1]


def conversation_id(turns: tuple[Turn, ...]) -> str:
    """A stable sample id from a conversation's text (when the data has no `id` column)."""
    text = json.dumps([list(turn) for turn in turns], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_single_turn(turns: tuple[Turn, ...]) -> bool:
    """One user turn then one assistant turn, nothing else (encodes like a plain pair)."""
    return [role for role, _ in turns] == ["user", "assistant"]


def uses_chat(tokenizer: Any, template: str) -> bool:
    """Whether prompts go through the tokenizer's chat template (data.template)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has:
        raise DataError("data.template is 'chat' but the tokenizer has no chat template; "
                        "set data.template=plain or data.chat_template=FILE")
    return template == "chat" or (template == "auto" and has)


def render_context(tokenizer: Any, turns: Sequence[Turn], chat: bool) -> str:
    """The text a model sees before its next assistant turn."""
    if chat:
        messages = [{"role": role, "content": content} for role, content in turns]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return plain_context(turns)


def plain_context(turns: Sequence[Turn]) -> str:
    """Without a chat template: the system prompt, a blank line, then the other texts one a
    line; an assistant turn is its text right after the prompt and the end token ("\\x00"
    stands for it here, it is never tokenised). One user turn renders as its bare text."""
    text, previous = "", None
    for role, content in turns:
        if role == "assistant":
            text += content + "\x00"
        else:
            text += {"system": "\n\n", "user": "\n", "tool": "\n"}.get(previous or "", "") + content
        previous = role
    return text


def encode_turns(tokenizer: Any, turns: tuple[Turn, ...], template: str,
                 max_length: int) -> tuple[list[int], list[int]]:
    """input ids and labels of a conversation: assistant texts + end token labelled, the
    rest masked; cut at `max_length`, keeping at least one labelled token."""
    from distil.losses import IGNORE_INDEX

    chat = uses_chat(tokenizer, template)
    eos, eos_text = tokenizer.eos_token_id, tokenizer.eos_token or ""
    segments: list[tuple[list[int], list[int]]] = []  # (context ids, response ids)
    covered = ""
    for index, (role, content) in enumerate(turns):
        if role != "assistant" or not content:
            continue
        context = render_context(tokenizer, turns[:index], chat)
        if not context.startswith(covered):
            raise DataError("the chat template rewrites earlier turns of a conversation (the text "
                            "before a turn is not the text before the previous one plus what came "
                            "after it), so the turns cannot be labelled one by one; set "
                            "data.chat_template to a template that does not, or give one turn a row")
        delta = context[len(covered):]
        if chat and segments and eos_text and delta.startswith(eos_text):
            delta = delta[len(eos_text):]  # the end token was already emitted after the turn
        segments.append((_context_ids(tokenizer, delta, chat, first=not segments),
                         tokenizer(content, add_special_tokens=False).input_ids + [eos]))
        covered = context + content
        if not chat:
            covered += "\x00"
    first_context, first_response = segments[0]
    ids = [t for context, response in segments for t in context + response]
    labels = [t for context, response in segments
              for t in [IGNORE_INDEX] * len(context) + response]
    if len(ids) > max_length and len(first_context) >= max_length - 1:
        # the first answer would be cut away entirely: keep its prompt's end and its start
        context = first_context[-(max_length - 1):]
        ids = (context + first_response)[:max_length]
        labels = ([IGNORE_INDEX] * len(context) + first_response)[:max_length]
    return ids[:max_length], labels[:max_length]


def _context_ids(tokenizer: Any, text: str, chat: bool, first: bool) -> list[int]:
    if not text:
        return []
    return tokenizer(text, add_special_tokens=first and not chat).input_ids
