"""Signals from the logprobs a teacher returned while generating: no request is sent again.

An API teacher that cannot score given text (no `echo` with logprobs) can still return the
top-k logprobs of each token it generates. `distil synth` keeps them in the dataset's
`token_logprobs` column (set `synth.sampling.top_logprobs`); `GenerationLogprobsSource`
turns them into a store. Each row's generated token ids must be the tokens training sees
(its response re-tokenised, then the end-of-turn token that closes it).

Every stored position holds what the teacher returned, never an invented distribution.
Where it returned none, the position is stored *absent* (format version 2,
docs/signals-format.md): the positions after the last one it reported (hosted chat APIs
report no logprob for the end-of-turn token; llama-server none for the tokens of a stop
string), and a position it reported without alternatives. Training skips the divergence
there (docs/training.md). The returned tokens must be the first training tokens, in order.

A sampling teacher can generate a token sequence that re-tokenising its own text does not
give (" Hel" + "lo" where the tokenizer writes " Hello"). Up to and including the first
position where the two differ, the teacher saw the very prefix training feeds the student,
so its distribution there is kept; after it the teacher was conditioned on other tokens,
and those positions are stored absent (the cross-entropy on the text still trains them).
The rows and positions this cost are counted (`diverged_rows`, `diverged_positions`) and
the capture says so. A batch in which every row differs from its first token on is not a
sampling accident but a tokenizer that is not the teacher's: refused, naming the fix.

The tail (the probability outside the returned top-k) is 1 - sum(p) of the returned
probabilities, computed in float64 as -expm1(logsumexp(logprobs)), so a tail far below
float64's resolution next to 1 keeps its size. When the returned values leave nothing
(1 - sum(p) <= 0: the server rounded them, e.g. a logprob of 0.0 for p = 1 - 1e-9), the
teacher's true tail is still positive (an API's top-k never covers its vocabulary), and
it is stored as `TAIL_FLOOR` rather than 0, which would make reverse-type divergences
infinite. The reader renormalises the k probabilities and the tail to sum to one.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np

from distil.data import Example, read_table
from distil.losses import IGNORE_INDEX
from distil.signals.errors import SignalsError
from distil.signals.shard import SampleSignals, input_hash

COLUMN = "token_logprobs"
TAIL_FLOOR = (1 / 255) ** 4
"""Tail stored where rounding of the returned values left none: about 2.4e-10, the smallest
nonzero tail every store encoding keeps (uint8's lowest level; docs/signals-format.md)."""


def read_token_logprobs(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The `token_logprobs` column of a synthesised dataset, by sample id."""
    table = read_table(path)
    if COLUMN not in table.column_names or "id" not in table.column_names:
        raise SignalsError(
            f"{path} has no {COLUMN!r} column: the teacher's generation logprobs "
            "were not kept; set synth.sampling.top_logprobs to the k to capture "
            "and rerun `distil synth`"
        )
    rows = zip(table.column("id").to_pylist(), table.column(COLUMN).to_pylist(), strict=True)
    return {str(sample_id): logprobs for sample_id, logprobs in rows if logprobs}


def log_tail_mass(logprobs: list[float]) -> float:
    """log(1 - sum(exp(logprobs))) in float64; log(TAIL_FLOOR) where the values leave none."""
    first = max(range(len(logprobs)), key=logprobs.__getitem__)
    top = logprobs[first]
    others = math.fsum(math.exp(lp - top) for i, lp in enumerate(logprobs) if i != first)
    log_total = top + math.log1p(others)  # log sum(p), without rounding sum(p) near 1
    tail = -math.expm1(log_total) if log_total < 0 else 0.0
    return math.log(tail) if tail > 0 else math.log(TAIL_FLOOR)


class GenerationLogprobsSource:
    """Capture from logprobs returned at generation time (temperature 1, the API's top-k)."""

    name = "generation"
    logprob_mode = "generated-top-logprobs"
    temperature = 1.0
    absent_positions = True
    """A server may return no logprobs for some positions: they are stored absent."""

    def __init__(self, logprobs: dict[str, list[dict[str, Any]]], top_k: int) -> None:
        self.logprobs, self.top_k = logprobs, top_k
        self.diverged_rows = self.diverged_positions = 0
        """Rows whose generated tokens left the re-tokenised response, and the positions
        after that stored absent on that account."""

    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        rows = [self._sample(example) for example in examples]
        if rows and all(first == 0 for _, first in rows):
            raise SignalsError(
                f"training row {examples[0].sample_id!r}: the teacher generated other token "
                "ids than its response re-tokenised gives, from the first token on, in every "
                "row of the batch; name the teacher's tokenizer in teacher.api.tokenizer, or "
                "capture by scoring (capture.source: score)"
            )
        return [signals for signals, _ in rows]

    def _sample(self, example: Example) -> tuple[SampleSignals, int | None]:
        """The row's signals, and the first position where the teacher's tokens differ."""
        positions = self.logprobs.get(example.sample_id)
        if positions is None:
            raise SignalsError(
                f"training row {example.sample_id!r} has no generation logprobs; "
                "rerun `distil synth` with synth.sampling.top_logprobs set"
            )
        targets = [label for label in example.labels[1:] if label != IGNORE_INDEX]
        first = self._first_difference(example.sample_id, [p["token_id"] for p in positions], targets)
        if first is not None:  # the distribution at `first` still saw the student's prefix
            self.diverged_rows += 1
            self.diverged_positions += len(targets) - first - 1
            positions = positions[: first + 1]
        n, k = len(targets), self.top_k
        ids = np.tile(np.arange(k, dtype=np.int64), (n, 1))  # (n, k); absent rows: 0..k-1
        logprobs = np.full((n, k), -np.inf, dtype=np.float32)  # absent rows: probability 0
        log_tail = np.full(n, -np.inf, dtype=np.float32)
        absent = np.ones(n, dtype=bool)
        for index, position in enumerate(positions[:n]):
            if not position["top"]:  # its token, with no alternatives: no distribution
                continue
            top = self._top(example.sample_id, index, position)
            ids[index] = [a["token_id"] for a in top]
            logprobs[index] = [a["logprob"] for a in top]
            log_tail[index] = log_tail_mass([a["logprob"] for a in top])
            absent[index] = False
        signals = SampleSignals(
            example.sample_id,
            input_hash(example.input_ids),
            ids,
            logprobs,
            log_tail,
            absent=absent if absent.any() else None,
        )
        return signals, first

    @staticmethod
    def _first_difference(sample_id: str, generated: list[int | None], targets: list[int]) -> int | None:
        """The first position where the generated ids leave the training tokens (None: none)."""
        if None in generated[: len(targets)]:
            raise SignalsError(
                f"training row {sample_id!r}: the teacher's generated tokens came back without "
                "ids (they were not mapped to the tokenizer); name the teacher's tokenizer in "
                "teacher.api.tokenizer, or capture by scoring (capture.source: score)"
            )
        return next((i for i, (a, b) in enumerate(zip(generated, targets, strict=False)) if a != b), None)

    def _top(self, sample_id: str, index: int, position: dict[str, Any]) -> list[dict[str, Any]]:
        """The k most likely alternatives the teacher returned at one position."""
        top = sorted(position["top"] or [], key=lambda a: -a["logprob"])[: self.top_k]
        row_ids = [a["token_id"] for a in top]
        if len(top) < self.top_k or None in row_ids or len(set(row_ids)) < self.top_k:
            raise SignalsError(
                f"training row {sample_id!r}: response position {index} has fewer "
                f"than {self.top_k} distinct top logprobs with token ids; lower "
                "capture.top_k to what synth.sampling.top_logprobs kept"
            )
        return top
