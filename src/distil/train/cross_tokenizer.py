"""Training with a teacher of another tokenizer, live or from a store, aligned span by span.

Each training row is tokenized twice, by the student (the trainer's examples) and by the
teacher (its own chat template and tokens). The two tokenizations of the response are
aligned into spans (distil.align) and the end-of-turn tokens of both sides form one more
span. A micro-batch carries, over its response positions on each side, the span of every
position, and the teacher's side of each span: with a live teacher (`LiveCrossTokenizerTeacher`)
the teacher's inputs, run through it at each step; from a store captured on the teacher's
tokens (`StoredCrossTokenizerTeacher`) the stored top-k at each span's first teacher
position, the stored log-probabilities of the teacher's own tokens for the chain rule, and
the character offsets that align them. The loss (distil.losses.cross_tokenizer) runs on
the student's logits and the teacher's log-probabilities at the objective's temperature.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from distil.align import align_spans, token_offsets, vocabulary_map
from distil.batching import collate
from distil.data import Example, Pair, encode_pairs
from distil.losses import IGNORE_INDEX, Objective, TopKTeacher
from distil.losses.cross_tokenizer import (
    SpanPositions,
    SpanTeacher,
    cross_tokenizer_per_token,
    dense_span_teacher,
)
from distil.losses.dense import log_probs
from distil.models import LoadedModel, output_vocab_size
from distil.progress import console
from distil.recipe import Recipe
from distil.signals import FingerprintMismatchError, SampleSignals, SignalsError, SignalStore
from distil.signals.fingerprint import differences
from distil.signals.recipe import teacher_identity, training_store_dir
from distil.signals.training import StoredTeacher
from distil.signals.vocabulary import read_teacher_vocabulary


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


def align_row(
    response: str, student: Example, teacher: Example, student_tokenizer: Any, teacher_tokenizer: Any
) -> RowAlignment:
    """Spans of one row's response on both sides, cut to the tokens each example kept."""
    student_ids, student_offsets = token_offsets(student_tokenizer, response)
    teacher_ids, teacher_offsets = token_offsets(teacher_tokenizer, response)
    kept_teacher = response_tokens(teacher)
    return _alignment(
        teacher_offsets[: len(kept_teacher)],
        len(kept_teacher) > len(teacher_ids),
        student_offsets,
        len(student_ids),
        response_tokens(student),
    )


def _alignment(
    teacher_text: list[tuple[int, int]],
    teacher_eos: bool,
    student_offsets: list[tuple[int, int]],
    student_text_tokens: int,
    kept_student: list[int],
) -> RowAlignment:
    """The spans of a row from the teacher's kept text tokens (and whether its end-of-turn
    token follows) and the student's whole response tokenization and kept tokens."""
    student_text = student_offsets[: min(len(kept_student), student_text_tokens)]
    spans = align_spans(teacher_text, student_text)
    pairs = [(list(s.student), list(s.teacher)) for s in spans]
    if teacher_eos and len(kept_student) == student_text_tokens + 1:
        pairs.append(([student_text_tokens], [len(teacher_text)]))  # the end-of-turn tokens
    student_span = [-1] * len(kept_student)
    teacher_span = [-1] * (len(teacher_text) + teacher_eos)
    for number, (student_positions, teacher_positions) in enumerate(pairs):
        for position in student_positions:
            student_span[position] = number
        for position in teacher_positions:
            teacher_span[position] = number
    return RowAlignment(student_span, teacher_span, [s[0] for s, _ in pairs], [t[0] for _, t in pairs])


def _span_fields(alignments: list[RowAlignment]) -> dict[str, Tensor]:
    """The rows' alignments over the batch's concatenated positions and spans."""
    fields: dict[str, list[int]] = {
        "student_span": [],
        "teacher_span": [],
        "student_first": [],
        "teacher_first": [],
    }
    spans = student_positions = teacher_positions = 0
    for row in alignments:
        fields["student_span"] += [s + spans if s >= 0 else -1 for s in row.student_span]
        fields["teacher_span"] += [s + spans if s >= 0 else -1 for s in row.teacher_span]
        fields["student_first"] += [p + student_positions for p in row.student_first]
        fields["teacher_first"] += [p + teacher_positions for p in row.teacher_first]
        spans += len(row.student_first)
        student_positions += len(row.student_span)
        teacher_positions += len(row.teacher_span)
    return {name: torch.tensor(values, dtype=torch.long) for name, values in fields.items()}


class CrossTokenizerTeacher:
    """A teacher with its own tokenizer: what a batch needs of it, and the loss per token."""

    method: str
    top_k: int
    teacher_to_student: Tensor
    store_path: Path | None = None
    """The store read (None for a live teacher)."""

    def lookup(self, examples: list[Example]) -> dict[str, Tensor]:
        """The teacher's side of the rows, and the spans over the batch's positions."""
        raise NotImplementedError

    def span_teacher(self, fields: dict[str, Tensor], temperature: float) -> SpanTeacher:
        """The teacher per span of a batch, from the fields `lookup` gave it."""
        raise NotImplementedError

    def per_token(
        self, objective: Objective, student_logits: Tensor, targets: Tensor, fields: dict[str, Tensor]
    ) -> Tensor:
        """The objective per student response token. (N_s, V_s), (N_s,) -> (N_s,)."""
        teacher = None
        if objective.kd_weight > 0:
            teacher = self.span_teacher(fields, objective.temperature)
        return cross_tokenizer_per_token(
            objective,
            self.method,
            student_logits,
            targets,
            SpanPositions(fields["student_first"], fields["student_span"]),
            teacher,
            self.teacher_to_student.to(student_logits.device),
            self.top_k,
        )

    def close(self) -> None:
        """Release what it holds open (a store)."""

    def _report(self, found: Any, teacher_tokens: int) -> None:
        self.teacher_to_student = found.teacher_to_student
        console.print(
            f"cross-tokenizer ({self.method}): {found.mapped} of {teacher_tokens} "
            f"teacher tokens map to a student token ({found.exact} by string, "
            f"{found.normalised} after normalising)"
        )


class LiveCrossTokenizerTeacher(CrossTokenizerTeacher):
    """A live teacher with its own tokenizer: its inputs per row, run at every step."""

    def __init__(
        self,
        recipe: Recipe,
        teacher: LoadedModel,
        student: LoadedModel,
        pairs: list[Pair],
        examples: list[Example],
    ) -> None:
        self.method, self.top_k = recipe.cross_tokenizer.method, recipe.cross_tokenizer.top_k
        self.model = teacher.model
        self.pad_token_id = teacher.tokenizer.pad_token_id
        self._report(
            vocabulary_map(teacher.tokenizer, student.tokenizer, output_vocab_size(teacher.model)),
            len(teacher.tokenizer),
        )
        teacher_examples = encode_pairs(
            teacher.tokenizer, pairs, recipe.data.template, recipe.data.max_length
        )
        self.teacher_examples = {e.sample_id: e for e in teacher_examples}
        responses = {pair.sample_id: pair.response for pair in pairs}
        self.alignments = {
            e.sample_id: align_row(
                responses[e.sample_id],
                e,
                self.teacher_examples[e.sample_id],
                student.tokenizer,
                teacher.tokenizer,
            )
            for e in examples
        }

    def lookup(self, examples: list[Example]) -> dict[str, Tensor]:
        batch = collate([self.teacher_examples[e.sample_id] for e in examples], self.pad_token_id)
        out = {f"teacher_{name}": value for name, value in batch.items()}
        out.update(_span_fields([self.alignments[e.sample_id] for e in examples]))
        return out

    @torch.no_grad()
    def span_teacher(self, fields: dict[str, Tensor], temperature: float) -> SpanTeacher:
        labels = fields["teacher_labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        logits = self.model(
            input_ids=fields["teacher_input_ids"],
            attention_mask=fields["teacher_attention_mask"],
            use_cache=False,
        ).logits[:, :-1][mask]  # (N_t, V_t)
        return dense_span_teacher(
            log_probs(logits.float(), temperature),
            labels[mask],
            SpanPositions(fields["teacher_first"], fields["teacher_span"]),
        )


class StoredCrossTokenizerTeacher(CrossTokenizerTeacher):
    """A store captured on the teacher's own tokens: no teacher, no teacher tokenizer."""

    def __init__(self, recipe: Recipe, store: SignalStore, student: LoadedModel, pairs: list[Pair]) -> None:
        self.method, self.top_k = recipe.cross_tokenizer.method, recipe.cross_tokenizer.top_k
        self.store, self.student_tokenizer = store, student.tokenizer
        self.store_path = store.path
        vocabulary = read_teacher_vocabulary(store.path)
        self._report(
            vocabulary_map(vocabulary, student.tokenizer, store.encoding.vocab_size), len(vocabulary.tokens)
        )
        self.responses = {pair.sample_id: pair.response for pair in pairs}

    def check_covers(self, examples: list[Example]) -> None:
        """Refuse to start when some training rows have no signals in the store."""
        StoredTeacher(self.store).check_covers(examples)

    def lookup(self, examples: list[Example]) -> dict[str, Tensor]:
        rows = [self._row(e) for e in examples]
        fields = _span_fields([alignment for alignment, _ in rows])
        first = fields["teacher_first"]
        stored = [sample for _, sample in rows]

        def column(name: str) -> Tensor:
            return torch.from_numpy(np.concatenate([getattr(s, name) for s in stored]))

        def tokens(name: str) -> Tensor:
            return torch.from_numpy(np.concatenate([getattr(s.tokens, name) for s in stored]))

        target_ids, target_logprob = tokens("target_ids").long(), tokens("target_logprob")
        later = fields["teacher_span"] >= 0
        later &= torch.arange(len(later)) != first[fields["teacher_span"].clamp(min=0)]
        log_c = torch.zeros(len(first)).scatter_add(0, fields["teacher_span"][later], target_logprob[later])
        fields.update(
            {
                "teacher_ids": column("ids")[first],
                "teacher_logprobs": column("logprobs")[first],
                "teacher_log_tail": column("log_tail")[first],
                "teacher_log_continuation": log_c,
                "teacher_first_token": target_ids[first],
                "teacher_first_logprob": target_logprob[first],
            }
        )
        return fields

    def _row(self, example: Example) -> tuple[RowAlignment, SampleSignals]:
        sample = self.store.get(example.sample_id)
        if sample.tokens is None:
            raise SignalsError(f"{self.store.path} was not captured on the teacher's own tokens")
        offsets = [tuple(o) for o in sample.tokens.char_offsets.tolist()]
        text = [o for o in offsets if o[0] >= 0]
        student_ids, student_offsets = token_offsets(
            self.student_tokenizer, self.responses[example.sample_id]
        )
        eos = len(text) < len(offsets)
        return _alignment(text, eos, student_offsets, len(student_ids), response_tokens(example)), sample

    def span_teacher(self, fields: dict[str, Tensor], temperature: float) -> SpanTeacher:
        return SpanTeacher(
            TopKTeacher(fields["teacher_ids"], fields["teacher_logprobs"], fields["teacher_log_tail"]),
            fields["teacher_log_continuation"],
            fields["teacher_first_token"],
            fields["teacher_first_logprob"],
        )

    def close(self) -> None:
        self.store.close()


def cross_tokenizer_teacher(
    recipe: Recipe,
    source: str,
    teacher: LoadedModel | None,
    student: LoadedModel,
    pairs: list[Pair],
    examples: list[Example],
    held_pairs: list[Pair] | None = None,
    held_examples: list[Example] | None = None,
) -> CrossTokenizerTeacher | None:
    """The cross-tokenizer teacher of the recipe's signal `source`: live (`cross-live`), from
    its store (`cross-store`), or None for any other source. It also knows the held-out rows
    of train.eval_every (a store need not hold them)."""
    every_pair = pairs + (held_pairs or [])
    if source == "cross-live":
        assert teacher is not None
        return LiveCrossTokenizerTeacher(
            recipe, teacher, student, every_pair, examples + (held_examples or [])
        )
    if source != "cross-store":
        return None
    stored = StoredCrossTokenizerTeacher(recipe, cross_tokenizer_store(recipe), student, every_pair)
    stored.check_covers(examples)
    return stored


def cross_tokenizer_store(recipe: Recipe) -> SignalStore:
    """The recipe's store of the teacher's own tokens; refuse one captured otherwise."""
    path = training_store_dir(recipe)
    if path is None:
        raise SignalsError("cross_tokenizer without a live teacher needs signals.path")
    store = SignalStore(path)
    fingerprint = store.fingerprint
    wanted = {
        "teacher": teacher_identity(recipe),
        "max_length": recipe.data.max_length,
        "temperature": recipe.distill.temperature,
        "teacher_tokens": True,
    }
    problems = differences(fingerprint, wanted)
    if problems:
        store.close()
        raise FingerprintMismatchError(
            f"the signals in {path} do not fit this recipe ({'; '.join(problems)}); capture "
            "them with `distil capture RECIPE` (with cross_tokenizer.method set) into a new "
            "capture.output, or point signals.path at a store captured for this recipe"
        )
    return store
