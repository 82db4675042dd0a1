"""Capture a teacher behind an API on its own tokens, for a student of another tokenizer.

    distil capture recipe.yaml    # teacher.api + cross_tokenizer.method + signals.path: capture

The API scores each training response with the end-of-turn token appended (completions
`echo` with top logprobs, through the teacher protocol's `score`) and returns, per token of
its own tokenization, the token's text, its log-probability and its top alternatives, by
text: a provider gives no ids. So the store's teacher vocabulary is the token strings
themselves (`distil.signals.vocabulary.TokenStrings`, spelling `text`), and training maps
them to the student's tokens as it maps a tokenizer's (distil.align.vocabulary_map compares
the text each side spells). Per position the store keeps what the capture of a local
teacher keeps (`TeacherTokensSource`):

- the token (its string's id), its log-probability and its characters in the response: the
  token texts must spell the response exactly, then the end-of-turn token (offsets (-1, -1)),
  else the row is refused with an error naming it;
- its top-k by text: of alternatives that read alike the likelier is kept (as an API's
  by-string top_logprobs does), one without text is dropped, and the mass of both stays in
  the tail. Where fewer than k remain, the other entries are filler ids past the strings'
  ids (they name no string) at probability 0;
- the tail, 1 - sum(p) of the kept entries (signals.generation.log_tail_mass), at T = 1.

The end-of-turn token is teacher.api.tokenizer's end-of-sequence token; without that
tokenizer the response is scored alone and the student's end-of-turn token has no teacher
span. A response cut at the length limit (`Pair.truncated`) is scored alone too: the
teacher never ended it, and the student learns no end token after it. A sample's
`input_hash` is that of the scored text's UTF-8 bytes.
"""

import math
import os
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import numpy as np

from distil.align import spelled_offsets
from distil.data import Example, Pair
from distil.recipe import Recipe
from distil.signals import SampleSignals, SignalsError, build_fingerprint, input_hash
from distil.signals.fingerprint import FINGERPRINT_FILE, check_resumable, read_fingerprint
from distil.signals.generation import log_tail_mass
from distil.signals.recipe import capture_dir, capture_temperature, signal_identity
from distil.signals.scoring import check_can_score, check_one_turn_each, concurrently, pair_prompt
from distil.signals.shard import TeacherTokens
from distil.signals.vocabulary import TOKEN_STRINGS, TokenStrings
from distil.teachers import Teacher, endpoint_of, open_teacher
from distil.teachers.base import TokenLogprob


class ApiTeacherTokensSource:
    """Scores each row's response through the teacher protocol; its tokens by their text."""

    name = "score"
    logprob_mode = "scored-token-text"
    temperature = 1.0
    absent_positions = False

    def __init__(
        self, teacher: Teacher, pairs: list[Pair], top_k: int, end_of_turn: str | None, strings: TokenStrings
    ) -> None:
        check_can_score(teacher, top_k, "this capture", ids=False)
        check_one_turn_each(pairs)
        self.teacher, self.top_k, self.end_of_turn, self.strings = teacher, top_k, end_of_turn, strings
        self.pairs = {pair.sample_id: pair for pair in pairs}
        self.concurrency: int = getattr(teacher, "concurrency", 1)

    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        """Each example scored (concurrently when the teacher paces its own requests); the
        new token strings are saved before the samples are returned to be stored."""
        scored = concurrently(self.teacher, self._score, examples)
        samples = [self._sample(e, positions) for e, positions in zip(examples, scored, strict=True)]
        self.strings.save()
        return samples

    def _score(self, example: Example) -> list[TokenLogprob]:
        pair = self.pairs[example.sample_id]
        return self.teacher.score(pair_prompt(pair), pair.response + (self._end(pair) or ""), self.top_k)

    def _end(self, pair: Pair) -> str | None:
        """The end-of-turn token scored after the row's response (none after a cut one)."""
        return None if pair.truncated else self.end_of_turn

    def _sample(self, example: Example, scored: list[TokenLogprob]) -> SampleSignals:
        pair = self.pairs[example.sample_id]
        response, end = pair.response, self._end(pair)
        offsets = self._offsets([position.token for position in scored], response, example.sample_id, end)
        entries = [self._top(position, example.sample_id, i) for i, position in enumerate(scored)]
        ids = np.array([[i for i, _ in row] for row in entries], dtype=np.int64)
        logprobs = np.array([[lp for _, lp in row] for row in entries], dtype=np.float32)
        log_tail = np.array([log_tail_mass([lp for _, lp in row]) for row in entries], dtype=np.float32)
        tokens = TeacherTokens(
            np.array([self.strings.id_of(position.token) for position in scored], dtype=np.int32),
            np.array([position.logprob for position in scored], dtype=np.float32),
            np.array(offsets, dtype=np.int32).reshape(-1, 2),
        )
        text = response + (end or "")
        return SampleSignals(
            example.sample_id,
            input_hash(list(text.encode())),
            ids.reshape(-1, self.top_k),
            logprobs.reshape(-1, self.top_k),
            log_tail,
            tokens,
        )

    def _offsets(
        self, texts: list[str], response: str, sample_id: str, end: str | None
    ) -> list[tuple[int, int]]:
        """Each token's characters in the response; (-1, -1) for the end-of-turn token `end`."""
        ends_turn = end is not None
        if ends_turn and (not texts or texts[-1] != end):
            raise SignalsError(
                f"teacher {self.teacher.name} did not score the end-of-turn token "
                f"{end!r} as one token after sample {sample_id!r}'s response (it "
                f"read {texts[-1:]!r}); check that teacher.api.tokenizer is the served model's"
            )
        in_response = texts[:-1] if ends_turn else texts
        offsets = spelled_offsets(in_response, response)
        if offsets is None:
            spelled = "".join(in_response)
            at = len(os.path.commonprefix([spelled, response]))
            raise SignalsError(
                f"the token texts teacher {self.teacher.name} returned for sample {sample_id!r} do "
                f"not spell its response (from character {at}: {spelled[at : at + 12]!r} against "
                f"{response[at : at + 12]!r}), so its tokens cannot be placed in the text (a piece "
                "of a character shows as U+FFFD); capture it with a local teacher "
                "(capture.source: local), or leave the row out of data.train"
            )
        return offsets + [(-1, -1)] * ends_turn

    def _top(self, position: TokenLogprob, sample_id: str, index: int) -> list[tuple[int, float]]:
        """The k (string id, logprob) entries of one position, filled up with filler ids."""
        kept: dict[str, float] = {}
        for entry in sorted(position.top, key=lambda entry: -entry.logprob):
            if entry.token and len(kept) < self.top_k:
                kept.setdefault(entry.token, entry.logprob)
        if not kept:
            raise SignalsError(
                f"teacher {self.teacher.name} returned no top logprobs with token "
                f"text at position {index} of sample {sample_id!r}"
            )
        entries = [(self.strings.id_of(token), logprob) for token, logprob in kept.items()]
        fillers = range(TOKEN_STRINGS, TOKEN_STRINGS + self.top_k - len(entries))
        return entries + [(filler, -math.inf) for filler in fillers]


@contextmanager
def api_teacher_tokens(
    recipe: Recipe, pairs: list[Pair]
) -> Iterator[tuple[ApiTeacherTokensSource, dict[str, Any]]]:
    """The recipe's API teacher, probed, as a capture source over `pairs`, with the fingerprint
    of its store (`capture_dir(recipe)`); the teacher's connection closes with the block."""
    from distil.progress import console

    settings = recipe.capture
    if settings.source == "generation":
        raise SignalsError(
            "cross_tokenizer with a store: the teacher's own tokens of each response "
            "are captured by scoring it; set capture.source: score (or auto), or "
            "capture.source: local to run teacher.model in process"
        )
    path = capture_dir(recipe)
    with closing(
        open_teacher(recipe.teacher, seed=recipe.seed, probe_top_logprobs=settings.top_k)
    ) as teacher:
        for line in teacher.offers():
            console.print(line, highlight=False)
        tokenizer = getattr(teacher, "tokenizer", None)  # teacher.api.tokenizer, if named
        end_of_turn = tokenizer.eos_token if tokenizer is not None else None
        fingerprint = build_fingerprint(
            signal_identity(recipe, tokenizer, capture_temperature(recipe)),
            vocab_size=TOKEN_STRINGS + settings.top_k,
            top_k=settings.top_k,
            logprob_dtype=settings.logprob_dtype,
            source=ApiTeacherTokensSource.name,
            logprob_mode=ApiTeacherTokensSource.logprob_mode,
            provenance={
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "endpoint": endpoint_of(recipe.teacher),
                "data": recipe.data.train,
            },
        )
        fingerprint["teacher_tokens"] = True
        if (path / FINGERPRINT_FILE).is_file():  # another store there: say so before anything
            check_resumable(path, read_fingerprint(path), fingerprint)
        source = ApiTeacherTokensSource(
            teacher, pairs, settings.top_k, end_of_turn, TokenStrings(path, end_of_turn)
        )
        if end_of_turn is None:
            console.print(
                "no teacher.api.tokenizer: responses are scored without an end-of-turn "
                "token, so the student's has no teacher signal",
                highlight=False,
            )
        yield source, fingerprint
