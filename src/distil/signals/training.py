"""The teacher for training from a store: each micro-batch's top-k, looked up by sample id.

    teacher = StoredTeacher(SignalStore(path), top_k=8)
    teacher.check_covers(examples)             # every training row has signals
    batch.update(teacher.lookup(rows))         # teacher_ids, teacher_logprobs, teacher_log_tail

`lookup` returns the signals of all response tokens of the rows, concatenated in row order:
the same order in which the trainer selects student positions with `labels[:, 1:] != -100`,
so row i of the student's selected logits meets row i of the teacher's top-k. Where some
of those positions are absent in the store, `teacher_present` (N,) marks the others, and
the loss skips the divergence at the absent ones (distil.losses.sparse).
"""

import numpy as np
import torch

from distil.data import Example
from distil.losses import IGNORE_INDEX, TopKTeacher, keep_top
from distil.signals.errors import SignalsError
from distil.signals.reader import SignalStore
from distil.signals.shard import SampleSignals, input_hash


class StoredTeacher:
    """Top-k teacher signals from a store, in the trainer's token order."""

    def __init__(self, store: SignalStore, top_k: int | None = None) -> None:
        self.store = store
        self.top_k = min(top_k or store.encoding.top_k, store.encoding.top_k)

    @property
    def vocab_size(self) -> int:
        """Logit width the signals were captured over (the student is compared on these columns)."""
        return self.store.encoding.vocab_size

    def check_covers(self, examples: list[Example]) -> None:
        """Refuse to start when some training rows have no signals in the store."""
        missing = [e.sample_id for e in examples if e.sample_id not in self.store]
        if missing:
            raise SignalsError(
                f"{len(missing)} of {len(examples)} training rows have no signals in "
                f"{self.store.path} (e.g. sample {missing[0]!r}); run `distil capture RECIPE` "
                "to capture them (it adds only the missing rows)"
            )

    def positions(self) -> dict[str, int]:
        """The store's positions, and how many of them are absent (train_summary.json)."""
        return {"stored": self.store.num_tokens, "absent": self.store.num_absent}

    def absent_note(self, ce_weight: float) -> str | None:
        """What training does at the store's absent positions, in words; None without any."""
        store = self.store
        if not store.num_absent:
            return None
        learned = (
            "distill.ce_weight still learns their tokens from the data"
            if ce_weight > 0
            else "with distill.ce_weight 0 nothing is learned there, an end-of-turn token "
            "included: set distill.ce_weight > 0 to learn their tokens from the data"
        )
        return (
            f"{store.num_absent:,} of {store.num_tokens:,} positions in {store.path} are absent "
            f"(no teacher distribution there): the divergence skips them; {learned}"
        )

    def lookup(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Signals of the rows' response tokens: ids and logprobs (N, k), log_tail (N,), and
        teacher_present (N,) bool when some of them are absent."""
        samples = [self._sample(e) for e in examples]
        present = None
        if any(s.absent is not None for s in samples):
            present = torch.from_numpy(
                ~np.concatenate(
                    [np.zeros(s.num_tokens, bool) if s.absent is None else s.absent for s in samples]
                )
            )
        teacher = TopKTeacher(
            torch.from_numpy(np.concatenate([s.ids for s in samples])),
            torch.from_numpy(np.concatenate([s.logprobs for s in samples])),
            torch.from_numpy(np.concatenate([s.log_tail for s in samples])),
            present,
        )
        teacher = keep_top(teacher, self.top_k)
        found = {
            "teacher_ids": teacher.ids,
            "teacher_logprobs": teacher.logprobs,
            "teacher_log_tail": teacher.log_tail,
        }
        return found if present is None else {**found, "teacher_present": present}

    def _sample(self, example: Example) -> SampleSignals:
        try:
            sample = self.store.get(example.sample_id)
        except KeyError:
            raise SignalsError(
                f"sample {example.sample_id!r} has no signals in {self.store.path}; "
                "run `distil capture RECIPE` to capture it"
            ) from None
        expected = sum(label != IGNORE_INDEX for label in example.labels[1:])
        if sample.num_tokens != expected or sample.input_hash != input_hash(example.input_ids):
            raise SignalsError(
                f"the signals of sample {example.sample_id!r} in {self.store.path} were captured "
                f"over other tokens ({sample.num_tokens} stored, {expected} now, or different "
                "ids): the data, tokenizer or data.max_length changed since the capture; capture "
                "into a new store (capture.output)"
            )
        return sample


def topk_teacher(batch: dict[str, torch.Tensor]) -> TopKTeacher:
    """The TopKTeacher a batch carries after `StoredTeacher.lookup`."""
    return TopKTeacher(
        batch["teacher_ids"],
        batch["teacher_logprobs"],
        batch["teacher_log_tail"],
        batch.get("teacher_present"),
    )
