"""Distortion-free marking for `distil serve --watermark --watermark-scheme exp-min`.

    teacher = ExpMinTeacher(teacher, ExpMinSampler(key, spec))
    teacher.generate_ids(prompts, Sampling(temperature=1.0))   # each token the keyed draw
    teacher.generate_ids(prompts, Sampling(temperature=0.0))   # greedy: unmarked

Sampled generation picks each token by keyed exponential-minimum sampling from the
distribution `generate` would have sampled from (after temperature and top-p), so over keys
the text is distributed as the model's own. Greedy decoding is left as it is, and the logprobs
returned are those of the model (raw logits, temperature 1), in generation and in scoring.

The draw replaces transformers' random one through its watermarking slot
(`GenerationConfig.watermarking_config`), the one processor that runs after every warper: it
returns the chosen token's score as 0 and every other as -inf, so the sampler can only take it.
The slot is set for the span of a sampled call; the server runs the model on one worker
thread, so no other call sees it.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import LogitsProcessor
from transformers.generation.configuration_utils import BaseWatermarkingConfig

from distil.models import LoadedModel
from distil.provenance import ExpMinSampler
from distil.teachers import Completion, LocalTeacher, Sampling


class _ExpMinProcessor(LogitsProcessor):
    """Leaves only the keyed draw from softmax(scores) possible at each step."""

    def __init__(self, sampler: ExpMinSampler) -> None:
        self.sampler = sampler

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.sampler(input_ids, scores)  # (B,)
        only = torch.full_like(scores, -torch.inf)  # (B, V)
        return only.scatter_(1, chosen[:, None], 0.0)


class _ExpMinSlot(BaseWatermarkingConfig):
    """What transformers' watermarking slot holds: builds the processor; shows no key."""

    def __init__(self, sampler: ExpMinSampler) -> None:
        self.sampler = sampler

    def validate(self) -> None:
        """Nothing to check: the sampler's settings were checked when it was made."""

    def construct_processor(self, vocab_size: int, device: Any = None) -> LogitsProcessor:
        return _ExpMinProcessor(self.sampler)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": "exp-min", "context_width": self.sampler.spec.context_width}

    def to_json_string(self) -> str:
        return repr(self.to_dict())


class ExpMinTeacher(LocalTeacher):
    """A local teacher (sharing another's model) whose sampled generation is marked."""

    def __init__(self, teacher: LocalTeacher, sampler: ExpMinSampler) -> None:
        loaded = LoadedModel(
            model=teacher.model, tokenizer=teacher.tokenizer, source=teacher.name, revision=teacher.revision
        )
        super().__init__(
            loaded, batch_size=teacher.batch_size, show_progress=teacher.show_progress, label=teacher.label
        )
        self.sampler = sampler

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], sampling: Sampling) -> list[Completion]:
        if sampling.temperature == 0:  # greedy: the model's own argmax, unmarked
            return super().generate_ids(prompt_ids, sampling)
        with _keyed_draws(self.model, self.sampler):
            return super().generate_ids(prompt_ids, sampling)


@contextmanager
def _keyed_draws(model: Any, sampler: ExpMinSampler) -> Iterator[None]:
    """Puts the exp-min draw into the model's watermarking slot for the span of the block."""
    config = model.generation_config
    before = config.watermarking_config
    config.watermarking_config = _ExpMinSlot(sampler)
    try:
        yield
    finally:
        config.watermarking_config = before
