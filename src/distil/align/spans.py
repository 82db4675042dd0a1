"""Spans of a text on which two tokenizations agree: their token boundaries meet at both ends.

Each token covers a range of characters of the text (a fast tokenizer's offset mapping).
A *boundary* of one tokenization is a character position where one of its tokens ends and
the next one starts at or after it; a position inside a character that was split into
several byte tokens is not one (those tokens share the character's offsets, so the next
token starts before the previous one ends). The boundaries both tokenizations have cut the
text into spans, and every span holds one or more tokens of each side:

    text      " 12 apples"
    teacher   " 12" | " apples"            one-to-many: " 12" against " 1", "2"
    student   " 1" "2" | " app" "les"      many-to-many: " apples" against " app", "les"

A token that crosses a boundary of the other side merges the spans on both sides of it:
the span ends only where both sides end a token. Tokens after the last common boundary (one
side was cut short, say by a length limit) belong to no span.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Offsets = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Span:
    """One span: the positions of its tokens on each side (indices into the token lists)."""

    teacher: range
    student: range


def clean_ends(offsets: Offsets) -> dict[int, int]:
    """Boundary position -> index of the last token ending there, for one tokenization.

    A token's end is a boundary when no later token starts before it. Zero-width tokens
    (special tokens with offsets (e, e)) join the token before them.
    """
    ends: dict[int, int] = {}
    later_start = None  # the smallest start of the tokens after `index`
    for index in range(len(offsets) - 1, -1, -1):
        start, end = offsets[index]
        if (later_start is None or later_start >= end) and end not in ends:
            ends[end] = index
        later_start = start if later_start is None else min(start, later_start)
    return ends


def align_spans(teacher_offsets: Offsets, student_offsets: Offsets) -> list[Span]:
    """The spans on which both tokenizations agree, in text order (module docstring).

    (n_t,) and (n_s,) (start, end) character offsets of one text's tokens -> spans, each
    with at least one token of each side.
    """
    teacher_ends, student_ends = clean_ends(teacher_offsets), clean_ends(student_offsets)
    spans, teacher_start, student_start = [], 0, 0
    for position in sorted(set(teacher_ends) & set(student_ends)):
        teacher_stop, student_stop = teacher_ends[position] + 1, student_ends[position] + 1
        if teacher_stop > teacher_start and student_stop > student_start:
            spans.append(Span(range(teacher_start, teacher_stop), range(student_start, student_stop)))
            teacher_start, student_start = teacher_stop, student_stop
    return spans


def token_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` (no special tokens) and each token's character offsets.

    Needs a fast tokenizer (one with an offset mapping): a ValueError says so otherwise.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: aligning two "
            "tokenizations needs the character offsets only fast tokenizers give"
        )
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]


def spelled_offsets(tokens: Sequence[str], text: str) -> list[tuple[int, int]] | None:
    """The character offsets of tokens given by their texts (an API's token strings), when
    they spell `text` exactly, one after another; None when they do not."""
    offsets, position = [], 0
    for token in tokens:
        if not text.startswith(token, position):
            return None
        offsets.append((position, position + len(token)))
        position += len(token)
    return offsets if position == len(text) else None
