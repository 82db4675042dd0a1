"""A local Hugging Face model as a teacher: batched generation with a KV cache, and scoring.

    teacher = LocalTeacher.load("demo")
    out = teacher.generate(prompts, Sampling(max_new_tokens=48, top_logprobs=8))

Prompts are rendered with the tokenizer's chat template (plain text without one), batched
by length with left padding, and generated with `model.generate` (KV cache on). Top-k
logprobs come from the raw logits (temperature 1) at each generated position.

`teacher.logit_bias = bias` (a callable: input ids (N, T) -> (N, V), e.g. a watermark's
`distil.provenance.KGWBias`) adds `bias(context)` to the logits everywhere: generation,
sampled or greedy, draws from the biased distribution at its temperature (softmax((logits +
bias) / T), top-p taken on it), and the logprobs returned by `generate` and `score_ids` are
those of the biased distribution (temperature 1).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from distil.models import LoadedModel, load_model
from distil.progress import progress_bar
from distil.teachers.base import (
    Capabilities,
    Completion,
    Prompt,
    Sampling,
    TokenLogprob,
    TopLogprob,
    Usage,
    as_messages,
)


def render_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt as `tokenizer`'s model sees it, ready for the response to follow:
    the chat template with the generation prompt, or plain text without a template."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False).input_ids
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return tokenizer(text).input_ids


@dataclass(frozen=True)
class Answer:
    """What generated ids say, read alike for every engine (`read_answer`)."""

    ids: list[int]
    """The tokens up to the first end-of-turn (eos) token, which is left out."""
    text: str
    """`ids` decoded without special tokens, cut before the earliest stop string."""
    finish_reason: str
    """`stop` (the eos or a stop string ended it) or `length`."""
    closed: bool
    """Whether an eos token ended it (at position len(ids))."""


def read_answer(tokenizer: Any, generated: Sequence[int], stop: Sequence[str]) -> Answer:
    """The answer in `generated` (ids after the prompt): cut at the tokenizer's eos, decoded,
    and its text cut at the earliest of the `stop` strings (the ids are kept whole)."""
    ids, eos = list(generated), tokenizer.eos_token_id
    closed = eos in ids
    if closed:
        ids = ids[: ids.index(eos)]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cuts = [text.index(s) for s in stop if s and s in text]
    if cuts:  # the earliest match over all stop strings, whatever their order
        text = text[: min(cuts)]
    return Answer(ids, text, "stop" if closed or cuts else "length", closed)


class LocalTeacher:
    """A causal LM in this process: white-box, so it can return any top-k and score."""

    def __init__(
        self, loaded: LoadedModel, batch_size: int = 32, show_progress: bool = False, label: str = "teacher"
    ) -> None:
        self.loaded = loaded
        """The model and tokenizer, for the stages that read its logits (white-box)."""
        self.model = loaded.model.eval()
        self.label = label
        self.tokenizer = loaded.tokenizer
        self.name = loaded.source
        self.revision = loaded.revision
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.logit_bias: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def load(
        cls,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device: str | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> "LocalTeacher":
        """Load a folder, hub id, GGUF file, packaged or built-in name (`demo`, `tiny-teacher`)
        as a teacher."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_model(
            model,
            "teacher",
            revision=revision,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            device=device,
        )
        return cls(loaded, batch_size=batch_size, show_progress=show_progress)

    @property
    def capabilities(self) -> Capabilities:
        vocab = self.model.get_output_embeddings().weight.shape[0]
        return Capabilities(
            logprobs=True,
            max_top_logprobs=vocab,
            can_score=True,
            token_ids=True,
            logits=True,
            hidden_states=True,
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.name, "revision": self.revision, "endpoint": None}

    def offers(self) -> list[str]:
        return [f"teacher {self.name} (local): full distributions; any top-k and scoring available"]

    def close(self) -> None:
        """Nothing to release: the model is freed with the teacher."""

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt as the model sees it, ready for the response to follow."""
        return render_ids(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        return self.generate_ids([self.render(p) for p in prompts], sampling)

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], sampling: Sampling) -> list[Completion]:
        """Generate from already-tokenised prompts (batched by length, order kept)."""
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        results: list[Completion | None] = [None] * len(prompt_ids)
        bar = progress_bar()
        bar.disable = not self.show_progress  # else a hidden bar still prints a line per call
        with bar:
            task = bar.add_task(self.label, total=len(order))
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self._generate_batch([prompt_ids[i] for i in rows], sampling, seed_offset=start)
                for row, completion in zip(rows, batch, strict=True):
                    results[row] = completion
                bar.update(task, advance=len(rows))
        return [r for r in results if r is not None]

    @torch.no_grad()
    def _generate_batch(
        self, prompts: list[Sequence[int]], sampling: Sampling, seed_offset: int
    ) -> list[Completion]:
        input_ids, attention_mask = self._left_pad(prompts)
        want_logprobs = sampling.logprobs or sampling.top_logprobs > 0
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed + seed_offset)
        greedy = sampling.temperature == 0
        biased = None if self.logit_bias is None else _BiasProcessor(self.logit_bias)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=want_logprobs,
            logits_processor=None if biased is None else LogitsProcessorList([biased]),
        )
        new_tokens = out.sequences[:, input_ids.shape[1] :]  # (B, T_new)
        log_probs = None
        if want_logprobs:
            logits = torch.stack(out.logits, dim=1).float()  # (B, T_new, V), raw
            if biased is not None:
                logits = logits + torch.stack(biased.added, dim=1)
            log_probs = torch.log_softmax(logits, dim=-1)
        return [
            self._completion(
                new_tokens[b], None if log_probs is None else log_probs[b], len(prompts[b]), sampling
            )
            for b in range(len(prompts))
        ]

    def _left_pad(self, prompts: list[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        device = self.model.device
        input_ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(device), attention_mask.to(device)

    def _completion(
        self, generated: torch.Tensor, log_probs: torch.Tensor | None, prompt_tokens: int, sampling: Sampling
    ) -> Completion:
        answer = read_answer(self.tokenizer, generated.tolist(), sampling.stop)
        ids, eos = answer.ids, self.tokenizer.eos_token_id
        logprobs = end_of_turn = None
        if log_probs is not None:
            logprobs = tuple(
                self._token_logprob(token, log_probs[t], sampling.top_logprobs) for t, token in enumerate(ids)
            )
            if answer.closed:  # the eos closed it, at position len(ids)
                end_of_turn = self._token_logprob(eos, log_probs[len(ids)], sampling.top_logprobs)
        return Completion(
            text=answer.text,
            token_ids=tuple(ids),
            finish_reason=answer.finish_reason,
            usage=Usage(prompt_tokens, len(ids) + answer.closed),
            logprobs=logprobs,
            end_of_turn=end_of_turn,
        )

    def _token_logprob(self, token: int, log_probs: torch.Tensor, k: int) -> TokenLogprob:
        top = ()
        if k > 0:
            values, indices = log_probs.topk(min(k, log_probs.shape[-1]))
            top = tuple(
                TopLogprob(int(i), self.tokenizer.decode([int(i)]), float(v))
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            )
        return TokenLogprob(token, self.tokenizer.decode([token]), float(log_probs[token]), top)

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        completion_ids = self.tokenizer(completion, add_special_tokens=False).input_ids
        return self.score_ids(self.render(prompt), completion_ids, top_logprobs)

    @torch.no_grad()
    def score_ids(
        self, prompt_ids: Sequence[int], completion_ids: Sequence[int], top_logprobs: int
    ) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `completion_ids` after `prompt_ids`, with top-k."""
        ids = torch.tensor([list(prompt_ids) + list(completion_ids)], device=self.model.device)
        logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()  # (T_c, V)
        if self.logit_bias is not None and len(completion_ids):
            logits = logits + self._scoring_bias(ids[0], len(prompt_ids))
        log_probs = torch.log_softmax(logits, dim=-1)
        return [
            self._token_logprob(token, log_probs[t], top_logprobs) for t, token in enumerate(completion_ids)
        ]

    def _scoring_bias(self, ids: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """logit_bias at each completion position, its context left-padded with the pad token
        as in batched generation. ids (T,) -> (T - prompt_length, V)."""
        width = ids.shape[0]
        padded = torch.cat(
            [torch.full((width,), self.tokenizer.pad_token_id or 0, dtype=ids.dtype, device=ids.device), ids]
        )
        contexts = padded.unfold(0, width, 1)[prompt_length:width]  # (T_c, T): what precedes each
        return self.logit_bias(contexts).to(ids.device)


class _BiasProcessor(LogitsProcessor):
    """Adds `bias(input_ids)` to the raw logits. `generate` runs the processors it is given
    before its temperature and top-p warpers, so the sampled distribution is
    softmax((logits + bias) / T), its nucleus taken on that marked distribution, as for any
    model whose logits are logits + bias. Keeps each step's bias so the logprobs can be those
    of the marked distribution."""

    def __init__(self, bias: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.bias = bias
        self.added: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bias = self.bias(input_ids).to(scores.device, torch.float32)  # (B, V)
        self.added.append(bias)
        return scores + bias.to(scores.dtype)
