"""The connection to an OpenAI-compatible endpoint: one event loop, one pool, limits, retries.

    client = ApiClient("gpt-4o-mini", ApiSection(base_url="https://api.openai.com/v1"))
    result = client.run(client.attempts(call, prompt_tokens, completion_tokens))
    # -> Attempted: the value, or the last failure and its cause

What the API teacher (`teachers/api.py`) and its start-up probe (`teachers/api_probe.py`)
both stand on. The async core runs on the client's own event loop in a background thread,
so sync callers and the synth stage (which submits many requests and journals each one as
it finishes) share one connection pool and one set of limits: at most `concurrency`
requests in flight, token buckets for requests and tokens per minute, one shared pause
when the server answers 429 with Retry-After, exponential backoff with jitter otherwise, a
timeout per request, and budget caps checked before each request. The SDK's own retries
are off: every attempt is counted here. Settings come from the recipe's `teacher.api`
section (`distil.recipe.api.ApiSection`), which holds their defaults.
"""

import asyncio
import concurrent.futures
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from distil.recipe.api import ApiSection
from distil.teachers.api_errors import Failure, Where, classify, scrub
from distil.teachers.base import Prompt, Sampling, TeacherError, Usage, as_messages
from distil.teachers.budget import Spend
from distil.teachers.ratelimit import RateLimiter, backoff_delay
from distil.teachers.tokenmap import TokenMap, count_prompt_tokens, render_prompt

T = TypeVar("T")
NO_KEY = "no-key"  # sent when the server needs no key; the SDK insists on one


@dataclass(frozen=True)
class Attempted:
    """The result of `ApiClient.attempts`: a value, or the last failure and its cause."""

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
        raise TeacherError(
            f"the environment variable {api_key_env} (teacher.api.api_key_env) is "
            f"not set; export {api_key_env}=<your key>, or set "
            "teacher.api.api_key_env to null for a server without keys"
        )
    return key


class ApiClient:
    """One endpoint and model: the SDK client, its loop thread, limits, retries and budget.

    `tokenizer`: the loaded teacher.api.tokenizer (None: tokens stay strings); `spend`: the
    budget to count against (default: no caps); `http_client`: an httpx client for the SDK
    (a proxy, a test transport); `seed`: the backoff jitter's.
    """

    def __init__(
        self,
        model: str,
        api: ApiSection,
        *,
        tokenizer: Any = None,
        spend: Spend | None = None,
        http_client: Any = None,
        seed: int = 0,
    ) -> None:
        self.name = model
        self.api = api
        self.base_url = api.base_url.rstrip("/")
        self.endpoint = api.endpoint
        self.concurrency = api.concurrency
        self.timeout_s = api.timeout_s
        self.tokenizer = tokenizer
        self.token_map = (
            TokenMap(tokenizer, api.tokenizer or "the tokenizer") if tokenizer is not None else None
        )
        self.spend = spend or Spend()
        self.limiter = RateLimiter(api.requests_per_minute, api.tokens_per_minute)
        self.where = Where(self.base_url, model, api.endpoint, api.api_key_env)
        self.counts: Counter[str] = Counter()
        self._api_key = read_api_key(api.api_key_env)
        self._semaphore = asyncio.Semaphore(api.concurrency)
        self._rng = random.Random(seed)
        self._paused_until = 0.0
        self._thread = _LoopThread()
        self.client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=api.timeout_s,
            http_client=http_client,
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule a coroutine on the client's loop, from any thread."""
        return self._thread.submit(coro)

    async def attempts(
        self,
        call: Callable[[], Awaitable[tuple[T, Usage, str | None]]],
        prompt_tokens: int,
        completion_tokens: int,
        *,
        billed: bool = True,
        label: str = "request",
        raise_fatal: bool = True,
        retries: int | None = None,
        give_up_on: frozenset[str] = frozenset(),
    ) -> Attempted:
        """Run `call` until it succeeds, is rejected, or the retries are spent.

        A billed attempt is reserved against the budget and recorded in its ledger under
        `label` before it is sent. `retries`: teacher.api.max_retries unless given.
        `give_up_on`: failure labels not worth retrying here (the start-up probe gives up at
        once on an endpoint that accepts no connection).
        """
        retries = self.api.max_retries if retries is None else retries
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
                    if billed:
                        self.spend.sending(label)
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

    def _settle(self, billed: bool, prompt_tokens: int, completion_tokens: int, usage: Usage | None) -> None:
        self.limiter.settle(prompt_tokens + completion_tokens, usage.total_tokens if usage else 0)
        if billed:
            self.spend.settle(prompt_tokens, completion_tokens, usage)

    def _retry_delay(self, attempt: int, failure: Failure) -> float:
        """Retry-After when the server gave one (and pause every request meanwhile), else backoff."""
        self.counts["retries"] += 1
        if failure.retry_after is not None:
            self._paused_until = max(self._paused_until, time.monotonic() + failure.retry_after)
            return failure.retry_after
        return backoff_delay(attempt, self.api.backoff_s, self.api.backoff_max_s, self._rng)

    async def _wait_for_pause(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    # -- request bodies and tokens -----------------------------------------------------------

    def chat_params(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        """The body of a /chat/completions request."""
        params = self._common_params(sampling)
        params["messages"] = as_messages(prompt)
        if sampling.logprobs or sampling.top_logprobs:
            params["logprobs"] = True
            if sampling.top_logprobs:
                params["top_logprobs"] = sampling.top_logprobs
        return params

    def completion_params(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        """The body of a /completions request (the prompt rendered as text)."""
        params = self._common_params(sampling)
        params["prompt"] = self.render(prompt)
        if sampling.logprobs or sampling.top_logprobs:
            params["logprobs"] = sampling.top_logprobs
        return params

    def _common_params(self, sampling: Sampling) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.name,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
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

    def id_of(self, token: str, token_bytes: list[int] | None = None) -> int | None:
        """The token string's id in teacher.api.tokenizer (None without one, or unmapped)."""
        return self.token_map.to_id(token, token_bytes) if self.token_map is not None else None

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool and stop the background loop."""
        try:
            self.run(self.client.close()).result(timeout=10)
        finally:
            self._thread.close()
