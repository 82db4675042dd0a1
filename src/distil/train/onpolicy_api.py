"""On-policy distillation from a teacher behind an API: the student's samples, scored by it.

With `teacher.api` and `distill.on_policy.lmbda > 0`, an on-policy micro-batch's responses
(the student's samples, distil.train.onpolicy) are decoded to text and scored by the teacher
(completions `echo` with the top `on_policy.top_k` logprobs; distil.signals.scoring). The
positions trained are the teacher's tokens of that text: with the one tokenizer an API
teacher must share with the student, the canonical tokenization of the sample (a sampled
"1" "2" where the tokenizer writes "12" is trained as "12"). The divergence is the sparse
one over the returned top-k, as from a store; off-policy micro-batches read the store.

Every scoring request is journaled as it finishes (RUN/on_policy/scores-RANK.jsonl, one per
process; distil.teachers.journal) under a key of what decides its answer (endpoint, model,
prompt, scored text, top-k). The samples are a pure function of (seed, micro-batch), so a
run resumed after a kill samples what the killed run sampled, finds the scores in the journal
and sends nothing twice; teacher.api.budget caps count every attempt the journal holds, across
runs (each process counts its own journal).
"""

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data import Example, Pair
from distil.losses import IGNORE_INDEX, TopKTeacher
from distil.progress import console
from distil.recipe import Recipe
from distil.signals.scoring import ScoredTopK, check_can_score, concurrently, pair_prompt, top_k_of
from distil.teachers import open_teacher
from distil.teachers.base import Completion, TeacherError, as_messages
from distil.teachers.journal import Entry, Journal, request_key
from distil.train.batch import Batch, BatchLayout
from distil.train.onpolicy import prompt_ids
from distil.train.signals import StudentSide, TopKGrader


def journal_path(run_dir: Path, rank: int) -> Path:
    """The scoring journal of process `rank`."""
    return run_dir / "on_policy" / f"scores-{rank}.jsonl"


class ScoringOnPolicyTeacher:
    """Scores the student's samples through an API teacher, journaled and budgeted."""

    def __init__(
        self, teacher: Any, journal: Journal, pairs: list[Pair], tokenizer: Any, top_k: int, vocab: int
    ) -> None:
        self.teacher, self.journal, self.tokenizer = teacher, journal, tokenizer
        self.top_k, self.vocab = top_k, vocab
        self.pairs = {pair.sample_id: pair for pair in pairs}

    @classmethod
    def open(
        cls, recipe: Recipe, pairs: list[Pair], tokenizer: Any, vocab: int, rank: int
    ) -> "ScoringOnPolicyTeacher":
        """The recipe's API teacher, probed, with the process's journal (locked) as its ledger."""
        top_k = recipe.distill.on_policy.top_k
        journal = Journal.open(journal_path(recipe.run_dir, rank))
        try:
            teacher = open_teacher(
                recipe.teacher, seed=recipe.seed, journal=journal, probe_top_logprobs=top_k
            )
        except BaseException:
            journal.close()
            raise
        scorer = cls(teacher, journal, pairs, tokenizer, top_k, vocab)
        try:
            for line in teacher.offers():
                console.print(line, highlight=False)
            check_can_score(teacher, top_k, "on-policy distillation (distill.on_policy)")
        except BaseException:
            scorer.close()
            raise
        return scorer

    def score(self, sampled: list[Example], max_length: int) -> tuple[list[Example], TopKTeacher]:
        """The samples as the teacher tokenized and scored them (cut to `max_length` with
        their prompts), and its top-k over their response positions in the trainer's order:
        ids, logprobs (N, k) and log_tail (N,)."""
        scored = concurrently(self.teacher, self._score_one, sampled)
        examples, tops = [], []
        for example, top in zip(sampled, scored, strict=True):
            prompt = prompt_ids(example)
            kept = max(0, min(len(top.token_ids), max_length - len(prompt)))
            response = top.token_ids[:kept]
            examples.append(
                Example(example.sample_id, prompt + response, [IGNORE_INDEX] * len(prompt) + response)
            )
            tops.append((top.ids[:kept], top.logprobs[:kept], top.log_tail[:kept]))
        ids, logprobs, log_tail = (torch.from_numpy(np.concatenate(part)) for part in zip(*tops, strict=True))
        return examples, TopKTeacher(ids, logprobs, log_tail)

    def _score_one(self, example: Example) -> ScoredTopK:
        """One sample's top-k: from the journal, or asked of the teacher and journaled."""
        response = example.input_ids[len(prompt_ids(example)) :]
        ended = bool(response) and response[-1] == self.tokenizer.eos_token_id
        text = self.tokenizer.decode(response[:-1] if ended else response)
        completion = text + (self.tokenizer.eos_token if ended else "")
        prompt = pair_prompt(self.pairs[example.sample_id])
        request = {
            "endpoint": f"{self.teacher.base_url} (completions echo)",
            "model": self.teacher.name,
            "messages": as_messages(prompt),
            "sampling": {"score": completion, "top_logprobs": self.top_k},
            "seed": None,
        }
        key = request_key(
            request["endpoint"], request["model"], request["messages"], request["sampling"], None
        )
        entry = self.journal.get(key)
        if entry is None or not entry.ok or entry.completion is None:
            entry = self._ask(key, request, prompt, completion)
        assert entry.completion is not None and entry.completion.logprobs is not None
        top = top_k_of(
            entry.completion.logprobs, self.top_k, f"the student's sample for {example.sample_id!r}"
        )
        if max(top.token_ids, default=0) >= self.vocab or int(top.ids.max(initial=0)) >= self.vocab:
            raise TeacherError(
                f"teacher {self.teacher.name} scored tokens outside the student's "
                f"vocabulary ({self.vocab} tokens); on-policy distillation through "
                "an API needs the student's tokenizer (teacher.api.tokenizer)"
            )
        return top

    def _ask(self, key: str, request: dict[str, Any], prompt: Any, completion: str) -> Entry:
        started = time.time()
        scored, usage, attempts = self.teacher.run(
            self.teacher.ascore_billed(prompt, completion, self.top_k, key=key)
        ).result()
        entry = Entry(
            key,
            "ok",
            request,
            attempts,
            started,
            time.time(),
            Completion(completion, None, "scored", usage, tuple(scored)),
            attempts_recorded=True,
        )
        self.journal.append(entry)
        return entry

    def close(self) -> None:
        self.teacher.close()
        self.journal.close()


class ApiScoredSamples(TopKGrader):
    """The student's samples graded by the API teacher's scores of them: a top-k grader, as a
    store's, without hard labels."""

    def __init__(
        self, student: StudentSide, layout: BatchLayout, scorer: ScoringOnPolicyTeacher, max_length: int
    ) -> None:
        super().__init__(student)
        self.layout, self.scorer, self.max_length = layout, scorer, max_length

    def grade_samples(self, sampled: list[Example]) -> Batch:
        examples, top = self.scorer.score(sampled, self.max_length)
        return self.layout.batch(examples, self, teacher=top, hard_labels=False)
