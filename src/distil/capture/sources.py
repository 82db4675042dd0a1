"""Where a capture's signals come from: the sources `distil.capture.stage` runs into a store.

    LocalTeacherSource     a local model, white-box: top-k from the full logits
    ScoringTeacherSource   any teacher that scores a given response (an API: echo + logprobs)
    TeacherTokensSource    a local model on its own tokens, for a student of another tokenizer

Each turns a batch of training examples into one `SampleSignals` per example: the top-k of
softmax(logits / T) and the log of the remaining mass at every response position.
"""

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from distil.align import token_offsets
from distil.batching import collate
from distil.data import Example, Pair
from distil.losses import IGNORE_INDEX, teacher_top_k
from distil.losses.fused import default_chunk_size
from distil.models import LoadedModel, linear_head_weight
from distil.signals import SampleSignals, SignalsError, input_hash
from distil.signals.scoring import check_can_score, check_one_turn_each, concurrently, pair_prompt, top_k_of
from distil.signals.shard import TeacherTokens
from distil.teachers import Teacher


class SignalSource(Protocol):
    """Where captured signals come from: a local model (white-box), or any teacher that scores."""

    name: str
    """Recorded as the store's `source`."""
    logprob_mode: str
    """How the log-probabilities were obtained, recorded in the fingerprint."""
    temperature: float
    """Temperature of the distributions it returns."""
    absent_positions: bool
    """Whether some positions may have no distribution (stored absent: format version 2)."""

    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        """The top-k at every response position of each example, in order."""
        ...


class LocalTeacherSource:
    """White-box capture: one teacher-forced forward per batch, top-k from the full logits.

    With a plain linear output head, logits are formed only at response positions and
    `chunk_tokens` rows at a time, so no (B, T, V) tensor is ever held.
    """

    name = "local"
    logprob_mode = "teacher-forced"
    absent_positions = False

    def __init__(
        self,
        teacher: LoadedModel,
        vocab_size: int,
        top_k: int,
        temperature: float,
        pad_token_id: int,
        chunk_tokens: int | None = None,
    ) -> None:
        self.model, self.vocab_size, self.top_k = teacher.model, vocab_size, top_k
        self.temperature, self.pad_token_id = temperature, pad_token_id
        self.device = next(self.model.parameters()).device
        self.chunk_tokens = chunk_tokens or default_chunk_size(vocab_size, self.device)

    @torch.no_grad()
    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        batch = {k: v.to(self.device) for k, v in collate(examples, self.pad_token_id).items()}
        mask = batch["labels"][:, 1:] != IGNORE_INDEX  # (B, T-1) response positions
        chunks = [
            teacher_top_k(logits.float(), self.top_k, self.temperature)
            for logits in self._response_logits(batch, mask)
        ]
        ids, logprobs, log_tail = (
            torch.cat(parts).cpu().numpy()  # (N, k), (N, k), (N,)
            for parts in zip(*(c[:3] for c in chunks), strict=True)
        )
        samples, start = [], 0
        for example, count in zip(examples, mask.sum(dim=1).tolist(), strict=True):
            rows = slice(start, start + count)
            samples.append(
                SampleSignals(
                    example.sample_id,
                    input_hash(example.input_ids),
                    ids[rows],
                    logprobs[rows],
                    log_tail[rows],
                )
            )
            start += count
        return samples

    def _response_logits(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> Iterator[torch.Tensor]:
        """Teacher logits (c, V) at the response positions, in chunks of rows."""
        inputs = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "use_cache": False,
        }
        weight = linear_head_weight(self.model)
        if weight is None:
            yield self.model(**inputs).logits[:, :-1][mask][:, : self.vocab_size]
            return
        hidden = self.model.base_model(**inputs).last_hidden_state[:, :-1][mask]  # (N, H)
        weight = weight[: self.vocab_size]
        for start in range(0, hidden.shape[0], self.chunk_tokens):
            yield hidden[start : start + self.chunk_tokens] @ weight.T


class ScoringTeacherSource:
    """Capture through the teacher protocol: `score` each response, keep its top-k per token.

    For teachers that are not white-box (an API that can score a given completion and
    return token ids with top logprobs; distil.signals.scoring). The response is scored with
    the end-of-turn token appended, and the scored ids must equal the training tokens, else
    the capture stops with an error naming the sample. Prompts are rendered by the teacher;
    the store can check only the response tokens against the training rows.
    """

    name = "score"
    logprob_mode = "scored-top-logprobs"
    temperature = 1.0
    absent_positions = False

    def __init__(self, teacher: Teacher, pairs: list[Pair], top_k: int, end_of_turn: str) -> None:
        check_can_score(teacher, top_k)
        check_one_turn_each(pairs)
        self.teacher, self.top_k, self.end_of_turn = teacher, top_k, end_of_turn
        self.pairs = {pair.sample_id: pair for pair in pairs}

    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        """Each example scored; concurrently when the teacher paces its own requests."""
        return concurrently(self.teacher, self._sample, examples)

    def _sample(self, example: Example) -> SampleSignals:
        pair = self.pairs[example.sample_id]
        targets = [label for label in example.labels[1:] if label != IGNORE_INDEX]
        scored = self.teacher.score(pair_prompt(pair), pair.response + self.end_of_turn, self.top_k)
        if [position.token_id for position in scored[: len(targets)]] != targets:
            raise SignalsError(
                f"teacher {self.teacher.name} scored other tokens than the training "
                f"row {example.sample_id!r} holds; its tokenizer must be the student's"
            )
        top = top_k_of(scored[: len(targets)], self.top_k, f"sample {example.sample_id!r}")
        return SampleSignals(
            example.sample_id, input_hash(example.input_ids), top.ids, top.logprobs, top.log_tail
        )


class TeacherTokensSource(LocalTeacherSource):
    """White-box capture on the teacher's own tokens, with each position's token and offsets."""

    def __init__(self, *args: Any, tokenizer: Any, pairs: list[Pair], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer
        self.responses = {pair.sample_id: pair.response for pair in pairs}

    @torch.no_grad()
    def capture(self, examples: list[Example]) -> list[SampleSignals]:
        batch = {k: v.to(self.device) for k, v in collate(examples, self.pad_token_id).items()}
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        targets = labels[mask]  # (N,)
        tops, chosen, start = [], [], 0
        for logits in self._response_logits(batch, mask):
            rows = targets[start : start + logits.shape[0]]
            log_p = torch.log_softmax(logits.float() / self.temperature, dim=-1)
            tops.append(teacher_top_k(logits.float(), self.top_k, self.temperature))
            chosen.append(log_p.gather(1, rows[:, None]).squeeze(1))
            start += logits.shape[0]
        ids, logprobs, log_tail = (
            torch.cat(parts).cpu().numpy() for parts in zip(*(t[:3] for t in tops), strict=True)
        )
        target_logprob = torch.cat(chosen).cpu().numpy()
        samples, start = [], 0
        for example, count in zip(examples, mask.sum(dim=1).tolist(), strict=True):
            rows = slice(start, start + count)
            tokens = TeacherTokens(
                targets[rows].cpu().numpy(), target_logprob[rows], self._offsets(example, count)
            )
            samples.append(
                SampleSignals(
                    example.sample_id,
                    input_hash(example.input_ids),
                    ids[rows],
                    logprobs[rows],
                    log_tail[rows],
                    tokens,
                )
            )
            start += count
        return samples

    def _offsets(self, example: Example, count: int) -> np.ndarray:
        """Characters of the response under each position's token; (-1, -1) for end-of-turn."""
        _, offsets = token_offsets(self.tokenizer, self.responses[example.sample_id])
        found = np.full((count, 2), -1, dtype=np.int32)
        kept = min(count, len(offsets))
        if kept:
            found[:kept] = np.asarray(offsets[:kept], dtype=np.int32)
        return found
