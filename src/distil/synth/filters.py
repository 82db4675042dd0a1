"""Response filters: why a teacher response is not kept, as a reason code and a detail.

    reason = judge(completion, recipe.synth.filters, max_new_tokens=256)
    # None (keep), or Rejection("truncated", "finish_reason=length at max_new_tokens=256")

Reason codes (the `reason` column of the rejects file): empty, truncated, content_filter,
refusal, too_short, too_long; the stage adds request_failed, empty_prompt, near_duplicate.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from distil.recipe.synth import FiltersSection
from distil.teachers.base import Completion


@dataclass(frozen=True)
class Rejection:
    """Why a row was dropped: a stable code and a human detail."""

    reason: str
    detail: str


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def judge(completion: Completion, filters: FiltersSection, max_new_tokens: int) -> Rejection | None:
    """The first filter the completion fails, or None when it is kept."""
    text = completion.text
    if filters.drop_empty and not text.strip():
        return Rejection("empty", "the response is empty or whitespace")
    if filters.drop_truncated and completion.finish_reason == "length":
        return Rejection("truncated", f"finish_reason=length at max_new_tokens={max_new_tokens}")
    if completion.finish_reason == "content_filter":
        return Rejection("content_filter", "the provider's content filter withheld the response")
    for pattern in _compiled(tuple(filters.refusal_patterns)):
        match = pattern.search(text)
        if match:
            return Rejection("refusal", f"matched {pattern.pattern!r}: {match.group(0)!r}")
    return _bounds(text, completion.usage.completion_tokens, filters)


def _bounds(text: str, tokens: int, filters: FiltersSection) -> Rejection | None:
    chars = len(text.strip())
    if chars < filters.min_chars:
        return Rejection("too_short", f"{chars} characters < filters.min_chars={filters.min_chars}")
    if filters.max_chars is not None and chars > filters.max_chars:
        return Rejection("too_long", f"{chars} characters > filters.max_chars={filters.max_chars}")
    if tokens < filters.min_tokens:
        return Rejection("too_short", f"{tokens} tokens < filters.min_tokens={filters.min_tokens}")
    if filters.max_tokens is not None and tokens > filters.max_tokens:
        return Rejection("too_long", f"{tokens} tokens > filters.max_tokens={filters.max_tokens}")
    return None


def judge_instruction(
    raw: str, instruction: str, finish_reason: str, filters: FiltersSection
) -> Rejection | None:
    """Whether a self-instruct reply yields a usable new prompt (`instruction`, cleaned from `raw`)."""
    if not instruction:
        return Rejection("empty", "the expansion reply holds no instruction")
    if finish_reason == "length" and "\n" not in raw.strip():
        return Rejection("truncated", "the instruction was cut at max_new_tokens")
    for pattern in _compiled(tuple(filters.refusal_patterns)):
        match = pattern.search(instruction)
        if match:
            return Rejection("refusal", f"matched {pattern.pattern!r}: {match.group(0)!r}")
    return None
