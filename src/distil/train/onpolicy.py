"""On-policy distillation (GKD's mixing): some micro-batches are the student's own samples.

With probability `distill.on_policy.lmbda` a micro-batch's prompts are answered by the
student itself (batched `generate` with a KV cache, at the section's temperature), and the
teacher then scores those tokens in the usual teacher-forced forward: the divergence trains
the student where its own mistakes lead it (Agarwal et al. 2024). The samples come from the
student's own distribution: nothing of its `generation_config` (a repetition penalty, a
minimum length, ...) shapes them. The hard-label term does not apply there (its labels
would be the student's own tokens).

Both the draw and the sampling are pure functions of (seed, micro-batch number), like the
batch order: the trainer state's micro-batch position is the generation RNG's whole state,
so a resumed run samples exactly what an uninterrupted one would have.

`OnPolicy` is this mixing as a source of batches, around the session's off-policy signal
(distil.train.signals): an on-policy batch's teacher side comes from a grader of samples,
the live teacher (`LiveTeacher.grade_samples`) or a teacher behind an API that scores them
itself (distil.train.onpolicy_api). With `distill.on_policy.generator: vllm` the samples are
drawn by a vLLM engine holding the student's current weights (distil.train.vllm_sampler).
"""

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig

from distil.data import Example
from distil.losses import IGNORE_INDEX
from distil.recipe.onpolicy import OnPolicySection
from distil.train.batch import Batch
from distil.train.signals import TrainingSignal


def on_policy_turn(lmbda: float, seed: int, micro_batch: int) -> bool:
    """Whether micro-batch number `micro_batch` is on-policy: a seeded coin of bias `lmbda`."""
    if lmbda <= 0:
        return False
    return lmbda >= 1 or random.Random(f"{seed}:on-policy:{micro_batch}").random() < lmbda


def prompt_ids(example: Example) -> list[int]:
    """The prompt part of a tokenised pair (the ids before the first response label)."""
    start = next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), len(example.labels))
    return example.input_ids[:start]


def sample_responses(
    model: Any,
    examples: list[Example],
    config: OnPolicySection,
    eos_token_id: int,
    pad_token_id: int,
    max_length: int,
    seed: int,
) -> list[Example]:
    """The examples' prompts with the student's sampled responses (cut after the first eos
    and to `max_length` with the prompt), labelled like dataset responses."""
    prompts = [prompt_ids(e) for e in examples]
    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # left padding: every row continues at the end
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt) :] = 1
    room = max_length - min(len(p) for p in prompts)
    generated = _generate(
        model,
        input_ids.to(device),
        attention_mask.to(device),
        _generation_config(config, min(config.max_new_tokens, room), eos_token_id, pad_token_id),
        seed,
    )
    responses = [_until_eos(row, eos_token_id) for row in generated[:, width:].tolist()]
    return [
        Example(e.sample_id, p + r[: max_length - len(p)], [IGNORE_INDEX] * len(p) + r[: max_length - len(p)])
        for e, p, r in zip(examples, prompts, responses, strict=True)
    ]


class OnPolicy:
    """Micro-batches of the student's own samples (a seeded coin of bias `lmbda` per
    micro-batch), graded by `grade`; the others come from the off-policy signal."""

    def __init__(
        self,
        off_policy: TrainingSignal,
        grade: Callable[[list[Example]], Batch],
        student: Callable[[], Any],
        tokenizer: Any,
        config: OnPolicySection,
        max_length: int,
        seed: int,
        close: Callable[[], None] = lambda: None,
        sampler: Any = None,
    ) -> None:
        self.off_policy, self.grade, self.student = off_policy, grade, student
        self.tokenizer, self.config, self.max_length, self.seed = tokenizer, config, max_length, seed
        self._close = close
        self.sampler = sampler
        """Draws the samples instead of transformers' generate (distil.train.vllm_sampler)."""
        self.store: Path | None = off_policy.store

    def batch(self, rows: list[Example], number: int) -> Batch:
        if not on_policy_turn(self.config.lmbda, self.seed, number):
            return self.off_policy.batch(rows, number)
        seed = generation_seed(self.seed, number)
        if self.sampler is not None:
            return self.grade(self.sampler.sample(self.student(), rows, seed))
        sampled = sample_responses(
            self.student(),
            rows,
            self.config,
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
            self.max_length,
            seed=seed,
        )
        return self.grade(sampled)

    def close(self) -> None:
        self.off_policy.close()
        self._close()
        if self.sampler is not None:
            self.sampler.close()


def generation_seed(seed: int, micro_batch: int) -> int:
    """The sampling seed of one micro-batch."""
    return random.Random(f"{seed}:sample:{micro_batch}").getrandbits(63)


def _generation_config(
    config: OnPolicySection, max_new_tokens: int, eos_token_id: int, pad_token_id: int
) -> GenerationConfig:
    """Sampling at the section's temperature (greedy at 0), no top-k or top-p cut, ending at
    eos or `max_new_tokens`; every other field at transformers' neutral default."""
    sampling = config.temperature > 0
    extra = {"temperature": config.temperature, "top_k": 0, "top_p": 1.0} if sampling else {}
    return GenerationConfig(
        do_sample=sampling,
        max_new_tokens=max(1, max_new_tokens),
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        use_cache=True,
        **extra,
    )


@torch.no_grad()
def _generate(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, generation: GenerationConfig, seed: int
) -> torch.Tensor:
    """model.generate in eval mode, under its own seeded RNG (the global one is untouched).

    `generate` fills every field `generation` leaves unset from the model's own
    generation_config (repetition_penalty, no_repeat_ngram_size, min_p, bad_words_ids, ...):
    a neutral one stands in for it meanwhile, so only `generation` shapes the samples."""
    devices = [input_ids.device.index or 0] if input_ids.is_cuda else []
    was_training, own = model.training, model.generation_config
    model.eval()
    model.generation_config = GenerationConfig()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=generation
            )
    finally:
        model.generation_config = own
        model.train(was_training)


def _until_eos(tokens: list[int], eos_token_id: int) -> list[int]:
    """Generated ids up to and including the first eos (padding after it dropped)."""
    return tokens[: tokens.index(eos_token_id) + 1] if eos_token_id in tokens else tokens
