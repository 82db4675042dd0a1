"""A teacher's top-k over a given response, through the teacher protocol's `score`.

    check_can_score(teacher, top_k)                     # refuse a teacher that cannot
    scored = score_top_k(teacher, pair_prompt(pair), response + eos, top_k)
    scored.token_ids, scored.ids, scored.logprobs, scored.log_tail

For teachers that are not white-box: an API that scores a completion (completions `echo`
with logprobs) and returns token ids with their top logprobs. Used by the capture of an
API teacher (every training response) and by on-policy training (the student's samples).
The log-probabilities are the teacher's at temperature 1; the tail is what the returned
top-k leave, 1 - sum(p) in float64, never 0 (`log_tail_mass`).
"""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from distil.data import Pair
from distil.signals.errors import SignalsError
from distil.signals.generation import log_tail_mass
from distil.teachers import Teacher
from distil.teachers.base import Prompt, TokenLogprob

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ScoredTopK:
    """The teacher's tokens of a scored response and its top-k at each of them."""

    token_ids: list[int]
    """The scored tokens: the teacher's own tokenization of the response text."""
    ids: np.ndarray
    """(n, k) int64: the k most likely token ids at each position."""
    logprobs: np.ndarray
    """(n, k) float32: their log-probabilities at temperature 1."""
    log_tail: np.ndarray
    """(n,) float32: log of the mass outside them."""


def check_can_score(teacher: Teacher, top_k: int, purpose: str = "a capture", ids: bool = True) -> None:
    """Refuse a teacher that cannot score with `top_k` top logprobs (and token ids, unless
    `ids` is False: the tokens are then read by their text)."""
    ability = teacher.capabilities
    if not (ability.can_score and (ability.token_ids or not ids) and ability.max_top_logprobs >= top_k):
        wanted = "token ids and " if ids else ""
        raise SignalsError(
            f"teacher {teacher.name} cannot give what {purpose} needs (scoring with {wanted}"
            f"{top_k} top logprobs; it offers scoring={ability.can_score}, ids="
            f"{ability.token_ids}, top {ability.max_top_logprobs}); lower the top-k asked for, "
            "or use a teacher that can score (completions echo with logprobs: vLLM, "
            "`distil serve`; or a local teacher)"
        )


def check_one_turn_each(pairs: Sequence[Pair]) -> None:
    """Refuse a row whose conversation holds several assistant turns: a scoring request
    scores one completion."""
    several = next(
        (p for p in pairs if p.turns is not None and sum(turn.role == "assistant" for turn in p.turns) > 1),
        None,
    )
    if several is not None:
        raise SignalsError(
            f"row {several.sample_id!r} is a conversation of several assistant "
            "turns; a scoring teacher scores one completion a request, so "
            "capture it with a local teacher, or give one turn a row"
        )


def pair_prompt(pair: Pair) -> Prompt:
    """What the teacher is asked before a pair's (first) response: the prompt, or the chat
    up to its first assistant turn."""
    if pair.turns is None:
        return pair.prompt
    roles = [turn.role for turn in pair.turns]
    return [turn.message() for turn in pair.turns[: roles.index("assistant")]]


def top_k_of(scored: Sequence[TokenLogprob], top_k: int, what: str) -> ScoredTopK:
    """The arrays of a scored response; refuse fewer than `top_k` distinct entries anywhere."""
    ids = [[entry.token_id for entry in position.top] for position in scored]
    logprobs = [[entry.logprob for entry in position.top] for position in scored]
    if any(position.token_id is None for position in scored) or any(
        len(row) != top_k or len(set(row)) != top_k or None in row for row in ids
    ):
        raise SignalsError(
            f"the teacher returned fewer than {top_k} distinct top logprobs with token ids for {what}"
        )
    return ScoredTopK(
        [int(position.token_id) for position in scored],  # type: ignore[arg-type]
        np.array(ids, dtype=np.int64).reshape(len(scored), top_k),
        np.array(logprobs, dtype=np.float32).reshape(len(scored), top_k),
        np.array([log_tail_mass(row) for row in logprobs], dtype=np.float32),
    )


def score_top_k(
    teacher: Teacher, prompt: Prompt, completion: str, top_k: int, what: str = "a response"
) -> ScoredTopK:
    """The teacher's top-k at every token of `completion` after `prompt`."""
    return top_k_of(teacher.score(prompt, completion, top_k), top_k, what)


def concurrently(teacher: Any, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` over `items` in order, on as many threads as the teacher paces requests itself
    (`teacher.concurrency`; one for a local teacher)."""
    workers = min(getattr(teacher, "concurrency", 1), len(items))
    if workers <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))
