"""Tokens on the wire: each token's string and bytes, and logprobs in both OpenAI shapes.

A token's string is what the tokenizer decodes it to alone (`tokenizer.decode([id])`), so a
token holding part of a multi-byte character reads as U+FFFD; its `bytes` are the raw bytes
it stands for, which concatenate to the exact text. Both shapes also carry the token ids
(an extension, see docs/serve.md), for clients that hold the same tokenizer:

    chat:        {"token", "logprob", "bytes", "token_id", "top_logprobs": [{..., "token_id"}]}
    completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset",
                  "token_ids", "top_token_ids", "top_token_logprobs"}
"""

import json
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from distil.teachers import TokenLogprob

LOGPROB_FLOOR = -9999.0
"""What OpenAI answers for a logprob too small to represent; JSON has no -inf."""

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character table (byte-level BPE)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    byte_values, chars = list(printable), list(printable)
    for value in range(256):
        if value not in printable:
            byte_values.append(value)
            chars.append(256 + len(chars) - len(printable))
    return {chr(char): value for value, char in zip(byte_values, chars, strict=True)}


def _decoder_types(tokenizer: Any) -> set[str]:
    """The kinds of the fast tokenizer's decoder (ByteLevel, ByteFallback, Metaspace, ...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    pending, kinds = [json.loads(backend.to_str()).get("decoder") or {}], set()
    while pending:
        decoder = pending.pop()
        kinds.add(decoder.get("type"))
        pending.extend(decoder.get("decoders") or [])
    return kinds


class TokenText:
    """Each token's string and bytes for one tokenizer, cached by id."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._kinds = _decoder_types(tokenizer)
        # Added tokens (chat markers, ...) are stored as plain text, outside the byte mapping.
        self._added = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", ()))
        self.text = lru_cache(maxsize=1 << 16)(self._text)
        self.bytes = lru_cache(maxsize=1 << 16)(self._bytes)

    def _text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def _bytes(self, token_id: int) -> list[int]:
        raw = self.tokenizer.convert_ids_to_tokens(token_id)
        if token_id not in self._added and isinstance(raw, str):
            if "ByteLevel" in self._kinds:
                table = _byte_level_decoder()
                if all(char in table for char in raw):
                    return [table[char] for char in raw]
            if "ByteFallback" in self._kinds and (match := _BYTE_FALLBACK.fullmatch(raw)):
                return [int(match.group(1), 16)]
            if self._kinds & {"Metaspace", "Replace"}:  # SentencePiece: "▁" is a space
                return list(raw.replace("\u2581", " ").encode())
        return list(self.text(token_id).encode())


def finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else LOGPROB_FLOOR


def chat_logprobs(entries: Sequence[TokenLogprob], top_k: int, text: TokenText) -> list[dict]:
    """`choices[i].logprobs.content` of a chat completion."""

    def item(token_id: int, token: str, logprob: float) -> dict[str, Any]:
        return {
            "token": token,
            "logprob": finite(logprob),
            "bytes": text.bytes(token_id),
            "token_id": token_id,
        }

    return [
        {
            **item(entry.token_id, entry.token, entry.logprob),
            "top_logprobs": [item(top.token_id, top.token, top.logprob) for top in entry.top[:top_k]],
        }
        for entry in entries
    ]


def legacy_logprobs(
    entries: Sequence[TokenLogprob | None],
    token_ids: Sequence[int],
    top_k: int,
    text: TokenText,
    offset: int = 0,
) -> dict[str, Any]:
    """`choices[i].logprobs` of a text completion; an entry of None (the first echoed prompt
    token, which nothing predicts) answers null logprobs.

    `text_offset` is each token's start in the choice's text, counted as the lengths of the
    token strings before it (exact unless a character is split across tokens).
    """
    tokens = [text.text(token_id) for token_id in token_ids]
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    tops = [None if e is None else e.top[:top_k] for e in entries]
    return {
        "tokens": tokens,
        "token_logprobs": [None if e is None else finite(e.logprob) for e in entries],
        "top_logprobs": [None if top is None else _by_string(top) for top in tops],
        "text_offset": offsets,
        "token_ids": list(token_ids),
        "top_token_ids": [None if top is None else [t.token_id for t in top] for top in tops],
        "top_token_logprobs": [None if top is None else [finite(t.logprob) for t in top] for top in tops],
    }


def _by_string(top: Sequence[Any]) -> dict[str, float]:
    """Legacy top-k keyed by token string; when two tokens read the same, the likelier wins."""
    by_string: dict[str, float] = {}
    for candidate in top:
        by_string.setdefault(candidate.token, finite(candidate.logprob))
    return by_string
