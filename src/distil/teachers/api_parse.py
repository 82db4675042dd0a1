"""Turn OpenAI-style responses (chat and completions) into the teacher protocol's types.

Token ids come from the server when it sends them (`token_id` in chat logprobs, or `id` as
llama.cpp's llama-server names it; `token_ids`, `top_token_ids`, `top_token_logprobs` in
completions logprobs: extensions `distil serve` adds), else from the token strings (and
bytes) through a `TokenMap` when the recipe names the teacher's tokenizer; otherwise they
stay None. A response missing what it must carry (choices, text) raises
`MalformedResponse`, which the client retries like a transport error.
"""

from collections.abc import Callable
from typing import Any

from distil.teachers.base import Completion, TokenLogprob, TopLogprob, Usage

IdOf = Callable[[str, list[int] | None], int | None]


class MalformedResponse(Exception):
    """The server answered, but not with a usable completion."""


class NoPromptLogprobs(MalformedResponse):
    """A well-formed echo that carries no logprobs for the prompt: the server ignores echo
    (the start-up probe takes it as "cannot score"; scoring retries it like any malformed reply)."""


def _no_id(token: str, token_bytes: list[int] | None = None) -> None:
    return None


def _item_id(item: Any, id_of: IdOf) -> int | None:
    """A chat logprob item's id: the server's `token_id` (llama-server: `id`) if sent, else
    mapped from its text (an end-of-turn token often reads as "", which maps to nothing)."""
    for field in ("token_id", "id"):
        given = getattr(item, field, None)
        if isinstance(given, int) and not isinstance(given, bool):
            return given
    return id_of(item.token, getattr(item, "bytes", None))


def usage_of(
    response: Any, prompt_estimate: int, text: str, logprobs: tuple[TokenLogprob, ...] | None
) -> Usage:
    """The server's usage; an estimate when it reports none (~4 characters per token)."""
    usage = getattr(response, "usage", None)
    if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
        return Usage(int(usage.prompt_tokens), int(usage.completion_tokens or 0))
    return Usage(prompt_estimate, len(logprobs) if logprobs is not None else -(-len(text) // 4))


def first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponse("the response holds no choices")
    return choices[0]


def chat_completion(response: Any, id_of: IdOf | None, prompt_estimate: int) -> Completion:
    """A chat.completions response as a `Completion` (logprobs when the server sent them)."""
    choice = first_choice(response)
    message = getattr(choice, "message", None)
    if message is None:
        raise MalformedResponse("the choice holds no message")
    text = message.content or ""
    id_of = id_of or _no_id
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    logprobs = None
    if content is not None:
        logprobs = tuple(
            TokenLogprob(
                _item_id(item, id_of),
                item.token,
                float(item.logprob),
                _sorted_top((_item_id(t, id_of), t.token, float(t.logprob)) for t in item.top_logprobs or []),
            )
            for item in content
        )
    return Completion(
        text=text,
        token_ids=_ids(logprobs),
        finish_reason=choice.finish_reason or "stop",
        usage=usage_of(response, prompt_estimate, text, logprobs),
        logprobs=logprobs,
    )


def text_completion(response: Any, id_of: IdOf | None, prompt_estimate: int) -> Completion:
    """A completions response as a `Completion`."""
    choice = first_choice(response)
    text = getattr(choice, "text", None)
    if text is None:
        raise MalformedResponse("the choice holds no text")
    raw = getattr(choice, "logprobs", None)
    logprobs = None
    if raw is not None and raw.tokens is not None:
        logprobs = _completion_logprobs(raw, range(len(raw.tokens)), id_of or _no_id)
    return Completion(
        text=text,
        token_ids=_ids(logprobs),
        finish_reason=choice.finish_reason or "stop",
        usage=usage_of(response, prompt_estimate, text, logprobs),
        logprobs=logprobs,
    )


def echoed_logprobs(response: Any, start: int, end: int, id_of: IdOf | None) -> list[TokenLogprob]:
    """Logprobs of the echoed tokens whose text starts in [start, end) of the echoed prompt."""
    raw = getattr(first_choice(response), "logprobs", None)
    if raw is None or not raw.tokens or raw.token_logprobs is None:
        raise NoPromptLogprobs("the echo response holds no prompt logprobs")
    offsets = raw.text_offset or _offsets(raw.tokens)
    positions = [i for i, offset in enumerate(offsets) if start <= offset < end]
    if any(raw.token_logprobs[i] is None for i in positions):
        raise NoPromptLogprobs("the echo response lacks a logprob for a scored token")
    return list(_completion_logprobs(raw, positions, id_of or _no_id))


def _completion_logprobs(raw: Any, positions: Any, id_of: IdOf) -> tuple[TokenLogprob, ...]:
    tops = raw.top_logprobs or []
    ids = getattr(raw, "token_ids", None)
    top_ids = getattr(raw, "top_token_ids", None)
    top_values = getattr(raw, "top_token_logprobs", None)
    out = []
    for i in positions:
        top = tops[i] if i < len(tops) and tops[i] else {}
        token = raw.tokens[i]
        token_id = ids[i] if ids is not None else id_of(token, None)
        if top_ids is not None and top_values is not None and top_ids[i] is not None:
            # exact ids: the by-string dict loses candidates that read alike
            names = {round(v, 6): t for t, v in top.items()}
            alternatives = _sorted_top(
                (j, names.get(round(v, 6), ""), float(v))
                for j, v in zip(top_ids[i], top_values[i], strict=True)
            )
        else:
            alternatives = _sorted_top((id_of(t, None), t, float(v)) for t, v in top.items())
        out.append(TokenLogprob(token_id, token, float(raw.token_logprobs[i]), alternatives))
    return tuple(out)


def _sorted_top(items: Any) -> tuple[TopLogprob, ...]:
    return tuple(sorted((TopLogprob(*item) for item in items), key=lambda t: -t.logprob))


def _ids(logprobs: tuple[TokenLogprob, ...] | None) -> tuple[int, ...] | None:
    """Token ids of a completion when every token mapped; None otherwise."""
    if logprobs is None or any(t.token_id is None for t in logprobs):
        return None
    return tuple(t.token_id for t in logprobs if t.token_id is not None)


def _offsets(tokens: list[str]) -> list[int]:
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return offsets
