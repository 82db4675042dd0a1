"""Training with a live teacher of another tokenizer: its own inputs, aligned span by span.

Each training row is tokenized twice, by the student (the trainer's examples) and by the
teacher (its own chat template and tokens). The two tokenizations of the response are
aligned into spans (distil.align) and the end-of-turn tokens of both sides form one more
span. A micro-batch carries the teacher's inputs and, over the batch's response positions
on each side, the span of every position; the loss (distil.losses.cross_tokenizer) runs on
the student's logits and the teacher's log-probabilities at the objective's temperature.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from distil.align import align_spans, token_offsets, vocabulary_map
from distil.data import Example, Pair, collate, encode_pairs
from distil.errors import DataError
from distil.losses import IGNORE_INDEX, Objective
from distil.losses.cross_tokenizer import (
    SpanPositions,
    cross_tokenizer_per_token,
    dense_span_teacher,
)
from distil.losses.dense import log_probs
from distil.models import LoadedModel, output_vocab_size
from distil.progress import console
from distil.recipe import Recipe


@dataclass(frozen=True)
class RowAlignment:
    """One row's spans over its response positions: the span of each student and teacher
    position (-1: none), and the first position of each span on both sides."""

    student_span: list[int]
    teacher_span: list[int]
    student_first: list[int]
    teacher_first: list[int]


def response_tokens(example: Example) -> list[int]:
    """The tokens an example's response positions predict (response tokens, then eos)."""
    return [label for label in example.labels[1:] if label != IGNORE_INDEX]


def align_row(response: str, student: Example, teacher: Example, student_tokenizer: Any,
              teacher_tokenizer: Any) -> RowAlignment:
    """Spans of one row's response on both sides, cut to the tokens each example kept."""
    student_ids, student_offsets = token_offsets(student_tokenizer, response)
    teacher_ids, teacher_offsets = token_offsets(teacher_tokenizer, response)
    kept_student, kept_teacher = response_tokens(student), response_tokens(teacher)
    if kept_student[:len(student_ids)] != student_ids[:len(kept_student)]:
        raise DataError(f"row {student.sample_id!r}: the student's tokens of the response differ "
                        "from its offset mapping's; the tokenizer must tokenize text alone the same")
    spans = [s for s in align_spans(teacher_offsets, student_offsets)
             if s.teacher[-1] < len(kept_teacher) and s.student[-1] < len(kept_student)]
    pairs = [(list(s.student), list(s.teacher)) for s in spans]
    if len(kept_student) == len(student_ids) + 1 and len(kept_teacher) == len(teacher_ids) + 1:
        pairs.append(([len(student_ids)], [len(teacher_ids)]))  # the end-of-turn tokens
    student_span, teacher_span = [-1] * len(kept_student), [-1] * len(kept_teacher)
    for number, (student_positions, teacher_positions) in enumerate(pairs):
        for position in student_positions:
            student_span[position] = number
        for position in teacher_positions:
            teacher_span[position] = number
    return RowAlignment(student_span, teacher_span, [s[0] for s, _ in pairs],
                        [t[0] for _, t in pairs])


class CrossTokenizerTeacher:
    """A live teacher with its own tokenizer: inputs and alignments per row, and the loss."""

    def __init__(self, recipe: Recipe, teacher: LoadedModel, student: LoadedModel,
                 pairs: list[Pair], examples: list[Example]) -> None:
        self.method, self.top_k = recipe.cross_tokenizer.method, recipe.cross_tokenizer.top_k
        self.model = teacher.model
        self.pad_token_id = teacher.tokenizer.pad_token_id
        found = vocabulary_map(teacher.tokenizer, student.tokenizer,
                               output_vocab_size(teacher.model))
        self.teacher_to_student = found.teacher_to_student
        console.print(f"cross-tokenizer ({self.method}): {found.mapped} of "
                      f"{len(teacher.tokenizer)} teacher tokens map to a student token "
                      f"({found.exact} by string, {found.normalised} after normalising)")
        teacher_examples = encode_pairs(teacher.tokenizer, pairs, recipe.data.template,
                                        recipe.data.max_length)
        self.teacher_examples = {e.sample_id: e for e in teacher_examples}
        responses = {pair.sample_id: pair.response for pair in pairs}
        self.alignments = {e.sample_id: align_row(responses[e.sample_id], e,
                                                  self.teacher_examples[e.sample_id],
                                                  student.tokenizer, teacher.tokenizer)
                           for e in examples}

    def lookup(self, examples: list[Example]) -> dict[str, Tensor]:
        """The teacher's inputs for the rows and the spans over the batch's positions."""
        batch = collate([self.teacher_examples[e.sample_id] for e in examples], self.pad_token_id)
        out = {f"teacher_{name}": value for name, value in batch.items()}
        fields: dict[str, list[int]] = {"student_span": [], "teacher_span": [],
                                        "student_first": [], "teacher_first": []}
        spans = student_positions = teacher_positions = 0
        for example in examples:
            row = self.alignments[example.sample_id]
            fields["student_span"] += [s + spans if s >= 0 else -1 for s in row.student_span]
            fields["teacher_span"] += [s + spans if s >= 0 else -1 for s in row.teacher_span]
            fields["student_first"] += [p + student_positions for p in row.student_first]
            fields["teacher_first"] += [p + teacher_positions for p in row.teacher_first]
            spans += len(row.student_first)
            student_positions += len(row.student_span)
            teacher_positions += len(row.teacher_span)
        out.update({name: torch.tensor(values, dtype=torch.long) for name, values in fields.items()})
        return out

    def per_token(self, objective: Objective, student_logits: Tensor, targets: Tensor,
                  batch: dict[str, Tensor]) -> Tensor:
        """The objective per student response token. (N_s, V_s), (N_s,) -> (N_s,)."""
        teacher = None
        if objective.kd_weight > 0:
            teacher = self._span_teacher(batch, objective.temperature)
        return cross_tokenizer_per_token(
            objective, self.method, student_logits, targets,
            SpanPositions(batch["student_first"], batch["student_span"]), teacher,
            self.teacher_to_student.to(student_logits.device), self.top_k)

    @torch.no_grad()
    def _span_teacher(self, batch: dict[str, Tensor], temperature: float) -> Any:
        labels = batch["teacher_labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        logits = self.model(input_ids=batch["teacher_input_ids"],
                            attention_mask=batch["teacher_attention_mask"],
                            use_cache=False).logits[:, :-1][mask]  # (N_t, V_t)
        return dense_span_teacher(log_probs(logits.float(), temperature), labels[mask],
                                  SpanPositions(batch["teacher_first"], batch["teacher_span"]))


def cross_tokenizer_teacher(recipe: Recipe, teacher: LoadedModel | None, student: LoadedModel,
                            pairs: list[Pair], examples: list[Example]) -> CrossTokenizerTeacher | None:
    """The recipe's live cross-tokenizer teacher, or None (method off, or no live teacher)."""
    if recipe.cross_tokenizer.method == "off" or teacher is None:
        return None
    return CrossTokenizerTeacher(recipe, teacher, student, pairs, examples)
