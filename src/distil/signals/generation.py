"""Signals from the logprobs a teacher returned while generating: no request is sent again.

An API teacher that cannot score given text (no `echo` with logprobs) can still return the
top-k logprobs of each token it generates. `distil synth` keeps them in the dataset's
`token_logprobs` column (set `synth.sampling.top_logprobs`); `GenerationLogprobsSource`
turns them into a store. Each row's generated token ids must be the tokens training sees
(its response re-tokenised, then the end-of-turn token that closes it).

Every stored position holds what the teacher returned, never an invented distribution.
The store has no way to mark a position absent, and training needs every response
position, so a row whose teacher returned no logprobs for a position (typically the
end-of-turn token, which some servers do not report) is refused with an error naming the
row and the position; capture it by scoring instead (`capture.source: score`).

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
        raise SignalsError(f"{path} has no {COLUMN!r} column: the teacher's generation logprobs "
                           "were not kept; set synth.sampling.top_logprobs to the k to capture "
                           "and rerun `distil synth`")
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

    def __init__(self, logprobs: dict[str, list[dict[str, Any]]], top_k: int,
                 end_of_turn_id: int) -> None:
        self.logprobs, self.top_k, self.end_of_turn_id = logprobs, top_k, end_of_turn_id

    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        return [self._sample(example) for example in examples]

    def _sample(self, example: Example) -> SampleSignals:
        positions = self.logprobs.get(example.sample_id)
        if positions is None:
            raise SignalsError(f"training row {example.sample_id!r} has no generation logprobs; "
                               "rerun `distil synth` with synth.sampling.top_logprobs set")
        targets = [label for label in example.labels[1:] if label != IGNORE_INDEX]
        self._check_ids(example.sample_id, [p["token_id"] for p in positions], targets)
        ids, logprobs, log_tail = [], [], []
        for index, position in enumerate(positions[: len(targets)]):
            top = self._top(example.sample_id, index, position)
            ids.append([a["token_id"] for a in top])
            logprobs.append([a["logprob"] for a in top])
            log_tail.append(log_tail_mass(logprobs[-1]))
        return SampleSignals(example.sample_id, input_hash(example.input_ids),
                             np.array(ids, dtype=np.int64), np.array(logprobs, dtype=np.float32),
                             np.array(log_tail, dtype=np.float32))

    def _check_ids(self, sample_id: str, generated: list[int | None], targets: list[int]) -> None:
        """The returned positions are the training tokens, and none is missing."""
        if generated[: len(targets)] != targets[: len(generated)]:
            raise SignalsError(
                f"training row {sample_id!r}: the teacher generated other token ids than "
                "its response re-tokenised gives (or ids were not mapped); name the teacher's "
                "tokenizer in teacher.api.tokenizer, or capture by scoring")
        if len(generated) < len(targets):
            missing = len(generated)
            token = targets[missing]
            what = ", the end-of-turn token" if token == self.end_of_turn_id else ""
            raise SignalsError(
                f"training row {sample_id!r} has no logprobs for response position {missing} "
                f"of {len(targets)} (token {token}{what}): the teacher did not return them "
                "while generating, and a position is never invented; capture by scoring "
                "(capture.source=score), or synthesise with a server that returns them")

    def _top(self, sample_id: str, index: int, position: dict[str, Any]) -> list[dict[str, Any]]:
        """The k most likely alternatives the teacher returned at one position."""
        top = sorted(position["top"] or [], key=lambda a: -a["logprob"])[: self.top_k]
        row_ids = [a["token_id"] for a in top]
        if len(top) < self.top_k or None in row_ids or len(set(row_ids)) < self.top_k:
            raise SignalsError(f"training row {sample_id!r}: response position {index} has fewer "
                               f"than {self.top_k} distinct top logprobs with token ids; lower "
                               "capture.top_k to what synth.sampling.top_logprobs kept")
        return top
