"""Signals from the logprobs a teacher returned while generating: no request is sent again.

An API teacher that cannot score given text (no `echo` with logprobs) can still return the
top-k logprobs of each token it generates. `distil synth` keeps them in the dataset's
`token_logprobs` column (set `synth.sampling.top_logprobs`); `GenerationLogprobsSource`
turns them into a store. Each row's generated token ids must be the tokens training sees
(its response re-tokenised); the end-of-turn token that closes a training response, which
generation does not score, is stored as certain (probability 1, empty tail).
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


def read_token_logprobs(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The `token_logprobs` column of a synthesised dataset, by sample id."""
    table = read_table(path)
    if COLUMN not in table.column_names or "id" not in table.column_names:
        raise SignalsError(f"{path} has no {COLUMN!r} column: the teacher's generation logprobs "
                           "were not kept; set synth.sampling.top_logprobs to the k to capture "
                           "and rerun `distil synth`")
    rows = zip(table.column("id").to_pylist(), table.column(COLUMN).to_pylist(), strict=True)
    return {str(sample_id): logprobs for sample_id, logprobs in rows if logprobs}


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
        generated = [p["token_id"] for p in positions]
        certain_end = len(generated) < len(targets) and targets[-1] == self.end_of_turn_id
        scored = targets[:-1] if certain_end else targets
        if generated[: len(scored)] != scored:
            raise SignalsError(
                f"training row {example.sample_id!r}: the teacher generated other token ids than "
                "its response re-tokenised gives (or ids were not mapped); name the teacher's "
                "tokenizer in teacher.api.tokenizer, or capture by scoring")
        ids, logprobs, log_tail = [], [], []
        for position in positions[: len(scored)]:
            top = sorted(position["top"], key=lambda a: -a["logprob"])[: self.top_k]
            row_ids = [a["token_id"] for a in top]
            if len(top) < self.top_k or None in row_ids or len(set(row_ids)) < self.top_k:
                raise SignalsError(f"training row {example.sample_id!r} has fewer than "
                                   f"{self.top_k} distinct top logprobs with token ids; lower "
                                   "capture.top_k to what synth.sampling.top_logprobs kept")
            ids.append(row_ids)
            logprobs.append([a["logprob"] for a in top])
            tail = 1 - sum(math.exp(a["logprob"]) for a in top)
            log_tail.append(math.log(tail) if tail > 0 else -math.inf)
        if certain_end:  # probability 1 on end-of-turn, 0 on k - 1 other ids
            others = [i for i in range(self.top_k + 1) if i != self.end_of_turn_id][: self.top_k - 1]
            ids.append([self.end_of_turn_id, *others])
            logprobs.append([0.0, *[-math.inf] * (self.top_k - 1)])
            log_tail.append(-math.inf)
        return SampleSignals(example.sample_id, input_hash(example.input_ids),
                             np.array(ids, dtype=np.int64), np.array(logprobs, dtype=np.float32),
                             np.array(log_tail, dtype=np.float32))
