"""The teacher's signal in training: one object, chosen once when the session is prepared.

    signal = choose_signal(...)              # from teacher_signal(recipe) (distil.recipe.signal)
    batch = signal.batch(rows, number)       # a typed Batch with its teacher side and grader
    total = batch.grader.loss(student_out, batch)      # summed over its response tokens

| recipe's signal source        | object            | the teacher's side of a batch            |
| ----------------------------- | ----------------- | ---------------------------------------- |
| none (kd_weight 0)            | `HardLabels`      | none: cross-entropy on the data's tokens |
| live                          | `LiveTeacher`     | teacher.model run on the batch's tokens  |
| store, api-store              | `StoredTopK`      | the stored top-k of the batch's rows     |
| cross-live, cross-store       | `CrossTokenizer`  | the teacher's own tokens, aligned spans  |

On-policy distillation (distill.on_policy) wraps the chosen object as a source of batches
(`distil.train.onpolicy.OnPolicy`) whose samples are graded by a `LiveTeacher` or, for a
teacher behind an API, by its scores (`distil.train.onpolicy_api.ApiScoredSamples`). The
hidden-state term is the `LiveTeacher`'s, from the same forward as its logits.

Every grader reads the student's side through one `StudentSide`: the objective, the logit
width compared, and the fused path (distil.losses.fused: no (N, V) logits held), which a
grader takes whenever the session is fused. The order of the operations is part of the
contract: a seeded run on CPU repeats its weights bit for bit (tests/test_train.py pins them).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from distil.data import Example
from distil.losses import Objective, TopKTeacher, fused_linear_loss, sparse_objective_per_token
from distil.models import linear_head_weight
from distil.signals.training import StoredTeacher, topk_teacher
from distil.train.batch import Batch, BatchLayout
from distil.train.cross_tokenizer import CrossTokenizerTeacher
from distil.train.hidden import HiddenMatcher, outputs_and_states
from distil.train.step import autocast_head, chunk_objective, response_rows, teacher_mode


class TrainingSignal(Protocol):
    """The session's source of micro-batches, each with its teacher side and its grader."""

    store: Path | None
    """The signal store read, if any (recorded in train_summary.json)."""

    def batch(self, rows: list[Example], number: int) -> Batch:
        """Micro-batch number `number` of the run, made of `rows`."""
        ...

    def close(self) -> None:
        """Release what it holds open (a store, an API teacher and its journal)."""
        ...


@dataclass(frozen=True)
class StudentSide:
    """What every grader reads of the student: the objective, widths and the fused path."""

    objective: Objective
    vocab: int
    """Logit columns compared with the teacher's."""
    fused: bool
    """The student's forward gives final hidden states, and the loss forms logits in chunks."""
    chunk_size: int | None
    compiled: bool
    """train.compile: the fused path's per-chunk loss is torch.compile'd."""
    head_dtype: torch.dtype | None
    module: Callable[[], Any]
    """The unwrapped trained module (its `model`, and the matched `states` of its forward)."""

    def dense(
        self,
        student_out: Tensor,
        targets: Tensor,
        teacher_out: Tensor | None = None,
        teacher_head: Tensor | None = None,
        extra: Callable[[], Tensor] | None = None,
    ) -> Tensor:
        """Summed loss against teacher logits (N, V) or, fused, final hidden states (N, H) and
        its head; `extra()` (N,) joins per token (the hidden-state term)."""
        if self.fused:
            total = self._fused_dense(student_out, targets, teacher_out, teacher_head)
            return total if extra is None else total + extra().sum()
        vocab = self.vocab
        values = self.objective.per_token(
            student_out[:, :vocab], None if teacher_out is None else teacher_out[:, :vocab], targets
        )
        return (values if extra is None else values + extra()).sum()

    def top_k(self, student_out: Tensor, targets: Tensor, teacher: TopKTeacher) -> Tensor:
        """Summed loss against a teacher known by its top-k (N, k) and tail."""
        if self.fused:
            return self._fused_top_k(student_out, targets, teacher)
        return sparse_objective_per_token(
            self.objective, student_out[:, : self.vocab], teacher, targets
        ).sum()

    def _head(self, student_hidden: Tensor) -> tuple[Tensor, Tensor]:
        """The student's hidden states and head weight (V, H) in the head dtype."""
        weight = linear_head_weight(self.module().model)[: self.vocab]
        return (autocast_head(student_hidden, self.head_dtype), autocast_head(weight, self.head_dtype))

    def _fused_dense(
        self,
        student_hidden: Tensor,
        targets: Tensor,
        teacher_hidden: Tensor | None,
        teacher_head: Tensor | None,
    ) -> Tensor:
        student_hidden, student_weight = self._head(student_hidden)
        loss_of = chunk_objective(self.objective, False, self.compiled)

        def per_token(student_logits: Tensor, teacher_logits: Tensor, rows: slice) -> Tensor:
            teacher = teacher_logits if teacher_hidden is not None else None
            return loss_of(student_logits, teacher, targets[rows])

        return fused_linear_loss(
            student_hidden,
            student_weight,
            teacher_hidden,
            teacher_head,
            per_token,
            chunk_size=self.chunk_size,
            reduction="sum",
        )

    def _fused_top_k(self, student_hidden: Tensor, targets: Tensor, teacher: TopKTeacher) -> Tensor:
        student_hidden, student_weight = self._head(student_hidden)
        loss_of = chunk_objective(self.objective, True, self.compiled)

        def per_token(student_logits: Tensor, _: Tensor, rows: slice) -> Tensor:
            return loss_of(student_logits, teacher.rows(rows), targets[rows])

        return fused_linear_loss(
            student_hidden, student_weight, None, None, per_token, chunk_size=self.chunk_size, reduction="sum"
        )


class HardLabels:
    """No teacher distributions (distill.kd_weight = 0): the data's tokens alone."""

    store = None

    def __init__(self, student: StudentSide, layout: BatchLayout) -> None:
        self.student, self.layout = student, layout

    def batch(self, rows: list[Example], number: int) -> Batch:
        return self.layout.batch(rows, self)

    def loss(self, student_out: Tensor, batch: Batch) -> Tensor:
        return self.student.dense(student_out, batch.targets())

    def close(self) -> None:
        """Nothing held."""


class LiveTeacher:
    """teacher.model run on every batch: its logits (fused: final hidden states and head), and
    with a hidden matcher its states from the same forward."""

    store = None

    def __init__(
        self, student: StudentSide, layout: BatchLayout, model: Any, hidden: HiddenMatcher | None = None
    ) -> None:
        self.student, self.layout, self.model, self.hidden = student, layout, model, hidden

    def batch(self, rows: list[Example], number: int) -> Batch:
        return self.layout.batch(rows, self)

    def grade_samples(self, sampled: list[Example]) -> Batch:
        """The student's own samples as a batch this teacher grades (no hard labels)."""
        return self.layout.batch(sampled, self, hard_labels=False)

    def loss(self, student_out: Tensor, batch: Batch) -> Tensor:
        fused = self.student.fused
        # inference_mode, unless hidden states are matched (their loss saves them for backward)
        with teacher_mode() if self.hidden is None else torch.no_grad():
            teacher_all, states = outputs_and_states(
                self.model, batch.model_inputs(), fused, states=self.hidden is not None
            )
        teacher_out = response_rows(teacher_all, batch.token_index)  # gathered outside: a normal tensor
        head = linear_head_weight(self.model)[: self.student.vocab] if fused else None
        extra = None if self.hidden is None else partial(self._hidden_term, states, batch)
        return self.student.dense(student_out, batch.targets(), teacher_out, head, extra)

    def _hidden_term(self, teacher_states: tuple[Tensor, ...], batch: Batch) -> Tensor:
        """The hidden-state term per counted position, (N,)."""
        assert self.hidden is not None
        states = self.student.module().states
        return self.hidden.per_token(states, teacher_states, batch.token_index)

    def close(self) -> None:
        """Nothing held: the model is freed with the session."""


class TopKGrader:
    """Grades batches that carry the teacher's top-k (N, k) and tail mass."""

    def __init__(self, student: StudentSide) -> None:
        self.student = student

    def loss(self, student_out: Tensor, batch: Batch) -> Tensor:
        return self.student.top_k(student_out, batch.targets(), batch.teacher)


class StoredTopK(TopKGrader):
    """The teacher's top-k of each row, read from a signal store by sample id."""

    def __init__(self, student: StudentSide, layout: BatchLayout, stored: StoredTeacher) -> None:
        super().__init__(student)
        self.layout, self.stored = layout, stored
        self.store: Path | None = stored.store.path

    def batch(self, rows: list[Example], number: int) -> Batch:
        return self.layout.batch(rows, self, teacher=topk_teacher(self.stored.lookup(rows)))

    def close(self) -> None:
        self.stored.store.close()


class CrossTokenizer:
    """A teacher of another tokenizer, live or from a store of its own tokens, aligned span by
    span (never fused)."""

    def __init__(self, student: StudentSide, layout: BatchLayout, teacher: CrossTokenizerTeacher) -> None:
        self.student, self.layout, self.teacher = student, layout, teacher
        self.store: Path | None = teacher.store_path

    def batch(self, rows: list[Example], number: int) -> Batch:
        return self.layout.batch(rows, self, teacher=self.teacher.lookup(rows))

    def loss(self, student_out: Tensor, batch: Batch) -> Tensor:
        return self.teacher.per_token(
            self.student.objective, student_out, batch.targets(), batch.teacher
        ).sum()

    def close(self) -> None:
        self.teacher.close()


def off_policy_signal(
    source: str,
    student: StudentSide,
    layout: BatchLayout,
    live: LiveTeacher | None,
    stored: StoredTeacher | None,
    cross: CrossTokenizerTeacher | None,
) -> TrainingSignal:
    """The object for the recipe's signal `source` (distil.recipe.signal.Source), given what
    the session opened for it."""
    if source in ("store", "api-store"):
        assert stored is not None
        return StoredTopK(student, layout, stored)
    if source in ("cross-live", "cross-store"):
        assert cross is not None
        return CrossTokenizer(student, layout, cross)
    if live is not None:  # "live", or "none" with the hidden-state term
        return live
    return HardLabels(student, layout)
