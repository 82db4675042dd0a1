"""A teacher behind an OpenAI-compatible API, on the official `openai` SDK (async).

    teacher = ApiTeacher("gpt-4o-mini", "https://api.openai.com/v1",
                         api_key_env="OPENAI_API_KEY", concurrency=16, requests_per_minute=500)
    report = teacher.probe(want_top_logprobs=5)     # what the endpoint offers, in words
    completions = teacher.generate(prompts, Sampling(max_new_tokens=256, top_logprobs=5))
    future = teacher.submit(prompt, sampling)       # -> Outcome: a completion or a failure

The async core runs on the teacher's own event loop in a background thread, so sync
callers (`generate`, `score`) and the synth stage (which submits many requests and journals
each one as it finishes) share one connection pool and one set of limits: at most
`concurrency` requests in flight, token buckets for requests and tokens per minute, one
shared pause when the server answers 429 with Retry-After, exponential backoff with
jitter otherwise, a timeout per request, and budget caps checked before each request.
The SDK's own retries are off: every attempt is counted here.
"""

import asyncio
import concurrent.futures
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai

from distil.teachers.api_errors import Failure, Where, classify, scrub
from distil.teachers.api_parse import chat_completion, echoed_logprobs, text_completion
from distil.teachers.base import (
    Capabilities,
    Completion,
    NotSupportedError,
    Prompt,
    Sampling,
    TeacherError,
    TokenLogprob,
    Usage,
    as_messages,
)
from distil.teachers.budget import Spend
from distil.teachers.outcome import Outcome
from distil.teachers.ratelimit import RateLimiter, backoff_delay
from distil.teachers.tokenmap import TokenMap, count_prompt_tokens, render_prompt

T = TypeVar("T")
Endpoint = Literal["chat", "completions"]
NO_KEY = "no-key"  # sent when the server needs no key; the SDK insists on one


@dataclass(frozen=True)
class Attempted:
    """The result of `_attempts`: a value, or the last failure and its cause."""

    value: Any
    served_model: str | None
    failure: Failure | None
    cause: str | None
    attempts: int
    started: float
    """Unix time of the first attempt (after waiting for a slot and the rate limits)."""


class _LoopThread:
    """An event loop in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="distil-api", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def read_api_key(api_key_env: str | None) -> str:
    """The key from the named environment variable (never from the recipe itself)."""
    if api_key_env is None:
        return NO_KEY
    key = os.environ.get(api_key_env, "").strip()
    if not key:
        raise TeacherError(f"the environment variable {api_key_env} (teacher.api.api_key_env) is "
                           f"not set; export {api_key_env}=<your key>, or set "
                           "teacher.api.api_key_env to null for a server without keys")
    return key


class ApiTeacher:
    """An OpenAI-compatible endpoint as a `Teacher`: text, sampled and top-k logprobs, scoring."""

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 endpoint: Endpoint = "chat", concurrency: int = 8,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 timeout_s: float = 60.0, max_retries: int = 6, backoff_s: float = 1.0,
                 backoff_max_s: float = 60.0, tokenizer: Any = None, tokenizer_name: str | None = None,
                 spend: Spend | None = None, http_client: Any = None, seed: int = 0) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.endpoint: Endpoint = endpoint
        self.concurrency = concurrency
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.tokenizer = tokenizer
        self.tokenizer_name = tokenizer_name
        self.token_map = TokenMap(tokenizer, tokenizer_name or "the tokenizer") if tokenizer else None
        self.spend = spend or Spend()
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self.where = Where(self.base_url, model, endpoint, api_key_env)
        self.counts: Counter[str] = Counter()
        self.probe_report: Any = None
        self._api_key = read_api_key(api_key_env)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._rng = random.Random(seed)
        self._paused_until = 0.0
        self._thread = _LoopThread()
        self.client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url,
                                         max_retries=0, timeout=timeout_s, http_client=http_client)

    # -- the Teacher protocol -------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What the endpoint offers (probed on first use)."""
        if self.probe_report is None:
            self.probe()
        return self.probe_report.capabilities

    def describe(self) -> dict[str, Any]:
        return {"backend": "api", "model": self.name, "revision": None,
                "endpoint": f"{self.base_url} ({self.endpoint})"}

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        futures = [self.submit(prompt, sampling) for prompt in prompts]
        try:
            outcomes = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        failed = [o for o in outcomes if o.completion is None]
        if failed:
            raise TeacherError(f"{len(failed)} of {len(prompts)} requests to {self.base_url} failed; "
                               f"first: {failed[0].error}")
        return [o.completion for o in outcomes if o.completion is not None]

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        caps = self.capabilities
        if not caps.can_score:
            raise NotSupportedError(
                f"the teacher at {self.base_url} cannot score given text (its completions endpoint "
                "gives no echo with logprobs); capture logprobs while generating instead")
        if top_logprobs > caps.max_top_logprobs:
            raise NotSupportedError(f"asked for the top-{top_logprobs} logprobs; the teacher at "
                                    f"{self.base_url} gives at most {caps.max_top_logprobs}")
        return self._thread.submit(self.ascore(prompt, completion, top_logprobs)).result()

    # -- requests --------------------------------------------------------------------------

    def submit(self, prompt: Prompt, sampling: Sampling,
               key: str | None = None) -> "concurrent.futures.Future[Outcome]":
        """Schedule one request from any thread; the future holds its `Outcome`.

        `key` (e.g. the journal key) is sent as the Idempotency-Key header of every attempt.
        The future raises only when the whole run must stop: a budget cap
        (`BudgetExhaustedError`) or a problem no retry can fix (bad key, unknown model).
        """
        return self._thread.submit(self.arequest(prompt, sampling, key))

    async def arequest(self, prompt: Prompt, sampling: Sampling, key: str | None = None) -> Outcome:
        """One generation with retries, limits and budget; failures come back as an `Outcome`."""
        prompt_tokens = self.estimate_prompt_tokens(prompt)
        options: dict[str, Any] = {"timeout": self.timeout_s}
        if key is not None:
            options["extra_headers"] = {"Idempotency-Key": key}

        async def call() -> tuple[Completion, Usage, str | None]:
            if self.endpoint == "chat":
                response = await self.client.chat.completions.create(
                    **self._chat_params(prompt, sampling), **options)
                completion = chat_completion(response, self._id_of, prompt_tokens)
            else:
                response = await self.client.completions.create(
                    **self._completion_params(prompt, sampling), **options)
                completion = text_completion(response, self._id_of, prompt_tokens)
            return completion, completion.usage, getattr(response, "model", None)

        result = await self._attempts(call, prompt_tokens, sampling.max_new_tokens)
        return Outcome(result.value, result.cause, result.attempts, result.started, time.time(),
                       result.served_model)

    async def ascore(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `completion` after `prompt`, through completions `echo`."""
        prompt_text = self.render(prompt)
        full = prompt_text + completion
        estimate = self.estimate_prompt_tokens(full)

        async def call() -> tuple[list[TokenLogprob], Usage, str | None]:
            response = await self.client.completions.create(
                model=self.name, prompt=full, echo=True, logprobs=top_logprobs, max_tokens=1,
                temperature=0, timeout=self.timeout_s)
            scored = echoed_logprobs(response, len(prompt_text), len(full), self._id_of)
            usage = response.usage
            billed = Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(estimate, 1)
            return scored, billed, getattr(response, "model", None)

        result = await self._attempts(call, estimate, 1)
        if result.failure is not None:
            raise TeacherError(f"scoring through {self.base_url} failed: {result.cause}")
        return result.value

    async def _attempts(self, call: Callable[[], Awaitable[tuple[T, Usage, str | None]]],
                        prompt_tokens: int, completion_tokens: int, *, billed: bool = True,
                        raise_fatal: bool = True, retries: int | None = None,
                        give_up_on: frozenset[str] = frozenset()) -> Attempted:
        """Run `call` until it succeeds, is rejected, or the retries are spent.

        `give_up_on`: failure labels not worth retrying here (the start-up probe gives up at
        once on an endpoint that accepts no connection).
        """
        retries = self.max_retries if retries is None else retries
        causes: list[str] = []
        failure: Failure | None = None
        started: float | None = None
        async with self._semaphore:
            for attempt in range(retries + 1):
                await self._wait_for_pause()
                if billed:
                    self.spend.reserve(prompt_tokens, completion_tokens)
                try:
                    await self.limiter.acquire(prompt_tokens + completion_tokens)
                    started = started or time.time()
                    self.counts["attempts"] += 1
                    value, usage, served = await call()
                except Exception as err:  # classified below; anything unknown propagates
                    failure = classify(err, self.where)
                    self._settle(billed, prompt_tokens, completion_tokens, None)
                    if failure is None:
                        raise
                    self.counts[failure.label] += 1
                    cause = scrub(failure.cause, self._api_key)
                    if failure.kind == "fatal" and raise_fatal:
                        raise TeacherError(cause) from None
                    causes.append(cause)
                    if failure.kind != "retry" or attempt == retries or failure.label in give_up_on:
                        break
                    await asyncio.sleep(self._retry_delay(attempt, failure))
                    continue
                self._settle(billed, prompt_tokens, completion_tokens, usage)
                return Attempted(value, served, None, None, attempt + 1, started or time.time())
        distinct = list(dict.fromkeys(causes))
        cause = "; ".join(distinct[-3:]) + (f" ({len(causes)} attempts)" if len(causes) > 1 else "")
        return Attempted(None, None, failure, cause, len(causes), started or time.time())

    def _settle(self, billed: bool, prompt_tokens: int, completion_tokens: int,
                usage: Usage | None) -> None:
        self.limiter.settle(prompt_tokens + completion_tokens, usage.total_tokens if usage else 0)
        if billed:
            self.spend.settle(prompt_tokens, completion_tokens, usage)

    def _retry_delay(self, attempt: int, failure: Failure) -> float:
        """Retry-After when the server gave one (and pause every request meanwhile), else backoff."""
        self.counts["retries"] += 1
        if failure.retry_after is not None:
            self._paused_until = max(self._paused_until, time.monotonic() + failure.retry_after)
            return failure.retry_after
        return backoff_delay(attempt, self.backoff_s, self.backoff_max_s, self._rng)

    async def _wait_for_pause(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    # -- request bodies and tokens -----------------------------------------------------------

    def _chat_params(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        params = self._common_params(sampling)
        params["messages"] = as_messages(prompt)
        if sampling.logprobs or sampling.top_logprobs:
            params["logprobs"] = True
            if sampling.top_logprobs:
                params["top_logprobs"] = sampling.top_logprobs
        return params

    def _completion_params(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        params = self._common_params(sampling)
        params["prompt"] = self.render(prompt)
        if sampling.logprobs or sampling.top_logprobs:
            params["logprobs"] = sampling.top_logprobs
        return params

    def _common_params(self, sampling: Sampling) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.name, "max_tokens": sampling.max_new_tokens,
                                  "temperature": sampling.temperature, "top_p": sampling.top_p}
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        return params

    def render(self, prompt: Prompt) -> str:
        """The prompt as text for the completions endpoint: the chat template when known."""
        return render_prompt(prompt, self.tokenizer)

    def estimate_prompt_tokens(self, prompt: Prompt) -> int:
        """Prompt tokens, for rate limits and budget reservations."""
        return count_prompt_tokens(prompt, self.tokenizer)

    def _id_of(self, token: str, token_bytes: list[int] | None = None) -> int | None:
        return self.token_map.to_id(token, token_bytes) if self.token_map is not None else None

    # -- start-up probe and shutdown ---------------------------------------------------------

    def probe(self, want_top_logprobs: int = 0) -> Any:
        """Ask the endpoint what it offers; returns (and keeps) a `ProbeReport`."""
        from distil.teachers.api_probe import run_probe

        self.probe_report = self._thread.submit(run_probe(self, want_top_logprobs)).result()
        return self.probe_report

    def close(self) -> None:
        """Close the connection pool and stop the background loop."""
        try:
            self._thread.submit(self.client.close()).result(timeout=10)
        finally:
            self._thread.close()

    def __enter__(self) -> "ApiTeacher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
