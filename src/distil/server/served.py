"""The served model: OpenAI requests in, batched teacher calls, OpenAI responses out.

    served = ServedModel(teacher, settings, batcher)
    body = await served.chat(ChatRequest(...))          # a chat.completion, as a dict
    body = await served.complete(CompletionRequest(...))  # a text_completion

Limits are checked before anything reaches the model: an unknown model is a 404, a request
over a limit a 400 naming the parameter. A prompt whose characters cannot fit in the prompt
limit is refused before it is tokenised, a list of token ids, messages or prompts over a limit
before it is validated (`check_counts`), and tokenising runs on a worker thread, so one huge
prompt cannot hold up the event loop (and every other request). Logprobs are those of the
model's raw distribution (temperature 1) whatever the sampling temperature, as `LocalTeacher`
gives them, and cover the end-of-turn token that closes an answer.
"""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from jinja2 import TemplateError

from distil.models import chat_template_hash, tokenizer_hash
from distil.server.batching import Batcher
from distil.server.protocol import APIError, ChatRequest, CompletionRequest, OpenAIRequest, bad_request
from distil.server.settings import ServerSettings
from distil.server.tokens import TokenText, chat_logprobs, legacy_logprobs
from distil.teachers import Completion, LocalTeacher, Sampling, TokenLogprob, Usage

MIN_CHARS_PER_TOKEN_BOUND = 16
"""The least characters per token assumed when bounding a prompt's length by its characters."""


class ServedModel:
    """One local model behind the OpenAI endpoints, with the server's limits."""

    def __init__(self, teacher: LocalTeacher, settings: ServerSettings, batcher: Batcher) -> None:
        self.teacher, self.settings, self.batcher = teacher, settings, batcher
        self.tokenizer = teacher.tokenizer
        self.text = TokenText(self.tokenizer)
        self.created = int(time.time())
        self.vocab_size = teacher.model.get_input_embeddings().weight.shape[0]
        self.context = getattr(teacher.model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = settings.max_prompt_tokens or self.context
        self.max_prompt_chars = (
            None
            if self.max_prompt_tokens is None
            else self.max_prompt_tokens * chars_per_token_bound(self.tokenizer)
        )
        identity = [
            settings.served_name,
            teacher.name,
            str(teacher.revision),
            tokenizer_hash(self.tokenizer),
            str(chat_template_hash(self.tokenizer)),
        ]
        marking = teacher.logit_bias or getattr(teacher, "sampler", None)  # KGW or exp-min
        if marking is not None:  # a marked model answers otherwise: another identity
            identity.append(repr(marking))
        self.fingerprint = "fp_" + hashlib.sha256("\n".join(identity).encode()).hexdigest()[:12]

    def model_card(self) -> dict[str, Any]:
        return {
            "id": self.settings.served_name,
            "object": "model",
            "created": self.created,
            "owned_by": "distil",
        }

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        top_k = request.top_logprobs or 0
        self._check_common(request, wants_logprobs=bool(request.logprobs) or top_k > 0)
        if top_k and not request.logprobs:
            raise bad_request("top_logprobs requires logprobs=true", "top_logprobs")
        self._check_top_k(top_k, "top_logprobs")
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        self._check_chars(sum(len(m["content"]) for m in messages), "messages")
        prompt_ids = await asyncio.to_thread(self._render, messages)
        max_tokens = request.max_completion_tokens or request.max_tokens
        max_tokens = self._check_lengths(prompt_ids, max_tokens, "messages")
        sampling = self._sampling(request, max_tokens, logprobs=bool(request.logprobs), top_k=top_k)
        completion = self._returned(await self.batcher.generate(prompt_ids, sampling))
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": completion.finish_reason,
            "message": {"role": "assistant", "content": completion.text, "refusal": None},
            "logprobs": None
            if not request.logprobs
            else {"content": chat_logprobs(completion.logprobs or (), top_k, self.text), "refusal": None},
        }
        body = self._envelope("chatcmpl", "chat.completion", [choice], [completion])
        if request.return_token_ids:
            body["prompt_token_ids"] = list(prompt_ids)
            choice["token_ids"] = list(completion.token_ids or ())
        return body

    async def complete(self, request: CompletionRequest) -> dict[str, Any]:
        self._check_common(request, wants_logprobs=request.logprobs is not None)
        if request.suffix:
            raise bad_request("suffix is not supported by this server", "suffix", "unsupported_parameter")
        top_k = request.logprobs or 0
        self._check_top_k(top_k, "logprobs")
        texts, prompts = await self._prompts(request.prompt)
        max_tokens = min(self._check_lengths(ids, request.max_tokens, "prompt") for ids in prompts)
        sampling = self._sampling(request, max_tokens, logprobs=request.logprobs is not None, top_k=top_k)
        echo_scores = request.echo and request.logprobs is not None
        completions, scores = await asyncio.gather(
            self._generate_all(prompts, sampling),
            asyncio.gather(*(self._score_prompt(ids, top_k) for ids in prompts if echo_scores)),
        )
        choices = []
        for index, (text, ids, completion) in enumerate(zip(texts, prompts, completions, strict=True)):
            choice = {
                "index": index,
                "finish_reason": completion.finish_reason,
                "logprobs": None,
                "text": (text if request.echo else "") + completion.text,
            }
            if request.logprobs is not None:
                entries = list(completion.logprobs or ())
                token_ids = list(completion.token_ids or ())
                if request.echo:
                    entries, token_ids = [*scores[index], *entries], [*ids, *token_ids]
                choice["logprobs"] = legacy_logprobs(entries, token_ids, top_k, self.text)
            if request.return_token_ids:
                choice["prompt_token_ids"] = list(ids)
                choice["token_ids"] = list(completion.token_ids or ())
            choices.append(choice)
        return self._envelope("cmpl", "text_completion", choices, completions)

    def _check_common(self, request: OpenAIRequest, wants_logprobs: bool) -> None:
        if request.model != self.settings.served_name:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist; this server "
                f"serves '{self.settings.served_name}' (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        request.check_supported()
        if wants_logprobs and self.settings.refuse_logprobs:
            raise bad_request(
                "Unsupported parameter: 'logprobs' is not supported with this model.",
                "logprobs",
                "unsupported_parameter",
            )

    def _check_top_k(self, top_k: int, param: str) -> None:
        if top_k > self.settings.max_top_logprobs:
            raise bad_request(
                f"{param} may be at most {self.settings.max_top_logprobs} on this server (asked for {top_k})",
                param,
                "invalid_value",
            )

    def _check_chars(self, chars: int, param: str) -> None:
        """Refuse a prompt whose characters alone prove it longer than the prompt limit."""
        if self.max_prompt_chars is not None and chars > self.max_prompt_chars:
            raise bad_request(
                f"the prompt is {chars} characters long, more than can fit in this "
                f"server's limit of {self.max_prompt_tokens} tokens (at most "
                f"{self.max_prompt_chars} characters); shorten it",
                param,
                "context_length_exceeded",
            )

    def _render(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            return self.teacher.render(messages)
        except TemplateError as err:
            raise bad_request(
                f"the model's chat template cannot render these messages: {err}", "messages"
            ) from None

    def _check_lengths(self, prompt_ids: Sequence[int], max_tokens: int | None, param: str) -> int:
        """The max_tokens to generate, after checking prompt and completion against the limits."""
        if not prompt_ids:
            raise bad_request("the prompt is empty; send at least one token", param)
        if self.max_prompt_tokens is not None and len(prompt_ids) > self.max_prompt_tokens:
            raise bad_request(
                f"the prompt is {len(prompt_ids)} tokens long; this server accepts "
                f"at most {self.max_prompt_tokens}",
                param,
                "context_length_exceeded",
            )
        room = (
            self.settings.max_tokens
            if self.context is None
            else min(self.settings.max_tokens, self.context - len(prompt_ids))
        )
        if max_tokens is None:
            if room <= 0:
                raise bad_request(
                    f"the prompt fills the model's context of {self.context} tokens; shorten it",
                    param,
                    "context_length_exceeded",
                )
            return room
        if max_tokens > self.settings.max_tokens:
            raise bad_request(
                f"max_tokens may be at most {self.settings.max_tokens} on this server "
                f"(asked for {max_tokens})",
                "max_tokens",
                "invalid_value",
            )
        if self.context is not None and len(prompt_ids) + max_tokens > self.context:
            raise bad_request(
                f"This model's maximum context length is {self.context} tokens; you "
                f"asked for {len(prompt_ids) + max_tokens} ({len(prompt_ids)} in the "
                f"prompt, {max_tokens} to generate); shorten the prompt or lower "
                "max_tokens",
                param,
                "context_length_exceeded",
            )
        return max_tokens

    async def _prompts(self, prompt: Any) -> tuple[list[str], list[list[int]]]:
        """The prompts of a completions request as texts (for echo) and token ids."""
        items = (
            [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else list(prompt)
        )
        if not items:
            raise bad_request("prompt is an empty list; send at least one prompt", "prompt")
        self._check_prompt_counts(items)
        for item in items:
            if isinstance(item, str):
                self._check_chars(len(item), "prompt")
        return await asyncio.to_thread(self._encode, items)

    def check_counts(self, payload: Any, endpoint: str) -> None:
        """Refuse, before it is validated, a request whose lists alone put it over a limit:
        validating millions of token ids, messages or content parts holds the event loop (and
        every other request) for seconds. Counting them takes a few microseconds."""
        if not isinstance(payload, dict):
            return
        prompt, messages = payload.get("prompt"), payload.get("messages")
        if endpoint == "completions" and isinstance(prompt, list):
            self._check_prompt_counts(prompt if prompt and isinstance(prompt[0], list | str) else [prompt])
        if endpoint == "chat" and isinstance(messages, list) and self.max_prompt_tokens is not None:
            items = len(messages)
            if items <= self.max_prompt_tokens:
                items += sum(
                    len(m["content"])
                    for m in messages
                    if isinstance(m, dict) and isinstance(m.get("content"), list)
                )
            if items > self.max_prompt_tokens:
                raise bad_request(
                    f"the messages hold {items} messages and content parts; this "
                    f"server accepts at most {self.max_prompt_tokens} (its prompt "
                    "limit in tokens)",
                    "messages",
                    "context_length_exceeded",
                )

    def _check_prompt_counts(self, items: list[Any]) -> None:
        """At most max_prompts prompts, none of token ids longer than the prompt limit."""
        if len(items) > self.settings.max_prompts:
            raise bad_request(
                f"at most {self.settings.max_prompts} prompts per request on this server (got {len(items)})",
                "prompt",
            )
        for item in items:
            if (
                isinstance(item, list)
                and self.max_prompt_tokens is not None
                and len(item) > self.max_prompt_tokens
            ):
                raise bad_request(
                    f"the prompt is {len(item)} tokens long; this server accepts at "
                    f"most {self.max_prompt_tokens}",
                    "prompt",
                    "context_length_exceeded",
                )

    def _encode(self, items: list[str | list[int]]) -> tuple[list[str], list[list[int]]]:
        texts, prompts = [], []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
                prompts.append(self.tokenizer(item).input_ids)
                continue
            if any(not 0 <= token < self.vocab_size for token in item):
                raise bad_request(f"token ids must lie in [0, {self.vocab_size}) for this model", "prompt")
            texts.append(self.tokenizer.decode(item))
            prompts.append(list(item))
        return texts, prompts

    def _sampling(self, request: OpenAIRequest, max_tokens: int, logprobs: bool, top_k: int) -> Sampling:
        return Sampling(
            max_new_tokens=max_tokens,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            stop=request.stop_strings(),
            logprobs=logprobs,
            top_logprobs=top_k,
        )

    async def _generate_all(self, prompts: list[list[int]], sampling: Sampling) -> list[Completion]:
        if sampling.max_new_tokens == 0:
            return [
                Completion(
                    text="", token_ids=(), finish_reason="length", usage=Usage(len(ids), 0), logprobs=()
                )
                for ids in prompts
            ]
        completions = await self.batcher.generate_many(prompts, sampling)
        return [self._returned(completion) for completion in completions]

    async def _score_prompt(self, prompt_ids: list[int], top_k: int) -> list[TokenLogprob | None]:
        """Logprobs of a prompt's own tokens; nothing predicts the first one."""
        if len(prompt_ids) == 1:
            return [None]
        return [None, *await self.batcher.score(prompt_ids[:1], prompt_ids[1:], top_k)]

    def _returned(self, completion: Completion) -> Completion:
        """The completion's tokens as answered: those of its text when a stop string cut it
        short, else every token generated, the end-of-turn token that closed it included (usage
        counts it; the teacher keeps it apart, with the logprobs generation gave it)."""
        ids = completion.token_ids or ()
        if completion.finish_reason != "stop":
            return completion
        if self.tokenizer.decode(list(ids), skip_special_tokens=True) != completion.text:
            return self._cut_to_text(completion)
        end = self.tokenizer.eos_token_id
        if end is None or completion.usage.completion_tokens != len(ids) + 1:
            return completion
        logprobs = completion.logprobs
        if logprobs is not None and completion.end_of_turn is not None:
            logprobs = (*logprobs, completion.end_of_turn)
        return replace(completion, token_ids=(*ids, end), logprobs=logprobs, end_of_turn=None)

    def _cut_to_text(self, completion: Completion) -> Completion:
        """Keep only the tokens of the returned text (a stop string cut it short)."""
        ids = completion.token_ids or ()
        decode = self.tokenizer.decode
        keep = next(
            n
            for n in range(len(ids) + 1)
            if len(decode(list(ids[:n]), skip_special_tokens=True)) >= len(completion.text)
        )
        logprobs = None if completion.logprobs is None else completion.logprobs[:keep]
        return replace(completion, token_ids=ids[:keep], logprobs=logprobs)

    def _envelope(
        self, prefix: str, kind: str, choices: list[dict[str, Any]], completions: Sequence[Completion]
    ) -> dict[str, Any]:
        prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
        completion_tokens = sum(c.usage.completion_tokens for c in completions)
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.settings.served_name,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def chars_per_token_bound(tokenizer: Any) -> int:
    """Most characters one token can stand for, generously: twice the longest vocabulary entry
    (a normaliser may fold characters together), and at least MIN_CHARS_PER_TOKEN_BOUND."""
    longest = max((len(piece) for piece in tokenizer.get_vocab()), default=0)
    return max(MIN_CHARS_PER_TOKEN_BOUND, 2 * longest)
